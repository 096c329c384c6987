"""How a CLRS sampler runs: which variant of the algorithm it records and which inputs it draws.

Two settings, both strings, both defaulting to the benchmark (CLRS-30 as `dm-clrs` 2.0.3 defines it):

- `variant`: what is recorded.
  - `"benchmark"` (default): every hint and output as the benchmark writes them, quirks included —
    task_scheduling keeps a task when the count kept so far is below its deadline (`t < d`); heapsort's
    `largest` is node 0 on each swap step; quickselect has a `pivot` hint and its loop steps' `i_rank` is
    the whole-array position; quicksort records no initial step; bridges and lcs_length write -1
    ("masked", the benchmark's `OutputClass.MASKED`) where a cell is not a decision (bridges: non-edges;
    lcs_length: cells outside the x-by-y block); optimal_bst of length n has n keys, so n + 1 nodes.
  - `"textbook"`: the CLRS-book reading of those seven — the matroid test for task_scheduling (a task is
    kept while the kept set can still be scheduled on time), the node at the root for heapsort's
    `largest`, quickselect ranks within the current subarray, an initial-state step for quicksort, 0 for
    bridges' non-edges and a one-hot `blank` class for lcs_length, and optimal_bst of length n with n
    nodes (n - 1 keys). The hints of every other algorithm are the same in both variants.
- `inputs`: the input distribution.
  - `"benchmark"` (default): the reference samplers' defaults, which the published CLRS-30 validation
    and test sets use — Erdős–Rényi edge probability 0.5 (0.2 for articulation_points, bridges and
    mst_kruskal), a needle of length // 5 symbols for the string matchers, `pos` = i / n.
  - `"training"`: the randomisation of the reference training script (`clrs/examples/run.py`): the edge
    probability drawn per graph from 0.1, 0.2, ..., 0.9 (halved for those three algorithms), the needle
    length drawn from 1..8 (at most half the nodes), and `pos` replaced by sorted U[0, 1) draws (per
    string for the string algorithms). That script also trains at lengths 4, 7, 11, 13, 16 (20 for the
    string matchers): sizes are the caller's choice, see `benchmark_split` for the benchmark's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VARIANTS = ("benchmark", "textbook")
INPUTS = ("benchmark", "training")

# The CLRS-30 splits (dm-clrs `samplers.CLRS30`): (trajectories, length) per split; validation and test
# carry more trajectories for the algorithms with few output signals (`CLRS_30_ALGS_SETTINGS`).
SPLITS = {"train": (1000, 16), "val": (32, 16), "test": (32, 64)}
SAMPLES_MULTIPLIER = {"find_maximum_subarray_kadane": 32,
                      **{a: 64 for a in ("quickselect", "minimum", "binary_search", "naive_string_matcher",
                                         "kmp_matcher", "segments_intersect")}}
# The algorithms whose graphs the benchmark draws sparser (0.2 instead of 0.5; the training script halves p).
LOW_P = ("articulation_points", "bridges", "mst_kruskal")
P_CHOICES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))
TRAINING_MAX_NEEDLE = 8  # the training script's `length_needle = -8`


@dataclass(frozen=True)
class Sampling:
    """The two sampler settings (see the module docstring)."""

    variant: str = "benchmark"
    inputs: str = "benchmark"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)} (got {self.variant!r})")
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {', '.join(INPUTS)} (got {self.inputs!r})")

    @property
    def benchmark(self) -> bool:
        return self.variant == "benchmark"


def benchmark_split(algorithm: str, split: str) -> tuple[int, int]:
    """(trajectories, length) of the CLRS-30 `split` ("train", "val", "test") for `algorithm`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} (got {split!r})")
    count, length = SPLITS[split]
    return (count if split == "train" else count * SAMPLES_MULTIPLIER.get(algorithm, 1)), length


def edge_probability(algorithm: str, rng: np.random.Generator, inputs: str = "benchmark") -> float:
    """The Erdős–Rényi p of one graph: fixed for the benchmark's inputs, drawn per graph for training."""
    if inputs == "benchmark":
        return 0.2 if algorithm in LOW_P else 0.5
    p = float(P_CHOICES[int(rng.integers(len(P_CHOICES)))])
    return p / 2 if algorithm in LOW_P else p


def needle_length(length: int, rng: np.random.Generator, inputs: str = "benchmark") -> int:
    """Needle symbols for a string matcher over `length` nodes (haystack = the rest)."""
    if inputs == "benchmark":
        return length // 5 if length >= 5 else 1
    return int(rng.integers(1, max(1, min(TRAINING_MAX_NEEDLE, length // 2)) + 1))


def random_positions(pos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The training script's random `pos`: sorted U[0, 1) draws, sorted within each run that starts at a 0
    (one run per string for the string algorithms, a single run otherwise)."""
    pos = np.asarray(pos)
    draws = rng.uniform(0.0, 1.0, size=pos.shape)
    starts = np.concatenate([np.flatnonzero(pos == 0), [len(pos)]])
    out = np.empty_like(pos, dtype=np.float32)
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        out[lo:hi] = np.sort(draws[lo:hi])
    return out
