"""CLRS-30 samplers in NumPy: execution traces of classical algorithms as synth2 data.

`sample(algorithm, num_nodes, seed)` returns one `Trajectory`; `ALGORITHMS` lists what is registered.
Each algorithm module registers its spec and its sampler with `register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from generators.clrs.probing import ProbeError, Probes, Trajectory  # noqa: F401
from generators.clrs.specs import SPECS

# algorithm -> sampler(num_nodes, rng) -> Trajectory (the benchmark's default input distribution)
SAMPLERS: dict[str, Callable[[int, np.random.Generator], Trajectory]] = {}
FAMILIES: dict[str, str] = {}

# The modules that register algorithms, by family.
_MODULES = ("sorting", "searching", "divide_and_conquer", "greedy", "dynamic_programming", "graphs", "strings",
            "geometry")


def register(name: str, family: str, spec: dict[str, tuple[str, str, str]]):
    """Decorator: `@register("bfs", "graphs", {...})` over `def sampler(n, rng) -> Trajectory`."""
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


def sample(algorithm: str, num_nodes: int, seed: int | np.random.Generator) -> Trajectory:
    """One trajectory of `algorithm` on an input of `num_nodes` nodes, deterministic from `seed`."""
    _load()
    if algorithm not in SAMPLERS:
        raise KeyError(f"unknown CLRS algorithm {algorithm!r}; known: {', '.join(sorted(SAMPLERS))}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return SAMPLERS[algorithm](num_nodes, rng)
