"""Where the held-out-composition figure of issue #22 comes from: composition accuracy by scene kind.

The test split flags a scene `held_out` when any of its objects has a composition the human split never
showed. A two-object relation scene has two chances, so relation scenes are 36 % of the held-out scenes and
21 % of the seen ones, and a relation scene is right only when both objects are. This bench

1. re-evaluates every saved round model of the loop experiments (`--work`: the loop, uniform and oracle
   arms of `bench/loop_experiment.py --steps 600` and `bench/loop_ceiling.py`) on the test split, split by
   scene kind (`composition_by_kind` of `vlm eval`);
2. asks whether a job shaped for what those models miss — relation captions, from prompts naming two
   concepts (`concepts.per_prompt: 2`) — helps: at round 1's budget (the same pairs, steps, share and seeds),
   the VLM trained on human + relation pairs only, and on human + half single-concept (the uniform round-1
   job's) + half relation pairs, against the uniform round 1;
3. probes what the world CLIP's image embedding of a relation scene holds (logistic regression, trained on the
   pretrain and train splits' relation scenes, scored on the test split's): each object's composition in
   caption order, the relation word, and the unordered pair of compositions (one-vs-rest, top two).

    .venv/bin/python bench/loop_kinds.py --world world --work runs/loop_experiment_600

Writes bench/results/loop_kinds/{results.json, table.md, loop_kinds.png}."""

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

KINDS = ("single", "count", "relation")


def by_kind(model: Path, test: str) -> dict:
    from vlm.evaluate import evaluate

    w = evaluate(model, test, beams=(1,), batch_size=256, use_images=False)["decoding"]["greedy"]["world"]
    return {"held_out_composition": w["held_out_composition"]["accuracy"],
            "seen_composition": w["seen_composition"]["accuracy"],
            "relation": w["attributes"]["relation"]["accuracy"],  # the arrangement since stop 21 (the word before)
            "by_kind": {k: {p: v["accuracy"] for p, v in parts.items()} for k, parts in w["composition_by_kind"].items()},
            "n": {k: {p: v["n"] for p, v in parts.items()} for k, parts in w["composition_by_kind"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=ROOT / "world")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "loop_experiment_600")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop_kinds")
    ap.add_argument("--arms", nargs="+", default=["uniform", "errors-a2", "oracle-0.8"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=400, help="synthetic pairs (round 1's budget)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    import vlm.loop as loop
    from vlm.loop_job import LoopParams, config
    from vlm.train import TrainConfig, train

    torch.set_num_threads(args.threads)
    t0 = time.time()
    test = str(args.world / "data" / "test")
    saved: dict[str, list[list[dict]]] = {}
    for arm in args.arms:
        for seed in args.seeds:
            rows = []
            for r in range(1, args.rounds + 1):
                model = args.work / f"{arm}-s{seed}" / f"round-{r}" / "train" / "model"
                if model.exists():
                    rows.append({"round": r} | by_kind(model, test))
            if rows:
                saved.setdefault(arm, []).append(rows)
                print(arm, seed, [(x["round"], round(x["held_out_composition"], 3)) for x in rows], flush=True)

    # Round-1-budget arms with relation captions.
    cfg = config(LoopParams(world=str(args.world), pairs_per_round=args.pairs, steps=args.steps, share=args.share),
                 args.work / "kinds", jobs_dir=args.work / "jobs")
    base = loop._base_spec(cfg.spec)
    single_id, single_dir = loop.run_job_cached(loop.job_spec(base, None, int(args.pairs * cfg.oversample), 1, "loop-r1"),
                                                args.work / "jobs")
    rel = json.loads(json.dumps(base))
    rel["concepts"]["per_prompt"] = 2
    rel_id, rel_dir = loop.run_job_cached(loop.job_spec(rel, None, int(args.pairs * cfg.oversample), 1, "loop-r1-pairs"),
                                          args.work / "jobs")
    shaped: dict[str, list[dict]] = {}
    for seed in args.seeds:
        d = args.work / "kinds" / f"s{seed}"
        half = args.pairs // 2
        n_rel = loop.subset(rel_dir, args.pairs, d / "relation", seed=seed * 1000 + 1)
        n_rh = loop.subset(rel_dir, half, d / "relation-half", seed=seed * 1000 + 1)
        n_sh = loop.subset(single_dir, args.pairs - half, d / "single-half", seed=seed * 1000 + 1)
        arms = {"relation": ([f"{d / 'relation'}@{args.share:g}"], n_rel),
                "single+relation": ([f"{d / 'single-half'}@{args.share * n_sh / (n_sh + n_rh):.6g}",
                                     f"{d / 'relation-half'}@{args.share * n_rh / (n_sh + n_rh):.6g}"], n_sh + n_rh)}
        for name, (syn, n) in arms.items():
            out = d / name / "train"
            if not (out / "model").exists():
                train(TrainConfig(sources=[f"{cfg.human}@{1 - args.share:g}", *syn], decoder=cfg.decoder, out=str(out),
                                  steps=args.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed,
                                  threads=args.threads, progress=False, ckpt_every=args.steps,
                                  log_every=max(args.steps // 10, 1), shuffle_buffer=2000))
            shaped.setdefault(name, []).append({"seed": seed, "pairs": n} | by_kind(out / "model", test))
            print(name, seed, round(shaped[name][-1]["held_out_composition"], 3), flush=True)

    from generators.world.evaluate import relation_probe

    probe = relation_probe(args.world)
    print("probe", json.dumps(probe), flush=True)

    def agg(rows: list[dict]) -> dict:
        keys = ["held_out_composition", "seen_composition", "relation"] + [
            f"{k}/{p}" for k in KINDS for p in ("seen", "held_out")]

        def get(x, k):
            return x["by_kind"][k.split("/")[0]][k.split("/")[1]] if "/" in k else x[k]
        return {k: [float(np.mean([get(x, k) for x in rows])), float(np.std([get(x, k) for x in rows], ddof=1))
                    if len(rows) > 1 else 0.0] for k in keys}

    table = {f"{arm}-r{r}": agg([runs[r - 1] for runs in saved[arm] if len(runs) >= r])
             for arm in saved for r in range(1, args.rounds + 1) if any(len(x) >= r for x in saved[arm])}
    table |= {f"{name} (round-1 budget)": agg(rows) for name, rows in shaped.items()}
    n = saved[args.arms[0]][0][0]["n"] if saved else shaped["relation"][0]["n"]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"settings": vars(args) | {"world": rel_path(args.world), "work": rel_path(args.work),
                                         "out": rel_path(args.out)},
               "test_scenes": n, "jobs": {"single_concept": single_id, "two_concept": rel_id},
               "saved_models": saved, "shaped_jobs": shaped, "table": table,
               "relation_probe": probe, "seconds": round(time.time() - t0, 1),
               "machine": {"cpus": os.cpu_count(), "threads": args.threads, "platform": platform.platform()}}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    cols = ["held_out_composition", "seen_composition"] + [f"{k}/{p}" for k in KINDS for p in ("seen", "held_out")]
    lines = ["| arm | held-out comp. | seen comp. | " + " | ".join(
        f"{k} {'held-out' if p == 'held_out' else p}" for k in KINDS for p in ("seen", "held_out")) + " |",
        "|---" * (len(cols) + 1) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c][0]:.3f} ± {row[c][1]:.3f}" for c in cols) + " |")
    lines.append("")
    lines.append("Test scenes per kind (seen / held-out): " + ", ".join(
        f"{k} {n[k]['seen']} / {n[k]['held_out']}" for k in KINDS if k in n))
    lines.append("")
    lines.append("Linear probes of the CLIP embedding of relation scenes (test, all / seen / held-out): " + "; ".join(
        f"{k.replace('_', ' ')} {v['all']:.3f} / {v['seen']:.3f} / {v['held_out']:.3f}" for k, v in probe.items()
        if isinstance(v, dict)))
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    plot(table, args.out / "loop_kinds.png")
    print("\n".join(lines))


def plot(table: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    cols = [f"{k}/{p}" for k in KINDS for p in ("seen", "held_out")] + ["held_out_composition"]
    fig, ax = plt.subplots(figsize=(12, 4))
    w = 0.8 / len(names)
    x = np.arange(len(cols))
    for i, name in enumerate(names):
        ax.bar(x + i * w - 0.4 + w / 2, [table[name][c][0] for c in cols], w,
               yerr=[table[name][c][1] for c in cols], capsize=2, label=name, color=plt.cm.tab20(i % 20))
    ax.set_xticks(x)
    ax.set_xticklabels([c.replace("/", "\n").replace("held_out_composition", "held-out\n(all kinds)") for c in cols])
    ax.set_ylabel("test composition accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    ax.set_title("VLM composition accuracy by scene kind (loop arms per round; relation-caption jobs at round 1's budget)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
