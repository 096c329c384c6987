"""The world's splits, all deterministic from a seed.

- `pretrain`: images with captions, uniform over every composition. It stands in for the
  web-scale data a public CLIP was trained on; only the world's CLIP sees it.
- `train`: the "human-annotated" split a VLM is finetuned on. Long-tailed (Zipf over
  colour-shape compositions) and with `held_out` compositions entirely absent.
- `val`, `test`: balanced over every composition, held-out ones included.
- `corpus`: text only, prompt/caption documents over every composition, for the caption LM
  (an LLM's text covers concepts that a paired data set lacks).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from generators.world.concepts import COLOURS, POSITIONS, RELATIONS, SHAPES, SIZES, Obj, Scene, all_compositions

KIND_WEIGHTS = {"single": 0.5, "count": 0.25, "relation": 0.25}
BALANCED_KINDS = ("single", "count", "single", "relation")  # the same mix, in a fixed cycle


def held_out_compositions(seed: int, fraction: float = 0.2) -> list[str]:
    """Compositions absent from the train split: `fraction` of all, every colour and shape kept
    in at least three seen compositions so that each attribute alone is still learnable."""
    comps = all_compositions()
    n = max(1, round(fraction * len(comps)))
    rng = np.random.default_rng([seed, 1])
    while True:
        held = set(rng.choice(comps, size=n, replace=False).tolist())
        seen = [c for c in comps if c not in held]
        if all(sum(c.startswith(col + " ") for c in seen) >= 3 for col in COLOURS) and \
           all(sum(c.endswith(" " + s) for c in seen) >= 3 for s in SHAPES):
            return sorted(held)


def zipf_weights(items: list[str], seed: int, exponent: float = 1.1) -> np.ndarray:
    rng = np.random.default_rng([seed, 2])
    ranks = rng.permutation(len(items)) + 1
    w = 1.0 / ranks.astype(float) ** exponent
    return w / w.sum()


@dataclass
class CompositionSampler:
    """Draws colour-shape compositions either from weights or cycling through all evenly."""

    compositions: list[str]
    weights: np.ndarray | None = None

    def draw(self, rng: np.random.Generator, index: int) -> Obj:
        if self.weights is None:
            comp = self.compositions[index % len(self.compositions)]
        else:
            comp = self.compositions[rng.choice(len(self.compositions), p=self.weights)]
        colour, shape = comp.split(" ")
        return Obj(colour, shape, SIZES[int(rng.integers(len(SIZES)))])


def sample_scene(rng: np.random.Generator, first: Obj, second: CompositionSampler, kind: str) -> Scene:
    """A scene of `kind` whose (first) object is `first`; `second` draws a relation's partner."""
    if kind == "single":
        return Scene("single", (first,), position=POSITIONS[int(rng.integers(len(POSITIONS)))])
    if kind == "count":
        return Scene("count", (first,), count=int(rng.integers(2, 4)))
    while True:
        other = second.draw(rng, int(rng.integers(1 << 30)))
        if other.composition != first.composition:
            break
    return Scene("relation", (Obj(first.colour, first.shape), Obj(other.colour, other.shape)),
                 relation=RELATIONS[int(rng.integers(len(RELATIONS)))])


def scenes(split: str, n: int, seed: int) -> Iterator[Scene]:
    """`n` scenes of `split` ("pretrain", "train", "val", "test", "corpus")."""
    comps = all_compositions()
    held = set(held_out_compositions(seed))
    if split == "train":
        seen = [c for c in comps if c not in held]
        sampler = CompositionSampler(seen, zipf_weights(seen, seed))
    elif split in ("pretrain", "val", "test", "corpus"):
        sampler = CompositionSampler(comps)
    else:
        raise ValueError(f"unknown split {split!r}; expected pretrain, train, val, test or corpus")
    rng = np.random.default_rng([seed, {"pretrain": 10, "train": 11, "val": 12, "test": 13, "corpus": 14}[split]])
    if sampler.weights is None:
        # Balanced: index i covers composition i % 48 and kind by i // 48, so any multiple of
        # 4 * 48 scenes has every (composition, kind) equally often; a permutation shuffles.
        order = rng.permutation(n)
        for i in order:
            first = sampler.draw(rng, int(i))
            yield sample_scene(rng, first, sampler, BALANCED_KINDS[(int(i) // len(comps)) % len(BALANCED_KINDS)])
        return
    kinds, probs = list(KIND_WEIGHTS), np.array(list(KIND_WEIGHTS.values()))
    for _ in range(n):
        kind = kinds[rng.choice(len(kinds), p=probs)]
        yield sample_scene(rng, sampler.draw(rng, 0), sampler, kind)
