"""Why CoBERL's contrastive loss hurt (issue #20): short single-seed runs of CoBERL variants on one game, each
reporting its AUC, return at the budget, and the norms of the TD and the contrastive gradient on the shared
encoder early and late in training.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/coberl_diagnose.py --game breakout --frames 30000 \\
        --variant old:aux_attention=causal,contrastive_targets=gradient --variant fixed

A variant is NAME[:key=value,...] over `CoBERLParams` (the consumer's defaults otherwise); `kind=` picks the agent
(default coberl). Results: bench/results/coberl/diagnosis/<game>-<name>-seed<N>.json (skipped when there) and
diagnosis.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "coberl" / "diagnosis"


def parse(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    kv = {}
    for item in filter(None, rest.split(",")):
        k, v = item.split("=")
        for cast in (int, float, str):
            try:
                kv[k] = cast(v)
                break
            except ValueError:
                continue
    return name, kv


def params(kv: dict) -> dict:
    """Every consumer setting of a variant (its KV over the defaults): a changed default reruns a cached run."""
    from consumers.coberl.job import CoBERLParams

    full = CoBERLParams(**{k: v for k, v in kv.items() if k != "kind"}).model_dump(mode="json")
    return {k: v for k, v in full.items() if k not in ("env", "frames")}


def run(game: str, name: str, kv: dict, seed: int, frames: int) -> dict:
    path = OUT / f"{game}-{name}-seed{seed}.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old["frames_budget"] == frames and old["settings"] == kv and old.get("params") == params(kv):
            return old
    import torch

    torch.set_num_threads(1)
    from consumers.coberl.envs import make
    from consumers.coberl.job import CoBERLParams
    from consumers.coberl.learner import train
    from consumers.coberl.train import configs

    kv = dict(kv)
    kind = kv.pop("kind", "coberl")
    cfg, lc = configs(CoBERLParams(env=game, frames=frames, **kv))
    r = train(lambda: make(game), kind, cfg, lc, seed=seed, keep_losses=True)
    losses = r.pop("losses")
    r.pop("agent"), r.pop("agent_config"), r.pop("episodes")
    if losses and "grad_td_encoder" in losses[0]:
        n = len(losses)
        for part, sl in (("first10pct", slice(0, max(1, n // 10))), ("last10pct", slice(n - max(1, n // 10), n))):
            ls = losses[sl]
            r[f"grad_{part}"] = {k: round(float(np.mean([x[k] for x in ls])), 4)
                                 for k in ("grad_td_encoder", "grad_aux_encoder", "grad_td_shared", "grad_aux_shared",
                                           "contrastive_scale", "contrastive_accuracy") if k in ls[0]}
            r[f"grad_{part}"]["aux_over_td"] = round(float(np.mean([x["grad_aux_encoder"] / max(x["grad_td_encoder"], 1e-12)
                                                                    for x in ls])), 2)
    r.update(game=game, variant=name, frames_budget=frames, settings={**kv, "kind": kind} if kind != "coberl" else kv,
             params=params(kv))
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=1))
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", default="breakout")
    ap.add_argument("--frames", type=int, default=30_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", action="append", required=True)
    args = ap.parse_args()
    rows = []
    for spec in args.variant:
        name, kv = parse(spec)
        r = run(args.game, name, kv, args.seed, args.frames)
        g0, g1 = r.get("grad_first10pct", {}), r.get("grad_last10pct", {})
        print(f"{args.game} {name:28s} AUC {r['auc']:.3f} return {r['final_eval']['mean']:.2f} "
              f"aux/td early {g0.get('aux_over_td', '-')} late {g1.get('aux_over_td', '-')} "
              f"acc {g1.get('contrastive_accuracy', '-')} ({r['seconds']} s)", flush=True)
        rows.append({k: r.get(k) for k in ("game", "variant", "settings", "seed", "frames", "auc", "final_eval", "curve",
                                           "grad_first10pct", "grad_last10pct", "loss", "seconds")})
    summary = OUT / "diagnosis.json"
    old = json.loads(summary.read_text()) if summary.exists() else []
    keep = [o for o in old if (o["game"], o["variant"], o["seed"]) not in {(r["game"], r["variant"], r["seed"]) for r in rows}]
    summary.write_text(json.dumps(keep + rows, indent=1))


if __name__ == "__main__":
    main()
