"""CLRS-30 samplers in NumPy: execution traces of classical algorithms as synth2 data.

`sample(algorithm, length, seed)` returns one `Trajectory`, exactly as the CLRS-30 benchmark (dm-clrs 2.0.3)
defines it by default; `sample(..., variant="textbook")` records the book's reading where the benchmark's
differs, and `sample(..., inputs="training")` draws the reference training script's randomised inputs
(generators/clrs/sampling.py lists both). `algorithms()` lists what is registered; `benchmark_split` gives
the benchmark's (trajectories, length) per split. Each algorithm module registers its spec and its sampler
with `register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from generators.clrs.probing import ProbeError, Probes, Trajectory  # noqa: F401
from generators.clrs.sampling import INPUTS, VARIANTS, Sampling, benchmark_split, random_positions  # noqa: F401
from generators.clrs.specs import SPECS

# algorithm -> sampler(length, rng, sampling) -> Trajectory
SAMPLERS: dict[str, Callable[[int, np.random.Generator, Sampling], Trajectory]] = {}
FAMILIES: dict[str, str] = {}

# The modules that register algorithms, by family.
_MODULES = ("sorting", "searching", "divide_and_conquer", "greedy", "dynamic_programming", "graphs", "strings",
            "geometry")


def register(name: str, family: str, spec: dict[str, tuple[str, str, str]]):
    """Decorator: `@register("bfs", "graphs", {...})` over `def sampler(n, rng, how: Sampling) -> Trajectory`."""
    def deco(fn):
        SPECS[name] = spec
        SAMPLERS[name] = fn
        FAMILIES[name] = family
        return fn
    return deco


def _load() -> None:
    for m in _MODULES:
        try:
            importlib.import_module(f"generators.clrs.{m}")
        except ModuleNotFoundError as e:
            if e.name != f"generators.clrs.{m}":
                raise


def algorithms() -> list[str]:
    _load()
    return sorted(SAMPLERS)


def sample(algorithm: str, length: int, seed: int | np.random.Generator, *, variant: str = "benchmark",
           inputs: str = "benchmark") -> Trajectory:
    """One trajectory of `algorithm` at the benchmark's `length`, deterministic from `seed`.

    `length` is the node count for every algorithm but two, as in the benchmark: optimal_bst has
    length + 1 nodes (length keys; `variant="textbook"`: length nodes) and segments_intersect always 4.
    `traj.num_nodes` is the truth.
    """
    _load()
    if algorithm not in SAMPLERS:
        raise KeyError(f"unknown CLRS algorithm {algorithm!r}; known: {', '.join(sorted(SAMPLERS))}")
    how = Sampling(variant, inputs)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    traj = SAMPLERS[algorithm](length, rng, how)
    if how.inputs == "training":
        traj.inputs["pos"] = random_positions(traj.inputs["pos"], rng)
    traj.meta.update(variant=how.variant, inputs=how.inputs)
    return traj
