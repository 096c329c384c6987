"""Recording a sampler's run as a trajectory: inputs, outputs, and hints as time series.

Storage conventions (the same as the CLRS benchmark's, before its own encoding):
- node features have a leading node axis `[N, ...]`, edge features `[N, N, ...]`, graph features `[...]`;
- scalar: float32; mask / mask_one: float32 in {0, 1} (mask_one: exactly one 1 along the node/edge axis);
- categorical: float32 one-hot, last axis = the number of categories;
- -1 in a mask, or a categorical entry of -1 (the rest 0), is the benchmark's "masked" (`OutputClass.MASKED`):
  no decision at that position, left out of losses and scores (bridges' non-edges, lcs_length's blank cells);
- pointer (and should_be_permutation / permutation_pointer): int64 node indices (`pi[i] = j`), the model
  turns them into one-hot over nodes itself;
- hints: the same shapes with a leading time axis `[T, ...]`, one entry per `push` of a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from generators.clrs.specs import SPECS, Location, Stage, Type


class ProbeError(ValueError):
    pass


@dataclass
class Trajectory:
    """One execution of one algorithm on one input."""

    algorithm: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    hints: dict[str, np.ndarray]  # each [T, ...]
    length: int  # T, the number of hint steps
    num_nodes: int
    meta: dict = field(default_factory=dict)

    def features(self, stage: str) -> dict[str, np.ndarray]:
        return {Stage.INPUT: self.inputs, Stage.OUTPUT: self.outputs, Stage.HINT: self.hints}[stage]


_INT_TYPES = (Type.POINTER, Type.SHOULD_BE_PERMUTATION, Type.PERMUTATION_POINTER)


class Probes:
    """Collects one run. `input`/`output` once per feature; `hint(**values)` once per step, every hint each time."""

    def __init__(self, algorithm: str, num_nodes: int) -> None:
        if algorithm not in SPECS:
            raise ProbeError(f"no spec for algorithm {algorithm!r}")
        self.algorithm, self.n = algorithm, num_nodes
        self.spec = SPECS[algorithm]
        self._in: dict[str, np.ndarray] = {}
        self._out: dict[str, np.ndarray] = {}
        self._hints: dict[str, list[np.ndarray]] = {k: [] for k, v in self.spec.items() if v[0] == Stage.HINT}
        self._steps = 0

    def _check(self, name: str, stage: str, value) -> np.ndarray:
        if name not in self.spec:
            raise ProbeError(f"{self.algorithm}: feature {name!r} is not in its spec")
        st, loc, typ = self.spec[name]
        if st != stage:
            raise ProbeError(f"{self.algorithm}: feature {name!r} is a {st} feature, pushed as {stage}")
        arr = np.asarray(value, dtype=np.int64 if typ in _INT_TYPES else np.float32)
        lead = {Location.NODE: (self.n,), Location.EDGE: (self.n, self.n), Location.GRAPH: ()}[loc]
        if arr.shape[:len(lead)] != lead:
            raise ProbeError(f"{self.algorithm}: {name!r} ({loc}) has shape {arr.shape}, expected leading {lead}")
        if typ == Type.MASK and not np.isin(arr, (-1.0, 0.0, 1.0)).all():
            raise ProbeError(f"{self.algorithm}: mask {name!r} holds values other than 0/1 (or -1, masked)")
        if typ == Type.MASK_ONE and not (np.isin(arr, (0.0, 1.0)).all() and arr.sum() == 1):
            raise ProbeError(f"{self.algorithm}: mask_one {name!r} is not a single 1 among 0s")
        if typ == Type.CATEGORICAL:
            one_hot_rows = np.isin(arr, (0.0, 1.0)).all(-1) & (arr.sum(-1) == 1)
            masked_rows = np.isin(arr, (-1.0, 0.0)).all(-1) & (arr.sum(-1) == -1)
            if not (one_hot_rows | masked_rows).all():
                raise ProbeError(f"{self.algorithm}: categorical {name!r} is not one-hot (nor masked)")
        if typ in _INT_TYPES and ((arr < 0) | (arr >= self.n)).any():
            raise ProbeError(f"{self.algorithm}: pointer {name!r} points outside 0..{self.n - 1}")
        return arr.copy()

    def input(self, name: str, value) -> None:
        self._in[name] = self._check(name, Stage.INPUT, value)

    def output(self, name: str, value) -> None:
        self._out[name] = self._check(name, Stage.OUTPUT, value)

    def hint(self, **values) -> None:
        missing = sorted(set(self._hints) - set(values))
        if missing:
            raise ProbeError(f"{self.algorithm}: hint step {self._steps} lacks {missing}")
        for k, v in values.items():
            self._hints[k].append(self._check(k, Stage.HINT, v))
        self._steps += 1

    def finish(self, **meta) -> Trajectory:
        for stage, got in ((Stage.INPUT, self._in), (Stage.OUTPUT, self._out)):
            want = {k for k, v in self.spec.items() if v[0] == stage}
            if set(got) != want:
                raise ProbeError(f"{self.algorithm}: {stage} features {sorted(got)} != spec {sorted(want)}")
        if self._steps == 0 and self._hints:
            raise ProbeError(f"{self.algorithm}: no hint step recorded")
        hints = {k: np.stack(v) for k, v in self._hints.items()}
        return Trajectory(self.algorithm, self._in, self._out, hints, self._steps, self.n, meta)


def one_hot(index: int, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    out[index] = 1.0
    return out


def categorical(values, k: int) -> np.ndarray:
    """Integer categories `[...]` → one-hot `[..., k]`."""
    return np.eye(k, dtype=np.float32)[np.asarray(values, dtype=np.int64)]
