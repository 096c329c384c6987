"""Captions for scenes, several phrasings each, and the parser that inverts every one of them.

Both directions are generated from the same template strings, so a phrasing added here is
parsed the moment it exists. A caption is normalised (lower case, no punctuation, "an"→"a")
before parsing, so "An orange star." parses like "a orange star".
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

from generators.world.concepts import COLOURS, POSITIONS, RELATIONS, SHAPES, SIZES, Obj, Scene

# Where an object sits, as a phrase that follows it.
POSITION_PHRASE = {
    "top left": "in the top left corner",
    "top": "at the top",
    "top right": "in the top right corner",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "in the bottom left corner",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right corner",
}
RELATION_PHRASE = {"left of": "to the left of", "right of": "to the right of",
                   "above": "above", "below": "below"}
COUNT_WORD = {2: "two", 3: "three"}

# Fields: {size} {colour} {shape} {pos} {n} {shapes} {c1} {s1} {c2} {s2} {rel}
TEMPLATES: dict[str, tuple[str, ...]] = {
    "single": (
        "a {size} {colour} {shape} {pos}",
        "there is a {size} {colour} {shape} {pos}",
        "{pos} there is a {size} {colour} {shape}",
        "a {colour} {shape} of {size} size {pos}",
        "the image shows a {size} {colour} {shape} {pos}",
        "one {size} {shape} in {colour} {pos}",
    ),
    "count": (
        "{n} {size} {colour} {shapes}",
        "there are {n} {size} {colour} {shapes}",
        "{n} {colour} {shapes} all of them {size}",
        "a group of {n} {size} {colour} {shapes}",
        "the image shows {n} {size} {shapes} in {colour}",
    ),
    "relation": (
        "a {c1} {s1} {rel} a {c2} {s2}",
        "there is a {c1} {s1} {rel} a {c2} {s2}",
        "a {c2} {s2} with a {c1} {s1} {rel} it",
        "the {c1} {s1} is {rel} the {c2} {s2}",
        "{rel} a {c2} {s2} there is a {c1} {s1}",
    ),
}


def _fields(scene: Scene) -> dict[str, str]:
    o = scene.objects[0]
    if scene.kind == "single":
        return {"size": o.size, "colour": o.colour, "shape": o.shape,
                "pos": POSITION_PHRASE[scene.position]}
    if scene.kind == "count":
        return {"size": o.size, "colour": o.colour, "shape": o.shape,
                "shapes": o.shape + "s", "n": COUNT_WORD[scene.count]}
    b = scene.objects[1]
    return {"c1": o.colour, "s1": o.shape, "c2": b.colour, "s2": b.shape,
            "rel": RELATION_PHRASE[scene.relation]}


def _articles(text: str) -> str:
    return re.sub(r"\ba ([aeiou])", r"an \1", text)


def caption(scene: Scene, phrasing: int) -> str:
    """The caption of `scene` in template number `phrasing` (modulo the number of templates)."""
    templates = TEMPLATES[scene.kind]
    return _articles(templates[phrasing % len(templates)].format(**_fields(scene)))


def captions(scene: Scene) -> list[str]:
    """Every phrasing of `scene`."""
    return [caption(scene, i) for i in range(len(TEMPLATES[scene.kind]))]


def random_caption(scene: Scene, rng: np.random.Generator) -> str:
    return caption(scene, int(rng.integers(len(TEMPLATES[scene.kind]))))


def normalise(text: str) -> str:
    text = re.sub(r"[^a-z ]+", " ", text.lower())
    text = re.sub(r"\ban\b", "a", text)
    return " ".join(text.split())


def _alt(words) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


_FIELD_RE = {
    "size": _alt(SIZES), "colour": _alt(COLOURS), "shape": _alt(SHAPES),
    "shapes": _alt(s + "s" for s in SHAPES), "n": _alt(COUNT_WORD.values()),
    "pos": _alt(POSITION_PHRASE.values()), "c1": _alt(COLOURS), "c2": _alt(COLOURS),
    "s1": _alt(SHAPES), "s2": _alt(SHAPES), "rel": _alt(RELATION_PHRASE.values()),
}


@cache
def _patterns() -> list[tuple[str, re.Pattern]]:
    out = []
    for kind, templates in TEMPLATES.items():
        for t in templates:
            pat = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>{_FIELD_RE[m.group(1)]})", t)
            out.append((kind, re.compile("^" + pat + "$")))
    return out


def parse(text: str) -> Scene | None:
    """The scene a caption describes, or None when it matches no phrasing of the world."""
    norm = normalise(text)
    for kind, pat in _patterns():
        m = pat.match(norm)
        if not m:
            continue
        g = m.groupdict()
        if kind == "single":
            pos = {v: k for k, v in POSITION_PHRASE.items()}[g["pos"]]
            return Scene("single", (Obj(g["colour"], g["shape"], g["size"]),), position=pos)
        if kind == "count":
            n = {v: k for k, v in COUNT_WORD.items()}[g["n"]]
            return Scene("count", (Obj(g["colour"], g["shapes"][:-1], g["size"]),), count=n)
        rel = {v: k for k, v in RELATION_PHRASE.items()}[g["rel"]]
        return Scene("relation", (Obj(g["c1"], g["s1"]), Obj(g["c2"], g["s2"])), relation=rel)
    return None


assert set(POSITION_PHRASE) == set(POSITIONS) and set(RELATION_PHRASE) == set(RELATIONS)
