import numpy as np

from generators.world.concepts import RGB, Obj, Scene
from generators.world.render import render


def _pixels_near(img: np.ndarray, rgb, tol=40) -> int:
    return int((np.abs(img.astype(int) - np.array(rgb)).max(-1) < tol).sum())


def test_render_is_deterministic_in_the_seed_and_jittered_across_seeds():
    scene = Scene("single", (Obj("red", "circle", "large"),), position="center")
    a = np.asarray(render(scene, np.random.default_rng(1)))
    b = np.asarray(render(scene, np.random.default_rng(1)))
    c = np.asarray(render(scene, np.random.default_rng(2)))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert (a == b).all()
    assert (a != c).any()


def test_object_colour_size_and_position_are_visible():
    rng = np.random.default_rng(0)
    big = np.asarray(render(Scene("single", (Obj("blue", "square", "large"),), position="center"), rng))
    small = np.asarray(render(Scene("single", (Obj("blue", "square", "small"),), position="center"), rng))
    assert _pixels_near(big, RGB["blue"]) > 2 * _pixels_near(small, RGB["blue"]) > 0
    assert _pixels_near(big, RGB["red"]) == 0
    left = np.asarray(render(Scene("single", (Obj("yellow", "star", "small"),), position="left"), rng))
    ys, xs = np.nonzero(np.abs(left.astype(int) - np.array(RGB["yellow"])).max(-1) < 40)
    assert xs.mean() < 64 / 3


def test_relation_places_objects_on_the_stated_side():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        img = np.asarray(render(Scene("relation", (Obj("red", "circle"), Obj("green", "square")), relation="above"), rng))
        red_y = np.nonzero(np.abs(img.astype(int) - np.array(RGB["red"])).max(-1) < 40)[0].mean()
        green_y = np.nonzero(np.abs(img.astype(int) - np.array(RGB["green"])).max(-1) < 40)[0].mean()
        assert red_y < green_y


def test_count_draws_that_many_objects():
    from scipy import ndimage

    for n in (2, 3):
        img = np.asarray(render(Scene("count", (Obj("cyan", "circle", "small"),), count=n), np.random.default_rng(n)))
        mask = (np.abs(img.astype(int) - np.array(RGB["cyan"])).max(-1) < 40)
        assert ndimage.label(mask)[1] == n


def test_image_size_is_configurable():
    img = render(Scene("count", (Obj("pink", "star", "medium"),), count=2), np.random.default_rng(0), size=96)
    assert img.size == (96, 96)
