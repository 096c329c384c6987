"""Acceptance run of the equivalent-effect abstraction (issue #21): every agent with and without it, the same
hyperparameters otherwise, several seeds each.

- gridworld (four_rooms, open, maze): tabular Q-learning, episodes and environment steps until the greedy
  policy is optimal for 5 consecutive episodes; value iteration, sweeps and backups until the greedy policy is
  optimal in every state (synchronous and in-place sweeps). Main setting: reward -1 a step (the shortest-path
  task); also the sparse setting (+1 at the goal, 0 otherwise).
- CartPole-v1 (gymnasium): DQN, environment steps until the greedy mean return over 5 episodes reaches 475.
- MinAtar Breakout (all 6 actions): DQN, greedy return and training return at a small frame budget.

Writes bench/results/eea/{gridworld_*,cartpole,minatar_*}.json and .png, and summary.json (the table).

    flock /tmp/synth2-heavy.lock nice -n 5 .venv/bin/python bench/eea_acceptance.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumers.homomorphism.experiment import train  # noqa: E402
from consumers.homomorphism.job import EEAParams  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "eea"


def run(name: str, params: EEAParams) -> dict:
    t = time.time()
    with tempfile.TemporaryDirectory(prefix="eea-") as tmp:
        s = train(params, tmp, lambda d, n, step: print(f"  [{name} {d}/{n}] {step}", flush=True))
        res = json.loads((Path(tmp) / "results.json").read_text())
        for r in res["runs"]:
            r.pop("model", None)
        (OUT / f"{name}.json").write_text(json.dumps(res, indent=1))
        shutil.copy(Path(tmp) / "curves.png", OUT / f"{name}.png")
    print(f"{name}: {time.time() - t:.0f} s", json.dumps({k: v for k, v in s.items() if k.startswith("ratio")}), flush=True)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5, help="gridworld seeds")
    ap.add_argument("--cartpole-seeds", type=int, default=5)
    ap.add_argument("--cartpole-steps", type=int, default=30_000, help="budget per CartPole run")
    ap.add_argument("--minatar-seeds", type=int, default=5)
    ap.add_argument("--minatar-frames", type=int, default=20_000, help="frame budget per MinAtar run")
    ap.add_argument("--only", choices=["gridworld", "cartpole", "minatar"], action="append")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    only = set(a.only or ["gridworld", "cartpole", "minatar"])
    summary_path = OUT / "summary.json"
    table: dict = {}
    t0, load0 = time.time(), [round(x, 2) for x in os.getloadavg()]

    if "gridworld" in only:
        for reward, (sr, gr) in {"step": (-1.0, 0.0), "sparse": (0.0, 1.0)}.items():
            for layout in ("four_rooms", "open", "maze"):
                name = f"gridworld_{layout}" + ("" if reward == "step" else "_sparse")
                s = run(name, EEAParams(env="gridworld", layout=layout, seeds=a.seeds, episodes=5000,
                                        step_reward=sr, goal_reward=gr))
                plan = {f"{p['order']}_{'with' if p['abstraction'] else 'without'}": {
                    k: p[k] for k in ("sweeps_to_optimal", "backups_to_optimal", "table_size")} for p in s["planning"]}
                table[name] = {
                    "rewards": {"step": sr, "goal": gr}, "seeds": a.seeds,
                    "episodes_to_optimal": {v: s["episodes_to_optimal"][v]["mean"] for v in ("without", "with")},
                    "steps_to_optimal": {v: s["steps_to_optimal"][v]["mean"] for v in ("without", "with")},
                    "solved": {v: f"{s['steps_to_optimal'][v]['reached']}/{a.seeds}" for v in ("without", "with")},
                    "ratio_episodes": s["ratio_episodes"], "ratio_steps": s["ratio_steps"],
                    "table_size": {v: s["table_size"][v]["mean"] for v in ("without", "with")}, "planning": plan}

    if "cartpole" in only:
        s = run("cartpole", EEAParams(env="cartpole", seeds=a.cartpole_seeds, steps=a.cartpole_steps, eval_every=1000,
                                      eval_episodes=5))
        table["cartpole"] = {
            "seeds": a.cartpole_seeds, "budget": a.cartpole_steps, "target_return": 475,
            "steps_to_475": {v: s["steps_to_target"][v]["values"] for v in ("without", "with")},
            "mean_steps_to_475_reached": {v: s["steps_to_target"][v]["mean"] for v in ("without", "with")},
            "reached": {v: f"{s['steps_to_target'][v]['reached']}/{a.cartpole_seeds}" for v in ("without", "with")},
            "ratio_steps": s["ratio_steps"], "ratio_steps_budget_for_misses": s["ratio_steps_budget_for_misses"]}

    if "minatar" in only:
        s = run("minatar_breakout", EEAParams(env="minatar", game="breakout", seeds=a.minatar_seeds,
                                              steps=a.minatar_frames, batch_size=32, eps_steps=a.minatar_frames // 2,
                                              eps_end=0.05, target_every=1000, gradient_steps=1,
                                              eval_every=max(1000, a.minatar_frames // 5), eval_episodes=10))
        table["minatar_breakout"] = {
            "seeds": a.minatar_seeds, "frames": a.minatar_frames,
            "final_greedy_return": {v: s["final_eval"][v]["mean"] for v in ("without", "with")},
            "final_greedy_return_per_seed": {v: s["final_eval"][v]["values"] for v in ("without", "with")},
            "train_return_last20pct": {v: s["train_return_last20pct"][v]["mean"] for v in ("without", "with")}}

    # merged into what earlier (partial, --only) runs wrote
    merged = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    merged.update(table)
    merged.setdefault("_meta", {})["machine"] = {"cpus": os.cpu_count(), "torch_threads": 1, "loadavg_at_start": load0,
                                                 "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    merged["_meta"][f"seconds_{'_'.join(sorted(only))}"] = round(time.time() - t0)
    merged["_meta"][f"args_{'_'.join(sorted(only))}"] = vars(a)
    summary_path.write_text(json.dumps(merged, indent=1))
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
