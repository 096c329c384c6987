import pytest

from generators.world.annotate import TEMPLATES, caption, captions, normalise, parse
from generators.world.concepts import COLOURS, POSITIONS, RELATIONS, SHAPES, SIZES, Obj, Scene
from generators.world.splits import scenes


def every_scene_kind():
    yield Scene("single", (Obj("orange", "hexagon", "large"),), position="top left")
    yield Scene("count", (Obj("pink", "star", "small"),), count=3)
    yield Scene("relation", (Obj("blue", "circle"), Obj("orange", "diamond")), relation="below")


@pytest.mark.parametrize("kind", ["single", "count", "relation"])
def test_at_least_five_phrasings_per_scene_type(kind):
    assert len(TEMPLATES[kind]) >= 5


@pytest.mark.parametrize("split", ["train", "test", "pretrain"])
def test_parse_inverts_every_phrasing(split):
    for scene in scenes(split, 400, seed=3):
        phrasings = captions(scene)
        assert len(set(phrasings)) == len(phrasings)
        for text in phrasings:
            assert parse(text) == scene, text


def test_parse_covers_every_attribute_value():
    for c in COLOURS:
        for s in SHAPES:
            for size in SIZES:
                for p in POSITIONS:
                    sc = Scene("single", (Obj(c, s, size),), position=p)
                    assert parse(caption(sc, hash((c, s, size, p)) % 6)) == sc
    for r in RELATIONS:
        sc = Scene("relation", (Obj("red", "star"), Obj("cyan", "square")), relation=r)
        assert all(parse(t) == sc for t in captions(sc))


def test_articles_and_normalisation():
    sc = Scene("single", (Obj("orange", "star", "small"),), position="center")
    text = caption(Scene("single", (Obj("orange", "star", "medium"),), position="center"), 3)
    assert text.startswith("an orange star")
    assert parse("A small ORANGE star, in the center!") == sc
    assert normalise("An  Orange  star.") == "a orange star"


@pytest.mark.parametrize("text", ["", "a red", "a purple elephant in the center", "two red circles and a dog",
                                  "a small red circle in the middle of nowhere"])
def test_parse_rejects_what_the_world_cannot_say(text):
    assert parse(text) is None


def test_scene_rejects_inconsistent_attributes():
    with pytest.raises(ValueError):
        Scene("single", (Obj("red", "circle"),))  # no position
    with pytest.raises(ValueError):
        Scene("count", (Obj("red", "circle"),), count=5)
    with pytest.raises(ValueError):
        Scene("single", (Obj("mauve", "circle"),), position="top")


def test_scene_dict_round_trip():
    for s in every_scene_kind():
        assert Scene.from_dict(s.to_dict()) == s
