"""CLRS trajectories for PyTorch: a `Dataset` over a `clrs` job's shards (or straight from the samplers)
and a collate that pads the node count and the hint length, with masks. A -1 in a mask or categorical
feature is the benchmark's "masked" (no decision there): the losses and scores leave it out.

A trajectory is a dict: `algorithm`, `n`, `length` and `inputs` / `hints` / `outputs` (name → array,
the storage conventions of generators/clrs/probing.py: node `[n, ...]`, edge `[n, n, ...]`, graph `[...]`,
hints with a leading time axis, pointers as int64 node indices).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

Spec = dict[str, tuple[str, str, str]]  # feature name -> (stage, location, type)
POINTER_TYPES = ("pointer", "should_be_permutation", "permutation_pointer")
STAGE_KEY = {"input": "inputs", "hint": "hints", "output": "outputs"}


def _from_sample(s: dict) -> dict:
    traj = {"inputs": {}, "hints": {}, "outputs": {}}
    for k, v in s.items():
        stage, _, rest = k.partition(".")
        if stage in STAGE_KEY and rest.endswith(".npy"):
            traj[STAGE_KEY[stage]][rest[:-4]] = v
    meta = s["json"]
    # The node count is the arrays' (every algorithm has the node feature `pos`): a job's `n` is the size it
    # asked for, which optimal_bst (n + 1 nodes) and segments_intersect (4) do not equal.
    n = int(traj["inputs"]["pos"].shape[0])
    return traj | {"algorithm": meta["algorithm"], "n": n, "length": int(meta["length"]), "meta": meta}


class ShardDataset(Dataset):
    """The trajectories of one algorithm and split of a `clrs` job directory (local or fsspec URL),
    held in memory. Only the shards that hold that (split, algorithm) block are read."""

    def __init__(self, directory: str | Path, algorithm: str, split: str, limit: int | None = None) -> None:
        from contracts.shards import Manifest, iter_tar
        from contracts.storage import Store

        m = Manifest.load(directory)
        if m is None or "clrs" not in m.extra:
            raise FileNotFoundError(f"{directory} is not the output of a `clrs` job (no manifest with a clrs layout)")
        blocks = [b for b in m.extra["clrs"]["layout"] if b["algorithm"] == algorithm and b["split"] == split]
        if not blocks:
            have = sorted({b["algorithm"] for b in m.extra["clrs"]["layout"]})
            raise KeyError(f"{directory} has no {split!r} trajectories of {algorithm!r}; it has {', '.join(have)}")
        b = blocks[0]
        lo, hi = b["first_index"], b["first_index"] + (b["count"] if limit is None else min(limit, b["count"]))
        store = Store(directory)
        self.spec: Spec = {k: tuple(v) for k, v in m.extra["clrs"]["specs"][algorithm].items()}
        self.items: list[dict] = []
        for sh in m.shards:
            if sh.first_index + sh.samples <= lo or sh.first_index >= hi:
                continue
            for s in iter_tar(store.uri(sh.name)):
                if lo <= s["json"]["index"] < hi:
                    self.items.append(_from_sample(s))
        self.items.sort(key=lambda t: t["meta"]["index"])
        self.algorithm, self.split = algorithm, split

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class SamplerDataset(Dataset):
    """`count` trajectories drawn straight from the NumPy samplers (no shards): item i has the benchmark's
    length `nodes[i % len(nodes)]` (the node count but for optimal_bst, segments_intersect) and its own seed,
    so the dataset is the same every time. `variant` and `inputs` are the samplers' settings
    (generators/clrs/sampling.py): the benchmark's by default."""

    def __init__(self, algorithm: str, count: int, nodes: list[int] | int, seed: int = 0, cache: bool = True,
                 variant: str = "benchmark", inputs: str = "benchmark") -> None:
        from generators.clrs import SPECS, Sampling, algorithms

        if algorithm not in algorithms():
            raise KeyError(f"unknown CLRS algorithm {algorithm!r}; known: {', '.join(algorithms())}")
        Sampling(variant, inputs)  # checks both
        self.algorithm, self.count, self.seed, self.variant, self.inputs = algorithm, count, seed, variant, inputs
        self.nodes = [nodes] if isinstance(nodes, int) else list(nodes)
        self.spec: Spec = dict(SPECS[algorithm])
        self._cache: dict[int, dict] | None = {} if cache else None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        from generators.clrs import sample

        length = self.nodes[i % len(self.nodes)]
        seed = int(np.random.SeedSequence([self.seed, i, sum(map(ord, self.algorithm))]).generate_state(1)[0])
        t = sample(self.algorithm, length, seed, variant=self.variant, inputs=self.inputs)
        item = {"algorithm": t.algorithm, "n": t.num_nodes, "length": int(t.length), "inputs": t.inputs,
                "hints": t.hints, "outputs": t.outputs,
                "meta": {"seed": seed, "index": i, "length_asked": length, "variant": self.variant, "inputs": self.inputs}}
        if self._cache is not None:
            self._cache[i] = item
        return item


@dataclass
class Batch:
    """Padded trajectories: `N` nodes and `T` hint steps for every sample; `node_mask[b, i]` marks real
    nodes, `lengths[b]` the real hint length. Hints are `[B, T, ...]`; padded steps repeat the last one."""

    algorithm: str
    inputs: dict[str, torch.Tensor]
    hints: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    node_mask: torch.Tensor  # [B, N] bool
    lengths: torch.Tensor  # [B] long
    n: torch.Tensor  # [B] long

    @property
    def num_nodes(self) -> int:
        return int(self.node_mask.shape[1])

    @property
    def size(self) -> int:
        return int(self.node_mask.shape[0])

    def to(self, device: str | torch.device) -> Batch:
        mv = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return Batch(self.algorithm, mv(self.inputs), mv(self.hints), mv(self.outputs), self.node_mask.to(device),
                     self.lengths.to(device), self.n.to(device))


def _pad(arr: np.ndarray, loc: str, n_max: int, t_max: int | None) -> np.ndarray:
    """Pad the node axes (and the leading time axis) of one feature."""
    time_axes = 1 if t_max is not None else 0
    widths = [(0, 0)] * arr.ndim
    if t_max is not None:
        widths[0] = (0, t_max - arr.shape[0])
    n_axes = {"node": 1, "edge": 2, "graph": 0}[loc]
    for a in range(time_axes, time_axes + n_axes):
        widths[a] = (0, n_max - arr.shape[a])
    mode = "edge" if t_max is not None and widths[0][1] else "constant"
    if mode == "edge":  # repeat the last step in time, zeros on the node axes
        arr = np.pad(arr, [widths[0]] + [(0, 0)] * (arr.ndim - 1), mode="edge")
        widths[0] = (0, 0)
    return np.pad(arr, widths)


def collate(items: list[dict], spec: Spec) -> Batch:
    """Stack trajectories of one algorithm into a padded `Batch`."""
    if not items:
        raise ValueError("collate needs at least one trajectory")
    algos = {it["algorithm"] for it in items}
    if len(algos) != 1:
        raise ValueError(f"a batch holds one algorithm (got {sorted(algos)})")
    n_max = max(int(it["n"]) for it in items)
    t_max = max(int(it["length"]) for it in items)
    out: dict[str, dict[str, torch.Tensor]] = {"inputs": {}, "hints": {}, "outputs": {}}
    for name, (stage, loc, typ) in spec.items():
        key = STAGE_KEY[stage]
        arrs = [_pad(np.asarray(it[key][name]), loc, n_max, t_max if stage == "hint" else None) for it in items]
        dtype = torch.long if typ in POINTER_TYPES else torch.float32
        out[key][name] = torch.as_tensor(np.stack(arrs)).to(dtype)
    n = torch.tensor([int(it["n"]) for it in items])
    node_mask = torch.arange(n_max)[None, :] < n[:, None]
    lengths = torch.tensor([int(it["length"]) for it in items])
    return Batch(items[0]["algorithm"], out["inputs"], out["hints"], out["outputs"], node_mask, lengths, n)


class Collate:
    """A picklable `collate_fn` for `DataLoader`."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def __call__(self, items: list[dict]) -> Batch:
        return collate(items, self.spec)
