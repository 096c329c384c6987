"""Pipeline throughput on the embedded world: Ray Data (stages as actor pools, streaming, workers
writing chunks and shards) against the same stages in a plain single-process loop, same spec, in
one run on the same machine; the two must write identical shards. Plus shard writing against raw
`tar` writing of the same bytes.

    python bench/pipeline_throughput.py --world world [--per-concept 40]

Writes bench/results/pipeline_throughput.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contracts.shards import Manifest, ShardWriter, iter_samples, make_sample, sample_key  # noqa: E402
from pipeline.run import init_ray  # noqa: E402
from pipeline.runner import LocalExecutor, RayExecutor, run_job  # noqa: E402
from pipeline.spec import parse_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class CpuSampler:
    """Mean utilisation of each core while a block runs."""

    def __enter__(self):
        self.samples, self._stop = [], threading.Event()
        psutil.cpu_percent(percpu=True)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.5):
            self.samples.append(psutil.cpu_percent(percpu=True))

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.per_core = np.mean(self.samples, axis=0).round(1).tolist() if self.samples else []


def spec_for(world: Path, out: Path, per_concept: int, workers: int):
    d = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    d["captions"].update(model=str(world / "lm"), per_concept=per_concept)
    d["synthesis"].update(prior=str(world / "prior"), encoder={"name": f"local-dir:{world / 'clip'}"})
    d["scoring"]["balance"] = {"method": "none"}
    d["output"].update(dir=str(out), shard_size=200)  # work units small enough for two workers to share
    # Two model actors per stage, one torch thread each; scoring shares the cores with captioning.
    d["resources"] = {"caption": {"num_cpus": 0.75, "concurrency": workers},
                      "score": {"num_cpus": 0.5, "concurrency": 1},
                      "synthesize": {"num_cpus": 1, "concurrency": workers}}
    return parse_spec(d)


def timed_run(spec, executor) -> dict:
    with CpuSampler() as cpu:
        t = time.perf_counter()
        stats = run_job(spec, executor=executor)
        seconds = time.perf_counter() - t
    stages = json.loads((Path(spec.output.dir) / "progress.json").read_text())["stages"]
    return {"seconds": round(seconds, 2), "pairs": stats["samples"], "captions_requested": stats["requested"],
            "pairs_per_s": round(stats["samples"] / seconds, 2), "cpu_percent_per_core": cpu.per_core,
            # wall time per phase from the job's own progress.json (caption and score are one stream)
            "phase_seconds": {k: v.get("seconds") for k, v in stages.items()}}


def shard_write_ratio(samples: list[dict], shard_size: int, tmp: Path, repeats: int = 3) -> dict:
    """ShardWriter (temp name, fsync, rename, sha256, manifest) against plain tarfile writing."""
    best_writer, best_raw = float("inf"), float("inf")
    for r in range(repeats):
        d = tmp / f"w{r}"
        t = time.perf_counter()
        w = ShardWriter(d, "bench", shard_size)
        w.write_all(samples)
        w.close()
        best_writer = min(best_writer, time.perf_counter() - t)
        d2 = tmp / f"raw{r}"
        d2.mkdir()
        t = time.perf_counter()
        for k in range(0, len(samples), shard_size):
            with tarfile.open(d2 / f"raw-{k:06d}.tar", "w") as tar:
                for s in samples[k:k + shard_size]:
                    for ext, data in s.items():
                        if ext == "__key__":
                            continue
                        info = tarfile.TarInfo(f"{s['__key__']}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
        best_raw = min(best_raw, time.perf_counter() - t)
    return {"samples": len(samples), "writer_s": round(best_writer, 4), "raw_tar_s": round(best_raw, 4),
            "writer_over_raw": round(best_writer / best_raw, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="world")
    ap.add_argument("--per-concept", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2, help="actors per model stage under Ray")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pipeline_throughput.json"))
    args = ap.parse_args()
    os.environ.setdefault("SYNTH2_CHUNK_TARGET", "256")  # caption chunks of 256 requests (the same for both runs)
    world = Path(args.world).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="synth2-bench-"))
    import ray
    import torch

    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
               "world": "WORLD (a tiny world: synth2 world build --size tiny)", "per_concept": args.per_concept}
    # Baseline: one process, torch on every core, stages one after another.
    torch.set_num_threads(os.cpu_count())
    local = LocalExecutor(threads=os.cpu_count())
    results["plain_loop"] = timed_run(spec_for(world, tmp / "local", args.per_concept, 1), local)
    results["plain_loop"]["stage_seconds"] = {k: round(v, 2) for k, v in local.seconds.items()}
    init_ray(local=True)
    results["ray"] = timed_run(spec_for(world, tmp / "ray", args.per_concept, args.workers), RayExecutor())
    ray.shutdown()
    results["ray_over_plain_loop"] = round(results["ray"]["pairs_per_s"] / results["plain_loop"]["pairs_per_s"], 3)
    results["ray_over_plain_loop_per_phase"] = {
        k: round(v / results["ray"]["phase_seconds"][k], 3) for k, v in results["plain_loop"]["phase_seconds"].items()
        if v and results["ray"]["phase_seconds"].get(k)}
    shas = [[(s.name, s.sha256) for s in Manifest.load(tmp / d).shards] for d in ("local", "ray")]
    results["identical_shards"] = shas[0] == shas[1]
    samples = [make_sample(sample_key("bench", i), s["txt"], s["emb.npy"], s["json"])
               for i, s in enumerate(iter_samples(tmp / "ray"))]
    samples = (samples * (4000 // max(1, len(samples)) + 1))[:4000]
    samples = [dict(s, __key__=sample_key("bench", i)) for i, s in enumerate(samples)]
    results["shard_writing"] = shard_write_ratio(samples, 1000, tmp)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
