"""CLRS single-task training on CPU, tested out of distribution on the CLRS-30 test split, beside
Ibarz et al. (2022) Table 2.

    flock /tmp/synth2-heavy.lock .venv/bin/python bench/clrs_train.py [--steps 300] [--processors triplet_gmpnn,mpnn]

Data straight from the benchmark-exact samplers (generators/clrs, dm-clrs 2.0.3's hints, outputs and
inputs): training and validation as the reference training script draws them (lengths 4/7/11/13/16, its
randomised inputs, validation at 16), the test split as CLRS-30 defines it — the benchmark's inputs at 64
nodes, 32 trajectories per algorithm (32 x 64 for minimum, ...: `generators.clrs.benchmark_split`).
`--test-cap` evaluates only the first trajectories of a larger split when the budget cannot hold it (the
results record both counts). One model per (algorithm, processor) — a fixed number of steps, Adam, best
validation checkpoint — in `--workers` processes of one torch thread each.
Writes bench/results/clrs_train.json and clrs_train.png. The JSON keeps one entry per budget under `runs`
(the label names the steps, batch and data), so a longer run sits beside the earlier ones; `latest` names
the last one written; the plot shows the runs on the benchmark-exact data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results"

# Ibarz et al. 2022, "A Generalist Neural Algorithmic Learner", Table 2: single-task OOD (64 nodes) micro-F1,
# Triplet-GMPNN / MPNN (their improved MPNN baseline), mean over seeds.
PUBLISHED = {"minimum": (97.78, 85.34), "bfs": (99.73, 99.89), "bellman_ford": (97.39, 92.01), "dijkstra": (96.05, 91.50),
             "mst_prim": (86.39, 69.08), "dag_shortest_paths": (98.19, 96.24), "floyd_warshall": (48.52, 26.74),
             "matrix_chain_order": (91.68, 79.84)}
BENCHMARK_DATA = ("benchmark-exact samplers: train/val the reference training recipe (lengths 4-16, randomised inputs), "
                  "test the CLRS-30 test split (benchmark inputs, 64 nodes, per-algorithm count)")


def budget_label(steps: int, batch_size: int, batching: str) -> str:
    return f"{steps} steps x {batch_size}, {batching} batches"


def load_runs(path: Path) -> dict:
    """The runs file; a file from before budgets were kept apart becomes the one run it holds."""
    if not path.exists():
        return {"runs": {}, "latest": None}
    d = json.loads(path.read_text())
    if "runs" in d:
        return d
    b = d["budget"]
    label = budget_label(b["steps"], b["batch_size"], b.get("batching", "mixed"))
    return {"runs": {label: d}, "latest": label}


def one_run(algorithm: str, processor: str, out: str, kw: dict, test_cap: int | None) -> dict:
    import torch

    torch.set_num_threads(1)
    from consumers.clrs.params import ClrsParams
    from consumers.clrs.train import run
    from generators.clrs import benchmark_split

    t0 = time.time()
    full = benchmark_split(algorithm, "test")[0]
    count = min(full, test_cap) if test_cap else full
    p = ClrsParams(algorithm=algorithm, processor=processor, test_count=count, **kw)
    r = run(p, out, threads=1)
    return {"algorithm": algorithm, "processor": processor, "test_micro_f1": r["test_micro_f1"],
            "per_feature": r["test"]["per_feature"], "test_trajectories": r["test"]["trajectories"],
            "benchmark_test_trajectories": full, "test_seconds": r["test"]["seconds"], "steps": r["steps"],
            "train_seconds": r["history"]["train_seconds"],
            "best_val_micro_f1": r["history"]["best_val_micro_f1"], "best_val_step": _best_step(r["history"]["val"]),
            "val_curve": r["history"]["val"],
            "loss_first_last": [r["history"]["loss"][0], r["history"]["loss"][-1]], "parameters": r["history"]["parameters"],
            "train_nodes": r["train_nodes"], "test_nodes": r["test_nodes"], "wall_seconds": round(time.time() - t0, 1)}


def _best_step(val: list[dict]) -> int | None:
    return max(val, key=lambda v: v["micro_f1"])["step"] if val else None


def trivial_baselines(algorithms: list[str], test_cap: int | None) -> dict[str, dict[str, float]]:
    """Test-split accuracy of input-blind pointer guesses, to read the scores against: every node points at
    itself, every node at the source `s`; edge pointers (i, j) -> i. On the same test trajectories as the runs."""
    import numpy as np

    from consumers.clrs.params import ClrsParams
    from consumers.clrs.train import datasets
    from generators.clrs import benchmark_split

    out: dict[str, dict[str, float]] = {}
    for a in algorithms:
        full = benchmark_split(a, "test")[0]
        ds = datasets(ClrsParams(algorithm=a, train_count=1, val_count=1, test_count=min(full, test_cap or full)))[2]
        for name, (stage, loc, typ) in ds.spec.items():
            if stage != "output" or typ != "pointer":
                continue
            guesses: dict[str, list[float]] = {}
            for it in (ds[i] for i in range(len(ds))):
                y, n = it["outputs"][name], it["n"]
                if loc == "edge":
                    guesses.setdefault(f"{name}[i][j] = i", []).append(float(np.mean(y == np.arange(n)[:, None])))
                else:
                    guesses.setdefault(f"{name}[i] = i", []).append(float(np.mean(y == np.arange(n))))
                    if "s" in it["inputs"] and ds.spec["s"][2] == "mask_one":
                        guesses.setdefault(f"{name}[i] = s", []).append(float(np.mean(y == int(np.argmax(it["inputs"]["s"])))))
            out[a] = {k: round(100 * float(np.mean(v)), 2) for k, v in guesses.items()}
    return out


def plot(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    res = runs["runs"][runs["latest"]]
    algos = res["algorithms"]
    shown = {k: r for k, r in runs["runs"].items() if r.get("data") == BENCHMARK_DATA}  # comparable to the table
    series = []
    for label, r in shown.items():
        for p in r["processors"]:
            series.append((f"ours {p}, {label}", [100 * (r["results"].get(f"{a}/{p}") or {}).get("test_micro_f1", np.nan)
                                                 for a in algos]))
    series += [("published Triplet-GMPNN", [PUBLISHED[a][0] for a in algos]),
               ("published MPNN", [PUBLISHED[a][1] for a in algos])]
    fig, ax = plt.subplots(figsize=(14, 5.5))
    w = 0.8 / len(series)
    for j, (name, vals) in enumerate(series):
        ax.bar(np.arange(len(algos)) + j * w, vals, w, label=name, hatch="//" if name.startswith("published") else None,
               alpha=0.6 if name.startswith("published") else 1.0)
    ax.set_xticks(np.arange(len(algos)) + w * (len(series) - 1) / 2, algos, rotation=20)
    ax.set_ylabel("OOD micro-F1 at 64 nodes (%)")
    ax.set_ylim(0, 105)
    lines = []
    for label, r in shown.items():
        cap = r["budget"].get("max_seconds")
        short = {f"{a}/{p}": x["steps"] for a in algos for p in r["processors"]
                 if (x := r["results"].get(f"{a}/{p}")) and x["steps"] < r["budget"]["steps"]}
        lines.append(f"{label}, hidden {r['budget']['hidden']}" + (f", <= {cap:.0f} s training each" if cap else "")
                     + (f" (stopped early: {', '.join(f'{k} {v}' for k, v in short.items())})" if short else ""))
    capped = {a: f"{x['test_trajectories']}/{x['benchmark_test_trajectories']}" for a in algos
              for x in [res["results"].get(f"{a}/{res['processors'][0]}") or {}]
              if x.get("test_trajectories", 0) < x.get("benchmark_test_trajectories", 0)}
    ax.set_title("CLRS single-task on 2 shared CPU cores, tested on the CLRS-30 test split (benchmark-exact samplers)\n"
                 + "\n".join(lines) + (f"\ntest trajectories below the split's: {capped}" if capped else "")
                 + "\npublished: 10,000 steps x 32, hidden 128", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algorithms", default=",".join(PUBLISHED))
    ap.add_argument("--processors", default="triplet_gmpnn")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batching", choices=["mixed", "by_size"], default="by_size",
                    help="by_size: each batch one node count (as the CLRS trainer); mixed: padded to the largest")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=None, help="safety cap on each run's training time")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--train-count", type=int, default=1000, help="training trajectories per algorithm")
    ap.add_argument("--val-count", type=int, default=32, help="validation trajectories per algorithm")
    ap.add_argument("--test-cap", type=int, default=None,
                    help="evaluate at most this many of a test split's trajectories (the benchmark's count otherwise)")
    ap.add_argument("--test-batch-size", type=int, default=4)
    ap.add_argument("--models", default=str(ROOT / "runs" / "clrs-bench-models"))
    ap.add_argument("--out", default=str(OUT / "clrs_train.json"))
    ap.add_argument("--append", action="store_true",
                    help="keep the runs of other processors already in --out under this budget and add these")
    ap.add_argument("--replot", action="store_true", help="only redo the plot of --out")
    args = ap.parse_args()
    algos, procs = args.algorithms.split(","), args.processors.split(",")
    runs = load_runs(Path(args.out))
    if args.replot:
        if not runs["runs"]:
            raise SystemExit(f"--replot: {args.out} has no runs")
        plot(runs, Path(args.out).with_suffix(".png"))
        return

    t0 = time.time()
    kw = {"steps": args.steps, "batch_size": args.batch_size, "hidden": args.hidden, "lr": args.lr,
          "eval_every": args.eval_every, "max_seconds": args.max_seconds, "batching": args.batching,
          "train_count": args.train_count, "val_count": args.val_count, "test_batch_size": args.test_batch_size}
    label = budget_label(args.steps, args.batch_size, args.batching) + ", CLRS-30 test split"
    results: dict[str, dict] = {}
    earlier_seconds = 0.0
    if args.append and label in runs["runs"]:
        prev = runs["runs"][label]
        if {k: prev["budget"].get(k) for k in kw} != kw:
            raise SystemExit(f"--append: {args.out} holds {label!r} with another budget ({prev['budget']}); not mixing them")
        results = {k: v for k, v in prev["results"].items() if v["processor"] not in procs}
        procs = list(dict.fromkeys(prev["processors"] + procs))
        earlier_seconds = prev.get("total_seconds", 0.0)
    from generators.clrs import benchmark_split

    # the costliest tests first, so the pool's two workers finish together
    cost = {"floyd_warshall": 5, "matrix_chain_order": 5, "dag_shortest_paths": 3, "mst_prim": 2, "dijkstra": 2}
    jobs = sorted(((a, p) for p in procs for a in algos if f"{a}/{p}" not in results),
                  key=lambda ap_: -cost.get(ap_[0], 1) * min(benchmark_split(ap_[0], "test")[0], args.test_cap or 10**9))
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futs = {pool.submit(one_run, a, p, f"{args.models}/{a}-{p}", kw, args.test_cap): (a, p) for a, p in jobs}
        for f in as_completed(futs):
            a, p = futs[f]
            r = f.result()
            results[f"{a}/{p}"] = r
            pub = PUBLISHED[a][0 if p == "triplet_gmpnn" else 1] if a in PUBLISHED else None
            print(f"{a:20s} {p:14s} OOD micro-F1 {100 * r['test_micro_f1']:6.2f}  (published {pub})  "
                  f"val {100 * (r['best_val_micro_f1'] or 0):6.2f}  {r['steps']} steps {r['train_seconds']:.0f}s "
                  f"+ test {r['test_seconds']:.0f}s on {r['test_trajectories']}/{r['benchmark_test_trajectories']}",
                  flush=True)
    table = []
    for a in algos:
        row = {"algorithm": a, "published_triplet_gmpnn": PUBLISHED.get(a, (None, None))[0],
               "published_mpnn": PUBLISHED.get(a, (None, None))[1]}
        for p in procs:
            r = results.get(f"{a}/{p}")
            row[f"ours_{p}"] = round(100 * r["test_micro_f1"], 2) if r else None
            row[f"test_trajectories_{p}"] = f"{r['test_trajectories']}/{r['benchmark_test_trajectories']}" if r else None
        if row.get("ours_triplet_gmpnn") is not None and row["published_triplet_gmpnn"] is not None:
            row["gap_triplet_gmpnn"] = round(row["ours_triplet_gmpnn"] - row["published_triplet_gmpnn"], 2)
        table.append(row)
    res = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads_per_run": 1,
                       "workers": args.workers, "note": "2 shared CPU cores; other agents' work running beside it"},
           "data": BENCHMARK_DATA,
           "budget": kw | {"train_nodes": [4, 7, 11, 13, 16], "train_inputs": "training", "val_nodes": [16],
                           "test_cap": args.test_cap, "optimizer": "Adam", "grad_clip": 1.0, "teacher_forcing": 0.0,
                           "hint_supervision": True},
           "published": "Ibarz et al. 2022, Table 2 (single-task OOD micro-F1, Triplet-GMPNN / MPNN), 10,000 steps x batch 32, "
                        "hidden 128, on accelerators",
           "algorithms": algos, "processors": procs, "table": table, "results": results}
    for p in procs:
        vals = [r[f"ours_{p}"] for r in table if r.get(f"ours_{p}") is not None]
        res[f"mean_ours_{p}"] = round(sum(vals) / len(vals), 2) if vals else None
    pub = [r["published_triplet_gmpnn"] for r in table if r["published_triplet_gmpnn"] is not None]
    res["mean_published_triplet_gmpnn"] = round(sum(pub) / len(pub), 2) if pub else None
    res["trivial_baselines"] = trivial_baselines(algos, args.test_cap)
    res["total_seconds"] = round(time.time() - t0 + earlier_seconds, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = load_runs(out)  # re-read: keep whatever else was written meanwhile
    runs["runs"][label] = res
    runs["latest"] = label
    out.write_text(json.dumps(runs, indent=1))
    plot(runs, out.with_suffix(".png"))
    print(json.dumps(table, indent=1))
    print(f"wrote {out} and {out.with_suffix('.png')} in {res['total_seconds']} s")


if __name__ == "__main__":
    main()
