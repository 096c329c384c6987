"""Sampler throughput of generators/clrs: trajectories per second per algorithm at 16 and 64 nodes.

    .venv/bin/python bench/clrs_sampler_throughput.py [--seconds 1.0] [--nodes 16,64]

One process, one thread (the samplers are NumPy loops). Each (algorithm, n) runs for about `--seconds`
(at least `--min-trajectories`), seeds 0, 1, 2, ... Writes bench/results/clrs_sampler_throughput.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from generators.clrs import FAMILIES, algorithms, sample  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def measure(algorithm: str, n: int, seconds: float, min_count: int) -> dict:
    lengths, count = [], 0
    t0 = time.perf_counter()
    while count < min_count or time.perf_counter() - t0 < seconds:
        lengths.append(sample(algorithm, n, count).length)
        count += 1
    dt = time.perf_counter() - t0
    return {"trajectories": count, "seconds": round(dt, 4), "per_second": round(count / dt, 2),
            "mean_length": round(float(np.mean(lengths)), 2)}


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(res["algorithms"])
    ns = res["nodes"]
    fig, ax = plt.subplots(figsize=(12, 5))
    w = 0.8 / len(ns)
    for j, n in enumerate(ns):
        ax.bar(np.arange(len(algos)) + j * w, [res["algorithms"][a][str(n)]["per_second"] for a in algos], w, label=f"n = {n}")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(algos)) + w * (len(ns) - 1) / 2, algos, rotation=75, ha="right", fontsize=8)
    ax.set_ylabel("trajectories / s (one core)")
    ax.set_title("CLRS-30 NumPy samplers: throughput")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per (algorithm, n)")
    ap.add_argument("--min-trajectories", type=int, default=3)
    ap.add_argument("--nodes", default="16,64")
    ap.add_argument("--out", default=str(OUT / "clrs_sampler_throughput.json"))
    args = ap.parse_args()
    ns = [int(x) for x in args.nodes.split(",")]
    res = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "numpy": np.__version__, "note": "2 shared CPU cores, other work running"},
           "seconds_per_cell": args.seconds, "nodes": ns, "algorithms": {}}
    t0 = time.time()
    for a in algorithms():
        res["algorithms"][a] = {"family": FAMILIES.get(a)} | {str(n): measure(a, n, args.seconds, args.min_trajectories)
                                                             for n in ns}
        cells = [res["algorithms"][a][str(n)] for n in ns]
        row = "  ".join(f"n={n}: {c['per_second']:9.1f}/s (T={c['mean_length']})" for n, c in zip(ns, cells, strict=True))
        print(f"{a:32s} {row}", flush=True)
    res["total_seconds"] = round(time.time() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    plot(res, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')} ({res['total_seconds']} s)")


if __name__ == "__main__":
    main()
