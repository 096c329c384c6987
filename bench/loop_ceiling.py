"""How much could *any* concept weighting lift held-out compositions? The ceiling of issue #22's loop.

The closed loop (`bench/loop_experiment.py`) weights each round's synthetic job by the VLM's validation errors
and reached 1.00-1.03x the uniform baseline's held-out-composition accuracy (goal 1.2x). This bench asks whether
the goal is reachable by reweighting at all: an *oracle* arm runs the same loop (same rounds, pairs per round,
steps, mix, seeds, jobs directory) but its rounds 2.. put SHARE of every job on the world's held-out
compositions, which it reads from world.json — knowledge the loop is never given. Round 1 is uniform in every
arm, as in the loop. The uniform arm is the loop experiment's own (its folders are reused when the settings
match, so pass the same --work and --steps).

    .venv/bin/python bench/loop_ceiling.py --world world --steps 600 --work runs/loop_experiment_600

Writes bench/results/loop_ceiling/{results.json, table.md}."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=ROOT / "world")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop_ceiling")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "loop_experiment_600")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs-per-round", type=int, default=400)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--share", type=float, default=0.3, help="synthetic share of the training mix")
    ap.add_argument("--oracle-share", type=float, default=0.8, help="share of each job on the held-out compositions")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    import vlm.loop as loop
    from vlm.loop_job import LoopParams, config

    torch.set_num_threads(args.threads)
    world = json.loads((args.world / "world.json").read_text())
    held = set(world["held_out_compositions"])
    errors_to_weights = loop.errors_to_weights  # the uniform arm keeps the real one

    def oracle(per_concept, items, alpha=2.0, floor=0.1):
        h = [c for c in items if c in held]
        return {c: (args.oracle_share / len(h) if c in held else (1 - args.oracle_share) / (len(items) - len(h)))
                for c in items}

    t0 = time.time()
    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for arm in ("oracle", "uniform"):
            p = LoopParams(world=str(args.world), strategy="errors" if arm == "oracle" else "uniform", rounds=args.rounds,
                           pairs_per_round=args.pairs_per_round, steps=args.steps, share=args.share, seed=seed,
                           threads=args.threads)
            name = f"oracle-{args.oracle_share:g}" if arm == "oracle" else "uniform"
            loop.errors_to_weights = oracle if arm == "oracle" else errors_to_weights
            state = loop.run_loop(config(p, args.work / f"{name}-s{seed}", jobs_dir=args.work / "jobs"))
            runs.setdefault(arm, []).append({"seed": seed, "rounds": [
                {"round": r["round"], "held_out_composition": r["test"]["held_out_composition"],
                 "seen_composition": r["test"]["seen_composition"], "cider": r["test"]["cider"],
                 "held_out_share_of_pairs": _share(r["synthetic_concepts"], held)} for r in state["rounds"]]})
            print(arm, seed, [round(r["test"]["held_out_composition"], 3) for r in state["rounds"]], flush=True)
    table = {arm: [{k: [float(np.mean([x["rounds"][r][k] for x in rs])), float(np.std([x["rounds"][r][k] for x in rs],
                                                                                       ddof=1)) if len(rs) > 1 else 0.0]
                    for k in ("held_out_composition", "seen_composition", "cider", "held_out_share_of_pairs")}
                   for r in range(args.rounds)] for arm, rs in runs.items()}
    last = args.rounds - 1
    ratio = table["oracle"][last]["held_out_composition"][0] / table["uniform"][last]["held_out_composition"][0]
    args.out.mkdir(parents=True, exist_ok=True)
    res = {"world_config_hash": world["config_hash"], "held_out_compositions": sorted(held),
           "settings": {k: (str(Path(v).resolve().relative_to(ROOT)) if isinstance(v, Path) else v)
                        for k, v in vars(args).items()},
           "runs": runs, "table": table, "ceiling_ratio_last_round": round(ratio, 3), "seconds": round(time.time() - t0, 1),
           "machine": {"cpus": os.cpu_count(), "threads": args.threads}}
    (args.out / "results.json").write_text(json.dumps(res, indent=1))
    lines = ["| round | oracle held-out comp. | uniform held-out comp. | ratio | oracle share of pairs | oracle seen comp. |"
             " uniform seen comp. |", "|---|---|---|---|---|---|---|"]
    for r in range(args.rounds):
        o, u = table["oracle"][r], table["uniform"][r]
        lines.append(f"| {r + 1} | {o['held_out_composition'][0]:.3f} ± {o['held_out_composition'][1]:.3f} | "
                     f"{u['held_out_composition'][0]:.3f} ± {u['held_out_composition'][1]:.3f} | "
                     f"{o['held_out_composition'][0] / u['held_out_composition'][0]:.2f} | "
                     f"{o['held_out_share_of_pairs'][0]:.2f} | {o['seen_composition'][0]:.3f} | {u['seen_composition'][0]:.3f} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _share(counts: dict[str, int], held: set[str]) -> float:
    return sum(v for c, v in counts.items() if c in held) / max(1, sum(counts.values()))


if __name__ == "__main__":
    main()
