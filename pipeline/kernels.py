"""Batch helpers shared by the selection kernels (`pipeline.dedup`, `pipeline.balance`): a seeded
uniform number per caption index, and row selection/sorting on column dicts of NumPy arrays."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipeline.prompts import derive_seed


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def unit_hash(salt: str, seed: int, index: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per caption index, from (salt, seed, index) only."""
    base = np.uint64(derive_seed(salt, seed))
    x = _splitmix64(_splitmix64(np.asarray(index).astype(np.uint64)) ^ base)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _take(batch: Mapping[str, np.ndarray], sel) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[sel] for k, v in batch.items()}


def _by_index(batch: Mapping[str, np.ndarray], *keys: str) -> dict[str, np.ndarray]:
    """The batch's rows sorted by (keys..., index): a group's order never depends on how it arrived."""
    cols = [np.asarray(batch["index"])] + [np.asarray(batch[k]) for k in reversed(keys)]
    return _take(batch, np.lexsort(cols))
