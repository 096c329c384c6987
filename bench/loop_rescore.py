"""Re-score the saved round models of earlier loop runs with the world's current metric (issue #22).

Stop 21 of round 2 changed how a relation scene is scored (`Scene.canonical`: "A left of B" and "B right of A"
are one image, and the world's reference says it either way at random). This bench evaluates every saved
round model of `bench/loop_experiment.py` / `bench/loop_ceiling.py` runs again on the test split, so the earlier
figures can be read beside the new ones: per arm and round, held-out and seen composition accuracy (mean ± sd
over seeds), the same by scene kind, and each arm's ratio to `--baseline`; plus the world's relation probes.
The models are not trained again: the numbers differ from the runs' own only by the metric.

    .venv/bin/python bench/loop_rescore.py --work runs/loop_experiment_p24 --arms errors-a2 uniform \\
        --out bench/results/loop_rescore_p24

Writes OUT/{results.json, table.md}."""

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
from bench.loop_kinds import KINDS, by_kind  # noqa: E402
from bench.synth2_experiment import mean_std  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=ROOT / "world")
    ap.add_argument("--work", type=Path, required=True, help="a loop bench's --work folder (ARM-sSEED/round-R/)")
    ap.add_argument("--arms", nargs="+", default=["errors-a2", "uniform"])
    ap.add_argument("--baseline", default="uniform")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from generators.world.evaluate import relation_probe

    torch.set_num_threads(args.threads)
    t0 = time.time()
    test = str(args.world / "data" / "test")
    scores: dict[str, dict[int, list[dict]]] = {}
    for arm in args.arms:
        for seed in args.seeds:
            for r in range(1, args.rounds + 1):
                model = args.work / f"{arm}-s{seed}" / f"round-{r}" / "train" / "model"
                if not model.exists():
                    sys.exit(f"--work: no saved model {rel_path(model)} (arm {arm}, seed {seed}, round {r})")
                scores.setdefault(arm, {}).setdefault(r, []).append({"seed": seed} | by_kind(model, test))
            print(arm, seed, [round(scores[arm][r][-1]["held_out_composition"], 3)
                              for r in range(1, args.rounds + 1)], flush=True)

    def mean_sd(rows: list[dict], get) -> tuple[float, float]:
        return mean_std([get(x) for x in rows])

    table: dict[str, dict] = {}
    for arm, rounds in scores.items():
        for r, rows in rounds.items():
            row = {k: mean_sd(rows, lambda x, k=k: x[k]) for k in ("held_out_composition", "seen_composition")}
            row |= {f"{k}/{p}": mean_sd(rows, lambda x, k=k, p=p: x["by_kind"][k][p])
                    for k in KINDS for p in ("seen", "held_out")}
            base = scores[args.baseline][r]
            row["held_out_ratio_to_baseline"] = (row["held_out_composition"][0]
                                                 / max(float(np.mean([x["held_out_composition"] for x in base])), 1e-9))
            table[f"{arm}-r{r}"] = row
    probe = relation_probe(args.world)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"settings": vars(args) | {"world": rel_path(args.world), "work": rel_path(args.work),
                                         "out": rel_path(args.out)},
               "metric": "relation scenes in either wording (Scene.canonical; stop 21 of round 2)",
               "scores": scores, "table": table, "relation_probe": probe, "seconds": round(time.time() - t0, 1),
               "machine": {"cpus": os.cpu_count(), "threads": args.threads, "platform": platform.platform()}}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    cols = ["held_out_composition", "seen_composition"] + [f"{k}/{p}" for k in KINDS for p in ("seen", "held_out")]
    lines = ["| arm, round | held-out comp. | seen comp. | " + " | ".join(
        f"{k} {'held-out' if p == 'held_out' else p}" for k in KINDS for p in ("seen", "held_out"))
        + f" | held-out / {args.baseline} |", "|---" * (len(cols) + 2) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c][0]:.3f} ± {row[c][1]:.3f}" for c in cols)
                     + f" | {row['held_out_ratio_to_baseline']:.3f} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("probe", json.dumps({k: v["all"] if isinstance(v, dict) else v for k, v in probe.items()}))


if __name__ == "__main__":
    main()
