"""VLM training throughput: one process vs Ray Train (TorchTrainer, DDP) with 2 CPU workers, same run.

Both use the same data (world train split 70% + a synthetic job 30%), the same global batch, and the
same total CPU threads (1 process × 2 threads vs 2 workers × 1 thread). Reports samples/second (median
over logging windows after the first), their ratio, and the share of step time spent waiting for data.

    flock /tmp/synth2-heavy.lock .venv/bin/python bench/vlm_throughput.py      # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rates(out: Path) -> tuple[float, float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    r = [x["samples_per_s"] for x in rows[1:]] or [x["samples_per_s"] for x in rows]
    return float(np.median(r)), float(rows[-1]["data_wait_share"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--world", type=Path, default=ROOT / "world")
    ap.add_argument("--synthetic", default=None, help="synthetic shard dir (default: the experiment's or runs/demo)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "vlm_throughput")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vlm_throughput.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from vlm.train import TrainConfig, train, train_ray

    syn = args.synthetic or next(str(p) for p in (ROOT / "runs" / "synth2_experiment" / "synthetic", ROOT / "runs" / "demo")
                                 if (p / "manifest.json").exists())
    sources = [f"{args.world / 'data' / 'train'}@0.7", f"{syn}@0.3"]
    shutil.rmtree(args.work, ignore_errors=True)
    res = {"steps": args.steps, "batch_size": args.batch_size, "sources": sources,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}

    def cfg(name, threads, workers=0):
        return TrainConfig(sources=sources, decoder=str(args.world / "lm"), out=str(args.work / name), steps=args.steps,
                           batch_size=args.batch_size, threads=threads, progress=False, log_every=10,
                           ckpt_every=10_000, num_workers=workers)

    for name, threads, workers in (("single_2threads", 2, 0), ("single_1thread_1loader", 1, 1)):
        t = time.time()
        train(cfg(name, threads, workers))
        sps, wait = rates(args.work / name)
        res[name] = {"samples_per_s": sps, "data_wait_share": wait, "wall_s": round(time.time() - t, 1)}
        print(name, res[name], flush=True)
    t = time.time()
    train_ray(cfg("ray_2workers", 1), num_workers=2)
    sps, wait = rates(args.work / "ray_2workers")
    res["ray_2workers"] = {"samples_per_s": sps, "data_wait_share": wait, "wall_s": round(time.time() - t, 1)}
    print("ray_2workers", res["ray_2workers"], flush=True)
    res["ratio_ray2_over_single"] = res["ray_2workers"]["samples_per_s"] / res["single_2threads"]["samples_per_s"]
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
