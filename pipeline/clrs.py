"""The `clrs` job kind: CLRS-30 execution traces (generators/clrs) as WebDataset shards.

One sample is one trajectory:
  `{key}.input.{name}.npy`, `{key}.hint.{name}.npy` (leading time axis), `{key}.output.{name}.npy`
  `{key}.json`: source "synthetic", algorithm, family, split, n, length, seed, index, job_id

Samples are written in a fixed order — split (train, val, test), then algorithm in spec order, then
index — and sample `i` of (split, algorithm) is drawn from its own seed, so a resumed job regenerates
nothing it already wrote and produces exactly the shards of an uninterrupted run. The manifest's
`clrs.layout` gives each (split, algorithm) block's first sample index and count, which is how a reader
finds the shards it needs, and `clrs.specs` each algorithm's feature spec (stage, location, type), so a
reader needs no generator code. The samplers are NumPy and cheap: they run in this process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np

from pipeline.prompts import derive_seed
from pipeline.runner import Progress, job_id_for, prepare_dir
from pipeline.shards import ShardWriter, encode_npy, sample_key
from pipeline.spec import JobSpec, spec_hash

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
            traj = sample(b["algorithm"], n, seed)
            index = b["first_index"] + i
            meta = {"source": "synthetic", "job_id": job_id, "index": index, "algorithm": b["algorithm"],
                    "family": FAMILIES.get(b["algorithm"]), "split": b["split"], "n": int(n),
                    "length": int(traj.length), "seed": seed, "split_index": i}
            yield index, trajectory_sample(traj, sample_key(job_id, index), meta), meta


def run_clrs_job(spec: JobSpec, *, force: bool = False, executor=None) -> dict:
    """Run (or resume) a `clrs` job; returns its stats. `executor` is unused: sampling runs here."""
    t0 = time.time()
    out = prepare_dir(spec, force)
    job_id = job_id_for(spec)
    progress = Progress(out, job_id)
    blocks = layout(spec)
    total = sum(b["count"] for b in blocks)
    writer = ShardWriter(out.url, spec.output.name, spec.output.shard_size, spec.model_dump(mode="json"), spec_hash(spec))
    from generators.clrs import SPECS, algorithms

    algorithms()  # registers every sampler's spec
    writer.manifest.extra["clrs"] = {"layout": blocks, "specs": {a: SPECS[a] for a in spec.clrs.algorithms},
                                     "sample_format": "input.NAME.npy / hint.NAME.npy / output.NAME.npy"}
    start = writer.start_index
    progress.update("sample", done=start, total=total, status="RUNNING")
    lengths: dict[str, list[int]] = {}
    try:
        if not writer.complete:
            for index, s, meta in iter_samples(spec, start):
                writer.write(s)
                lengths.setdefault(f"{meta['split']}/{meta['algorithm']}", []).append(meta["length"])
                progress.update("sample", done=index + 1, shards=len(writer.manifest.shards))
        manifest = writer.close()
    except BaseException as e:
        progress.status, progress.error = ("STOPPED" if isinstance(e, KeyboardInterrupt) else "FAILED"), str(e)
        progress.update("sample", status=progress.status, force=True)
        raise
    progress.update("sample", done=total, status="SUCCEEDED", shards=len(manifest.shards), force=True)
    stats = {"job_id": job_id, "spec_hash": spec_hash(spec), "samples": manifest.samples, "shards": len(manifest.shards),
             "resumed_from": start, "seconds": round(time.time() - t0, 2),
             "mean_length_written": {k: round(float(np.mean(v)), 2) for k, v in sorted(lengths.items())}}
    out.write_json(stats, "stats.json")
    progress.status = "SUCCEEDED"
    progress.save()
    return stats
