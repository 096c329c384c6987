"""`train` and `evaluate`: the entry points behind `synth2 eea train | eval` and the `eea` consumer.

`train` runs the chosen agent with and/or without the abstraction over some seeds, with the same
hyperparameters, and writes `results.json` (every run, and a summary with the sample-efficiency ratio), PNG
plots, and — for the DQN agents — each run's model under `models/{with,without}-seed{N}/`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger("synth2.eea")

VARIANTS = {"both": (False, True), "with": (True,), "without": (False,)}
DEFAULT_GAMMA = {"gridworld": 0.95, "cartpole": 0.99, "minatar": 0.99, "chain": 0.8}


def _name(abstraction: bool) -> str:
    return "with" if abstraction else "without"


def _stats(xs: list) -> dict:
    vals = [x for x in xs if x is not None]
    return {"values": xs, "mean": float(np.mean(vals)) if vals else None,
            "median": float(np.median(vals)) if vals else None, "reached": len(vals), "runs": len(xs)}


def _ratio(without: dict, with_: dict) -> float | None:
    """How many times fewer samples with the abstraction: mean without / mean with (runs that reached it)."""
    if without["mean"] is None or not with_["mean"]:
        return None
    return round(without["mean"] / with_["mean"], 3)


def train(params, out_dir: str | Path, progress: Callable[[int, int | None, str | None], None] | None = None) -> dict:
    """Run PARAMS (an `EEAParams`) into OUT_DIR; returns the summary (also in results.json)."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(params.threads)
    progress = progress or (lambda *a: None)
    variants, seeds = VARIANTS[params.abstraction], list(range(params.seed, params.seed + params.seeds))
    gamma = params.gamma if params.gamma is not None else DEFAULT_GAMMA[params.env]
    t0 = time.time()
    runs: list[dict] = []
    total, done = len(variants) * len(seeds), 0
    for seed in seeds:  # seeds outermost: an interrupted sweep still has both variants of its first seeds
        for ab in variants:
            label = f"{_name(ab)} abstraction, seed {seed}"
            progress(done, total, label)
            if params.env == "gridworld":
                runs.append(_gridworld(params, ab, seed, gamma))
            else:
                def step_progress(d: int, t: int, done=done, label=label) -> None:
                    progress(done, total, f"{label}: {d}/{t} steps")

                runs.append(_dqn(params, ab, seed, gamma, out, step_progress))
            done += 1
    summary = _summarise(params, runs, variants, gamma)
    if params.env == "gridworld":
        from consumers.homomorphism.gridworld import GridWorld
        from consumers.homomorphism.tabular import value_iteration

        env = GridWorld(params.layout, step_reward=params.step_reward, goal_reward=params.goal_reward)
        summary["planning"] = [value_iteration(env, abstraction=ab, gamma=gamma, order=o)
                               for o in ("synchronous", "in_place") for ab in variants]
    summary["seconds"] = round(time.time() - t0, 1)
    results = {"params": params.model_dump(mode="json"), "gamma": gamma, "summary": summary, "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_jsonable))
    if params.plots:
        from consumers.homomorphism.plots import plot_runs

        summary["plots"] = plot_runs(results, out)
    progress(total, total, "done")
    return summary


def _gridworld(params, abstraction: bool, seed: int, gamma: float) -> dict:
    from consumers.homomorphism.gridworld import GridWorld
    from consumers.homomorphism.tabular import q_learning

    env = GridWorld(params.layout, step_reward=params.step_reward, goal_reward=params.goal_reward)
    r = q_learning(env, abstraction=abstraction, episodes=params.episodes, alpha=params.alpha, gamma=gamma,
                   epsilon=params.epsilon, seed=seed, patience=params.patience)
    return {"seed": seed, **r, "pairs": len(env.pairs()), "states": env.n_states}


def _dqn(params, abstraction: bool, seed: int, gamma: float, out: Path, progress) -> dict:
    import torch

    from consumers.homomorphism.dqn import DQNConfig, train_dqn
    from consumers.homomorphism.envs import make

    cfg = DQNConfig(hidden=params.hidden, lr=params.lr, gamma=gamma, batch_size=params.batch_size,
                    buffer_size=params.buffer_size, learning_starts=params.learning_starts, train_every=params.train_every,
                    gradient_steps=params.gradient_steps, target_every=params.target_every, eps_end=params.eps_end,
                    eps_steps=params.eps_steps)
    target = params.target_return if params.target_return is not None else (475.0 if params.env == "cartpole" else None)
    r = train_dqn(lambda: make(params.env, params.game), abstraction=abstraction, cfg=cfg, max_steps=params.steps,
                  seed=seed, eval_every=params.eval_every, eval_episodes=params.eval_episodes, target_return=target,
                  max_seconds=params.max_seconds, progress=progress)
    agent = r.pop("agent")
    mdir = out / "models" / f"{_name(abstraction)}-seed{seed}"
    mdir.mkdir(parents=True, exist_ok=True)
    torch.save(agent.state_dict(), mdir / "model.pt")
    (mdir / "config.json").write_text(json.dumps({"env": params.env, "game": params.game, **agent.config()}, indent=1))
    r["model"] = str(mdir.relative_to(out))
    tail = [e["return"] for e in r["episodes"] if e["env_steps"] > 0.8 * r["env_steps"]]
    r["train_return_last20pct"] = float(np.mean(tail)) if tail else None
    return r


def _summarise(params, runs: list[dict], variants: tuple, gamma: float) -> dict:
    by = {_name(ab): [r for r in runs if r["abstraction"] == ab] for ab in variants}
    s: dict = {"env": params.env, "gamma": gamma, "seeds": params.seeds}
    if params.env == "gridworld":
        s["layout"] = params.layout
        for k in ("episodes_to_optimal", "steps_to_optimal", "table_size"):
            s[k] = {v: _stats([r[k] for r in rs]) for v, rs in by.items()}
        if len(variants) == 2:
            s["ratio_episodes"] = _ratio(s["episodes_to_optimal"]["without"], s["episodes_to_optimal"]["with"])
            s["ratio_steps"] = _ratio(s["steps_to_optimal"]["without"], s["steps_to_optimal"]["with"])
        return s
    s["steps_budget"] = params.steps
    s["steps_to_target"] = {v: _stats([r["steps_to_target"] for r in rs]) for v, rs in by.items()}
    s["final_eval"] = {v: _stats([r["final_eval"] for r in rs]) for v, rs in by.items()}
    s["train_return_last20pct"] = {v: _stats([r["train_return_last20pct"] for r in rs]) for v, rs in by.items()}
    if len(variants) == 2 and (params.target_return is not None or params.env == "cartpole"):
        s["ratio_steps"] = _ratio(s["steps_to_target"]["without"], s["steps_to_target"]["with"])
        # a run that never reached the target counts as the whole budget: a lower bound on its steps
        cens = {v: float(np.mean([r["steps_to_target"] or params.steps for r in rs])) for v, rs in by.items()}
        s["ratio_steps_budget_for_misses"] = round(cens["without"] / cens["with"], 3)
    return s


def evaluate(params, out_file: str | Path | None = None) -> dict:
    """Greedy returns of a saved DQN model (`models/...` of a train run) over PARAMS.episodes episodes."""
    import torch

    from consumers.homomorphism.dqn import DQNAgent, DQNConfig
    from consumers.homomorphism.dqn import evaluate as run_episodes
    from consumers.homomorphism.envs import make

    mdir = Path(params.model)
    if not (mdir / "config.json").is_file() or not (mdir / "model.pt").is_file():
        raise FileNotFoundError(f"{mdir} is not a model directory of `synth2 eea train` (config.json + model.pt); "
                                f"pass one of its models/<variant>-seed<N> folders")
    torch.set_num_threads(params.threads)
    cfg = json.loads((mdir / "config.json").read_text())
    agent = DQNAgent(cfg["kind"], tuple(cfg["obs_shape"]), cfg["n_actions"], DQNConfig(**cfg["dqn"]), cfg["abstraction"])
    agent.load_state_dict(torch.load(mdir / "model.pt", weights_only=True))
    rets = run_episodes(agent, lambda: make(cfg["env"], cfg["game"]), params.episodes, seed=params.seed)
    res = {"model": str(mdir), "env": cfg["env"], "abstraction": cfg["abstraction"], "episodes": params.episodes,
           "returns": rets, "mean_return": float(np.mean(rets)), "std_return": float(np.std(rets))}
    if out_file:
        Path(out_file).write_text(json.dumps(res, indent=1))
    return res


def _jsonable(x):
    return x.tolist() if hasattr(x, "tolist") else str(x)
