"""The closed loop against the uniform baseline at equal synthetic budget (issue #22), on a built world.

For every seed: `synth2 loop` with `strategy: errors` and with `strategy: uniform` (the same rounds, pairs
per round, steps and mix), sharing one jobs directory so the round-1 job (uniform in both arms) and the
baseline's jobs run once. Per round, on the TEST split (never used for a weight): held-out-composition
accuracy and CIDEr, mean ± sd over seeds. Results: bench/results/loop_experiment/{results.json, table.md,
loop_experiment.png}; each arm's loop.json and per-round plots under --work.

    .venv/bin/python bench/loop_experiment.py --world world                     # 3 seeds x 3 rounds
    .venv/bin/python bench/loop_experiment.py --world world --seeds 0 --rounds 2 --steps 50   # smoke run
    .venv/bin/python bench/loop_experiment.py --world world --alpha 4 --out bench/results/loop_experiment_alpha4
                                                      # sharper error weights; reuses the uniform arm's rounds
    .venv/bin/python bench/loop_experiment.py --world world --kinds ...   # the loop also weights relation captions
    .venv/bin/python bench/loop_experiment.py --out bench/results/loop_experiment_p24_seeds345 --tables-only   # tables again
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._vlm import rel_path  # noqa: E402
from bench.loop_kinds import KINDS  # noqa: E402
from bench.synth2_experiment import mean_std  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=ROOT / "world")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop_experiment")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "loop_experiment")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs-per-round", type=int, default=400)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--alpha", type=float, default=2.0, help="sharpness of the error weights (weight ∝ error^alpha)")
    ap.add_argument("--kinds", action="store_true",
                    help="the loop also splits each job between one- and two-concept prompts by its relation misses")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tables-only", action="store_true", help="rewrite --out's table.md and plot from its results.json")
    args = ap.parse_args()
    if args.tables_only:
        print(write_tables(json.loads((args.out / "results.json").read_text()), args.out))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from vlm.loop import run_loop
    from vlm.loop_job import LoopParams, config

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    world = json.loads((args.world / "world.json").read_text())
    runs: dict[str, dict] = {}
    t0 = time.time()
    for seed in args.seeds:
        for strategy in ("errors", "uniform"):
            # alpha shapes only the error-weighted arm: the uniform arm keeps one setting (and one folder), so a
            # run with another --alpha reuses its finished rounds
            alpha = args.alpha if strategy == "errors" else 2.0
            p = LoopParams(world=str(args.world), strategy=strategy, rounds=args.rounds,
                           pairs_per_round=args.pairs_per_round, steps=args.steps, share=args.share, alpha=alpha,
                           seed=seed, threads=args.threads, kinds=args.kinds and strategy == "errors")
            arm = (f"errors-a{alpha:g}" + ("-kinds" if args.kinds else "")) if strategy == "errors" else strategy
            state = run_loop(config(p, args.work / f"{arm}-s{seed}", jobs_dir=args.work / "jobs"))
            runs[f"{strategy}-s{seed}"] = {"rounds": [{k: r[k] for k in ("round", "job_id", "pairs", "synthetic_pairs_total",
                                                                         "weights", "test", "seconds", "parts",
                                                                         "relation_share") if k in r}
                                                      for r in state["rounds"]]}
            print(f"{strategy}-s{seed}: " + ", ".join(f"r{r['round']} held-out {r['test']['held_out_composition']:.3f}"
                                                      for r in state["rounds"]), flush=True)
    table = {}
    for strategy in ("errors", "uniform"):
        for r in range(1, args.rounds + 1):
            rows = [runs[f"{strategy}-s{s}"]["rounds"][r - 1]["test"] for s in args.seeds]
            table[f"{strategy}-r{r}"] = {k: [float(np.mean([x[k] for x in rows])),
                                             float(np.std([x[k] for x in rows], ddof=1)) if len(rows) > 1 else 0.0]
                                         for k in ("held_out_composition", "seen_composition", "cider", "bleu4")}
    last = args.rounds
    ratio = table[f"errors-r{last}"]["held_out_composition"][0] / max(table[f"uniform-r{last}"]["held_out_composition"][0],
                                                                       1e-9)
    results = {"world": rel_path(args.world), "world_size": world["size"], "world_config_hash": world["config_hash"],
               "world_clip_zero_shot": world["quality"]["clip_zero_shot"]["all"], "settings": vars(args) | {
                   "world": rel_path(args.world), "out": rel_path(args.out), "work": rel_path(args.work)},
               "runs": runs, "table": table, "goal": {"held_out_ratio_last_round": ratio, "goal_met (>= 1.2)": ratio >= 1.2},
               "seconds": round(time.time() - t0, 1),
               "machine": {"cpus": os.cpu_count(), "threads": args.threads, "platform": platform.platform()}}
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(write_tables(results, args.out))
    print(json.dumps(results["goal"]))


def write_tables(results: dict, out: Path) -> str:
    """OUT/table.md (held-out compositions and CIDEr per round; then held-out compositions per kind of test
    scene, the loop's trade-off between kinds) and OUT/loop_experiment.png, from a results.json; returns the
    table."""
    table, rounds, seeds = results["table"], results["settings"]["rounds"], results["settings"]["seeds"]
    lines = ["| round | loop held-out comp. | uniform held-out comp. | ratio | loop CIDEr | uniform CIDEr |",
             "|---|---|---|---|---|---|"]
    for r in range(1, rounds + 1):
        e, u = table[f"errors-r{r}"], table[f"uniform-r{r}"]
        lines.append(f"| {r} | {e['held_out_composition'][0]:.3f} ± {e['held_out_composition'][1]:.3f} | "
                     f"{u['held_out_composition'][0]:.3f} ± {u['held_out_composition'][1]:.3f} | "
                     f"{e['held_out_composition'][0] / max(u['held_out_composition'][0], 1e-9):.2f} | "
                     f"{e['cider'][0]:.3f} ± {e['cider'][1]:.3f} | {u['cider'][0]:.3f} ± {u['cider'][1]:.3f} |")
    lines += ["", "Held-out compositions by kind of test scene (mean ± sd over seeds):", "",
              "| round | " + " | ".join(f"{arm} {k}" for k in KINDS for arm in ("loop", "uniform")) + " |",
              "|---" * (1 + 2 * len(KINDS)) + "|"]
    for r in range(1, rounds + 1):
        cells = []
        for k in KINDS:
            for strategy in ("errors", "uniform"):
                vals = [results["runs"][f"{strategy}-s{s}"]["rounds"][r - 1]["test"]["composition_by_kind"]
                        .get(k, {}).get("held_out") for s in seeds]
                m, sd = mean_std([v for v in vals if v is not None]) if any(v is not None for v in vals) else (None, 0)
                cells.append("-" if m is None else f"{m:.3f} ± {sd:.3f}")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    plot(table, rounds, out / "loop_experiment.png")
    return text


def plot(table: dict, rounds: int, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(range(1, rounds + 1))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, title in ((axes[0], "held_out_composition", "test held-out composition acc."),
                           (axes[1], "cider", "test CIDEr")):
        for strategy, colour in (("errors", "#3a7"), ("uniform", "#888")):
            m = [table[f"{strategy}-r{r}"][key][0] for r in xs]
            s = [table[f"{strategy}-r{r}"][key][1] for r in xs]
            ax.errorbar(xs, m, yerr=s, marker="o", capsize=3, color=colour,
                        label="loop (error-weighted)" if strategy == "errors" else "uniform baseline")
        ax.set_xticks(xs)
        ax.set_xlabel("round")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
