"""The `clrs` job kind: CLRS-30 execution traces (generators/clrs) as WebDataset shards.

One sample is one trajectory:
  `{key}.input.{name}.npy`, `{key}.hint.{name}.npy` (leading time axis), `{key}.output.{name}.npy`
  `{key}.json`: source "synthetic", algorithm, family, split, n, length, seed, index, job_id

Samples are written in a fixed order — split (train, val, test), then algorithm in spec order, then
index — and sample `i` of (split, algorithm) is drawn from its own seed, so a resumed job regenerates
nothing it already wrote and produces exactly the shards of an uninterrupted run. Shard k (samples
[k*S, (k+1)*S)) is sampled and written by a worker (`ClrsShards`); the driver commits the manifest. The manifest's
`clrs.layout` gives each (split, algorithm) block's first sample index and count, which is how a reader
finds the shards it needs, and `clrs.specs` each algorithm's feature spec (stage, location, type), so a
reader needs no generator code. The samplers are NumPy and cheap: `synth2 run` runs them in
process (the local executor), but any executor can.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import numpy as np

from contracts.shards import Manifest, encode_npy, sample_key, shard_name, write_shard
from contracts.storage import Store
from pipeline.executors import Step
from pipeline.job import JobContext, job_id_for, write_shards
from pipeline.prompts import derive_seed
from pipeline.spec import JobSpec, parse_spec

SPLITS = ("train", "val", "test")


def layout(spec: JobSpec) -> list[dict]:
    """Every (split, algorithm) block in writing order, with its first sample index and count."""
    blocks, first = [], 0
    for split in SPLITS:
        s = getattr(spec.clrs, split)
        for algorithm in spec.clrs.algorithms:
            blocks.append({"split": split, "algorithm": algorithm, "first_index": first, "count": s.count,
                           "nodes": list(s.nodes)})
            first += s.count
    return blocks


def trajectory_seed(seed: int, split: str, algorithm: str, i: int) -> int:
    return derive_seed("clrs", seed, split, algorithm, i)


def trajectory_sample(traj, key: str, meta: dict) -> dict[str, bytes | str]:
    """A trajectory as one WebDataset sample (arrays as .npy entries, metadata as json)."""
    if meta.get("source") != "synthetic":
        raise ValueError(f"a CLRS sample's json needs source 'synthetic' (got {meta.get('source')!r})")
    sample: dict[str, bytes | str] = {"__key__": key, "json": json.dumps(meta, sort_keys=True).encode()}
    for stage, feats in (("input", traj.inputs), ("hint", traj.hints), ("output", traj.outputs)):
        for name, arr in feats.items():
            sample[f"{stage}.{name}.npy"] = encode_npy(np.asarray(arr))
    return sample


def iter_samples(spec: JobSpec, start: int = 0) -> Iterator[tuple[int, dict, dict]]:
    """(global index, sample, json) for every sample from `start` on, in writing order."""
    from generators.clrs import FAMILIES, sample

    job_id = job_id_for(spec)
    for b in layout(spec):
        lo = max(start - b["first_index"], 0)
        for i in range(lo, b["count"]):
            n = b["nodes"][i % len(b["nodes"])]
            seed = trajectory_seed(spec.clrs.seed, b["split"], b["algorithm"], i)
            traj = sample(b["algorithm"], n, seed, variant=spec.clrs.variant, inputs=spec.clrs.inputs)
            index = b["first_index"] + i
            meta = {"source": "synthetic", "job_id": job_id, "index": index, "algorithm": b["algorithm"],
                    "family": FAMILIES.get(b["algorithm"]), "split": b["split"], "n": int(n),
                    "length": int(traj.length), "seed": seed, "split_index": i,
                    **({"variant": spec.clrs.variant} if spec.clrs.variant != "benchmark" else {}),
                    **({"inputs": spec.clrs.inputs} if spec.clrs.inputs != "benchmark" else {})}
            yield index, trajectory_sample(traj, sample_key(job_id, index), meta), meta


def job_layout(spec: JobSpec) -> dict:
    return {}


class ClrsShards:
    """A shard id in; its trajectories sampled and the shard written; its info and lengths out."""

    def __init__(self, spec: dict, store: str, threads: int | None = None, num_gpus: float = 0.0) -> None:
        self.spec, self.store = parse_spec(spec), Store(store)
        self.total = sum(b["count"] for b in layout(self.spec))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        s, size = int(batch["shard"][0]), self.spec.output.shard_size
        lo, hi = s * size, min((s + 1) * size, self.total)
        samples, lengths = [], {}
        for _, sample, meta in itertools.islice(iter_samples(self.spec, lo), hi - lo):
            samples.append(sample)
            acc = lengths.setdefault(f"{meta['split']}/{meta['algorithm']}", [0, 0])
            acc[0], acc[1] = acc[0] + meta["length"], acc[1] + 1
        info = write_shard(self.store, shard_name(self.spec.output.name, s), samples, lo)
        return {"shard": np.array([s]), "info": np.array([json.dumps(vars(info))], dtype=object),
                "lengths": np.array([json.dumps(lengths)], dtype=object)}


def run(ctx: JobContext) -> dict:
    """Run (or resume) a `clrs` job; returns its stats."""
    from generators.clrs import SPECS, algorithms

    spec = ctx.spec
    blocks = layout(spec)
    algorithms()  # registers every sampler's spec
    extra = {"clrs": {"layout": blocks, "specs": {a: SPECS[a] for a in spec.clrs.algorithms},
                      "sample_format": "input.NAME.npy / hint.NAME.npy / output.NAME.npy"}}
    before = Manifest.load(ctx.store.url)
    start = before.samples if before else 0
    lengths: dict[str, list[int]] = {}

    def add(row: dict) -> None:
        for k, (total, n) in json.loads(row["lengths"]).items():
            acc = lengths.setdefault(k, [0, 0])
            acc[0], acc[1] = acc[0] + total, acc[1] + n

    step = Step.of("sample", ClrsShards, {"spec": spec.model_dump(mode="json"), "store": ctx.store.url},
                   spec.resources.embed.model_copy(update={"num_gpus": 0.0}))
    manifest = write_shards(ctx, sum(b["count"] for b in blocks), step, ("sample",), extra=extra, on_result=add)
    return ctx.finish({"samples": manifest.samples, "shards": len(manifest.shards), "resumed_from": start,
                       "mean_length_written": {k: round(t / n, 2) for k, (t, n) in sorted(lengths.items())}},
                      report=False)


def run_clrs_job(spec: JobSpec, *, force: bool = False, executor=None) -> dict:
    """Run (or resume) a `clrs` job (the same as `pipeline.runner.run_job` for kind clrs)."""
    from pipeline.executors import LocalExecutor
    from pipeline.job import record_end

    ctx = JobContext.open(spec, force, executor or LocalExecutor(), {})
    try:
        return run(ctx)
    except BaseException as e:
        record_end(ctx.progress, e)
        raise
