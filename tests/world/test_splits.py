from collections import Counter

from generators.world.concepts import COLOURS, SHAPES, all_compositions
from generators.world.splits import held_out_compositions, scenes


def test_held_out_compositions_are_absent_from_train_and_at_least_15_percent():
    held = set(held_out_compositions(0))
    assert len(held) / len(all_compositions()) >= 0.15
    train = list(scenes("train", 3000, 0))
    seen = {c for s in train for c in s.compositions}
    assert not (seen & held)
    # every colour and every shape still appears in the train split on its own
    assert {c.split()[0] for c in seen} == set(COLOURS)
    assert {c.split()[1] for c in seen} == set(SHAPES)


def test_train_split_is_long_tailed():
    counts = Counter(s.objects[0].composition for s in scenes("train", 4000, 0))
    ranked = [n for _, n in counts.most_common()]
    assert ranked[0] > 10 * ranked[-1]


def test_test_split_is_balanced_over_every_composition_and_kind():
    test = list(scenes("test", 4 * 48 * 2, 0))
    first = Counter(s.objects[0].composition for s in test)
    assert set(first) == set(all_compositions())
    assert len(set(first.values())) == 1
    per_kind = Counter((s.objects[0].composition, s.kind) for s in test)
    assert {v for (c, k), v in per_kind.items() if k == "single"} == {4}
    assert {v for (c, k), v in per_kind.items() if k != "single"} == {2}
    held = set(held_out_compositions(0))
    assert any(c in held for s in test for c in s.compositions)


def test_splits_are_deterministic_in_the_seed():
    assert list(scenes("train", 50, 1)) == list(scenes("train", 50, 1))
    assert list(scenes("train", 50, 1)) != list(scenes("train", 50, 2))
    assert held_out_compositions(1) == held_out_compositions(1)
    assert held_out_compositions(1) != held_out_compositions(2)


def test_corpus_covers_every_concept():
    from generators.world.lm import corpus_documents

    docs = "".join(corpus_documents(800, 0, "<eos>"))
    for comp in all_compositions():
        assert f"Concepts: {comp}" in docs or f", {comp}" in docs
        assert comp in docs.split("Caption:", 1)[1]
