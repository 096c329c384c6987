"""The embedded world's concept bank: every attribute a scene can have, and the scene type.

A scene is described by a small frozen dataclass so that the renderer, the annotator, the
parser and the evaluation all speak about the same thing. Equality of two `Scene`s is
equality of everything a caption states about them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond")
COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
SIZES = ("small", "medium", "large")
# 3x3 grid of positions, row-major from the top left.
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
COUNTS = (1, 2, 3)
RELATIONS = ("left of", "right of", "above", "below")
_INVERSE = {"right of": "left of", "below": "above"}  # a relation word -> its mirror, the canonical one

RGB = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 225, 40),
    "green": (40, 170, 60),
    "cyan": (40, 210, 220),
    "blue": (40, 70, 220),
    "purple": (140, 50, 190),
    "pink": (250, 130, 190),
}
# Object size as a fraction of the image side.
SIZE_FRACTION = {"small": 0.2, "medium": 0.3, "large": 0.42}

SceneKind = Literal["single", "count", "relation"]


@dataclass(frozen=True)
class Obj:
    colour: str
    shape: str
    size: str = "medium"

    @property
    def composition(self) -> str:
        """The colour-shape pair, the unit the human-annotated split is long-tailed over."""
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """What a caption says about an image.

    kind == "single": one object at `position`.
    kind == "count": `count` (2 or 3) copies of `objects[0]`.
    kind == "relation": `objects[0]` stands `relation` `objects[1]`; sizes are not stated.
    """

    kind: SceneKind
    objects: tuple[Obj, ...]
    position: str | None = None
    count: int = 1
    relation: str | None = None

    def __post_init__(self) -> None:
        for o in self.objects:
            if o.colour not in COLOURS or o.shape not in SHAPES or o.size not in SIZES:
                raise ValueError(f"unknown attribute in {o}")
        if self.kind == "single":
            ok = len(self.objects) == 1 and self.position in POSITIONS and self.count == 1
        elif self.kind == "count":
            ok = len(self.objects) == 1 and self.count in (2, 3)
        elif self.kind == "relation":
            ok = len(self.objects) == 2 and self.relation in RELATIONS
        else:
            ok = False
        if not ok:
            raise ValueError(f"inconsistent scene: {self}")

    @property
    def compositions(self) -> tuple[str, ...]:
        return tuple(o.composition for o in self.objects)

    def canonical(self) -> Scene:
        """The scene said one way. "A right of B" is the image of "B left of A", and "A below B" that of
        "B above A": the world samples all four relation words, so an image never tells which of two such
        captions its reference uses. The canonical form names the left (or upper) object first, with
        "left of" (or "above"); every other scene is its own canonical form."""
        if self.kind == "relation" and self.relation in _INVERSE:
            return Scene("relation", self.objects[::-1], relation=_INVERSE[self.relation])
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        objs = tuple(Obj(**o) for o in d["objects"])
        return cls(kind=d["kind"], objects=objs, position=d.get("position"),
                   count=d.get("count", 1), relation=d.get("relation"))


def all_compositions() -> list[str]:
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def concept_bank() -> dict[str, list[str]]:
    """Every concept of the world, grouped by attribute: what a job's `concepts` can name."""
    return {
        "composition": all_compositions(),
        "colour": list(COLOURS),
        "shape": list(SHAPES),
        "size": list(SIZES),
        "position": list(POSITIONS),
        "count": [str(c) for c in COUNTS],
        "relation": list(RELATIONS),
    }
