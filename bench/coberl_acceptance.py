"""CoBERL acceptance (issue #20): CoBERL vs no contrastive loss vs LSTM only vs a random policy on MinAtar
games at equal frames; return at the budget and the area under the learning curve.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/coberl_acceptance.py --frames 250000 --workers 1
    (the run before R2D2's replay and value scale: --set replay=uniform --set value_rescale=none)

(--workers 2, the default, runs two at once: on two idle cores about half the wall time.)

Every (game, seed, agent) is one run of `consumers.coberl.learner.train` with the `coberl` consumer's default
settings (`CoBERLParams`), torch on one thread; `--workers` runs execute side by side (one per core). Each
run's result goes to bench/results/coberl/runs/<game>-<agent>-seed<N>.json as it ends and is skipped when
already there (so an interrupted sweep resumes; --fresh starts over). Then summary.json and curves.png.

AUC: the learning curve is the mean return of the training episodes (ε-greedy, as R2D2's actors report)
ending in each twentieth of the frames; its area divided by the frames is the mean return over the budget.
Return at the budget: the agent after its last frame, 8 episodes at ε = 0.01.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "coberl"
AGENTS = ("coberl", "no_contrastive", "lstm", "random")


COBERL_ONLY = ("contrastive_weight", "contrastive_warmup", "contrastive_scale", "contrastive_targets", "aux_attention",
               "mask_rate", "tau", "consistency")  # settings no other agent reads


RUN_ONLY = ("env", "gym_id", "agents", "seeds", "seed", "frames", "max_seconds", "threads", "plots")


def settings(kind: str, overrides: dict) -> dict:
    """Every setting a run of KIND depends on (the consumer's defaults with OVERRIDES): a cached run is reused only
    when they are the same, so a change of a default reruns it."""
    from consumers.coberl.job import CoBERLParams

    full = CoBERLParams(**overrides).model_dump(mode="json")
    return {k: v for k, v in full.items() if k not in RUN_ONLY and (kind == "coberl" or k not in COBERL_ONLY)}


def one_run(job: tuple[str, str, int, int, str, dict]) -> dict:
    game, kind, seed, frames, out, overrides = job
    path = Path(out) / "runs" / f"{game}-{kind}-seed{seed}.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old["budget"] == frames and old.get("settings", {}) == settings(kind, overrides):
            return old
    import torch

    torch.set_num_threads(1)
    from consumers.coberl.envs import make
    from consumers.coberl.job import CoBERLParams
    from consumers.coberl.learner import train
    from consumers.coberl.train import configs

    params = CoBERLParams(env=game, frames=frames, **overrides)
    cfg, lc = configs(params)
    r = train(lambda: make(game), kind, cfg, lc, seed=seed)
    r.pop("agent"), r.pop("agent_config")
    r["episodes_count"] = len(r.pop("episodes"))
    r["game"], r["budget"], r["settings"] = game, frames, settings(kind, overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=1))
    print(f"{game:15s} {kind:15s} seed {seed}: AUC {r['auc']:.3f}, return at budget {r['final_eval']['mean']:.3f} "
          f"({r['seconds']} s, {r['updates']} updates)", flush=True)
    return r


def summarise(runs: list[dict], games: list[str], frames: int) -> dict:
    import numpy as np

    table: dict = {}
    for game in games:
        rows = {}
        for kind in AGENTS:
            rs = [r for r in runs if r["game"] == game and r["kind"] == kind]
            if not rs:
                continue
            auc = [r["auc"] for r in rs]
            fin = [r["final_eval"]["mean"] for r in rs]
            rows[kind] = {"seeds": [r["seed"] for r in rs], "frames": [r["frames"] for r in rs],
                          "auc": {"mean": round(float(np.mean(auc)), 4), "std": round(float(np.std(auc)), 4),
                                  "values": auc},
                          "return_at_budget": {"mean": round(float(np.mean(fin)), 4), "std": round(float(np.std(fin)), 4),
                                               "values": fin},
                          "train_return_last10pct": [r["train_return_last10pct"] for r in rs],
                          "parameters": rs[0]["parameters"], "seconds": [r["seconds"] for r in rs],
                          "loss": [r["loss"] for r in rs]}
        if {"coberl", "no_contrastive", "lstm"} <= set(rows):
            c = rows["coberl"]["auc"]["mean"]
            rows["coberl_auc_above_both"] = bool(c > rows["no_contrastive"]["auc"]["mean"] and c > rows["lstm"]["auc"]["mean"])
        table[game] = rows
    won = [g for g, t in table.items() if t.get("coberl_auc_above_both")]
    judged = [g for g, t in table.items() if "coberl_auc_above_both" in t]
    return {"frames": frames, "games": table, "goal": "CoBERL's AUC above both ablations on most games",
            "games_won": won, "goal_met": len(won) > len(judged) / 2}


def plot(runs: list[dict], games: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from consumers.coberl.train import COLORS

    fig, axes = plt.subplots(1, len(games), figsize=(4.6 * len(games), 3.6), squeeze=False)
    for ax, game in zip(axes[0], games, strict=True):
        for kind in AGENTS:
            rs = [r for r in runs if r["game"] == game and r["kind"] == kind]
            if not rs:
                continue
            cs = np.array([[p["mean_return"] for p in r["curve"]] for r in rs])
            x = [p["frames"] / 1000 for p in rs[0]["curve"]]
            ax.plot(x, cs.mean(0), color=COLORS[kind], label=f"{kind} (AUC {cs.mean():.2f})",
                    ls=":" if kind == "random" else "-")
            ax.fill_between(x, cs.min(0), cs.max(0), color=COLORS[kind], alpha=0.12)
        seeds = {r["seed"] for r in runs if r["game"] == game}  # not the last agent's runs: it may not have run
        ax.set(xlabel="thousand frames", ylabel="training episode return", title=f"MinAtar {game} ({len(seeds)} seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--games", default="breakout,space_invaders,asterix")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--agents", default=",".join(AGENTS))
    ap.add_argument("--frames", type=int, default=250_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fresh", action="store_true", help="Delete earlier runs first.")
    ap.add_argument("--contrastive-weight", type=float, help="CoBERL's contrastive loss weight (default: the "
                                                                "consumer's); other settings stay the consumer's defaults.")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="A setting of the consumer for every agent alike, e.g. --set replay=uniform (repeatable).")
    ap.add_argument("--only", choices=["summary"])
    ap.add_argument("--note", default="2 CPU cores shared with other helpers' jobs", help="Machine note for summary.json.")
    ap.add_argument("--out", default=str(OUT), help="Results directory (default bench/results/coberl).")
    args = ap.parse_args()
    games = [g for g in args.games.split(",") if g]
    seeds = [int(s) for s in args.seeds.split(",")]
    agents = [a for a in args.agents.split(",") if a]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for f in (out / "runs").glob("*.json"):
            f.unlink()
    overrides = dict(kv.split("=", 1) for kv in args.set)  # pydantic casts the strings
    if args.contrastive_weight is not None:
        overrides["contrastive_weight"] = args.contrastive_weight
    if args.workers > 1:  # the slowest agents first, so the last runs of a pool are short
        jobs = [(g, k, s, args.frames, str(out), overrides) for k in agents for s in seeds for g in games]
    else:  # seeds outermost: the first seed's runs of every game and agent are a first look while the rest run
        jobs = [(g, k, s, args.frames, str(out), overrides) for s in seeds for g in games for k in agents]
    t0, load0 = time.time(), os.getloadavg()
    if args.only != "summary":
        if args.workers > 1:
            from multiprocessing import get_context

            with get_context("spawn").Pool(args.workers) as pool:
                list(pool.imap_unordered(one_run, jobs))
        else:
            for j in jobs:
                one_run(j)
    runs = [json.loads(f.read_text()) for f in sorted((out / "runs").glob("*.json"))]
    runs = [r for r in runs if r["game"] in games and r["kind"] in agents and r["seed"] in seeds
            and r["budget"] == args.frames and r.get("settings", {}) == settings(r["kind"], overrides)]
    res = summarise(runs, games, args.frames)
    res.update(wall_seconds=round(time.time() - t0, 1), workers=args.workers, overrides=overrides,
               machine={"machine": platform.machine(), "cpus": os.cpu_count(), "torch_threads": 1,
                        "load_average_1_5_15min": {"start": [round(x, 2) for x in load0],
                                                   "end": [round(x, 2) for x in os.getloadavg()]},
                        "note": args.note})
    (out / "summary.json").write_text(json.dumps(res, indent=1))
    plot(runs, games, out / "curves.png")
    for game, t in res["games"].items():
        print(game, {k: (v["auc"]["mean"], v["return_at_budget"]["mean"]) for k, v in t.items() if isinstance(v, dict)})
    print("goal met" if res["goal_met"] else "goal MISSED", res["games_won"], f"({res['wall_seconds']} s)")


if __name__ == "__main__":
    main()
