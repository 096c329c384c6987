"""`run` and `evaluate`: the entry points behind `synth2 coberl train | eval` and the `coberl` consumer.

`run` trains every chosen agent for the same frames on the same seeds and writes `results.json` (each run's
learning curve, AUC, final evaluation, training episodes; a summary over seeds), `curves.png`, and each
learnt agent under `models/<agent>-seed<N>/` (`config.json` + `model.pt`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

log = logging.getLogger("synth2.coberl")
COLORS = {"coberl": "tab:blue", "no_contrastive": "tab:orange", "lstm": "tab:green", "random": "tab:gray"}


def configs(params):
    from consumers.coberl.learner import LearnerConfig
    from consumers.coberl.model import AgentConfig

    return _config(AgentConfig, params), _config(LearnerConfig, params)


def _config(cls, params):
    """A dataclass config from the params of the same names (one definition of each: the params')."""
    return cls(**{f.name: getattr(params, f.name) for f in fields(cls) if f.name in type(params).model_fields})


def _stats(xs: list[float]) -> dict:
    return {"values": xs, "mean": round(float(np.mean(xs)), 4), "std": round(float(np.std(xs)), 4)}


def run(params, out_dir: str | Path, progress: Callable | None = None) -> dict:
    """Run PARAMS (a `CoBERLParams`) into OUT_DIR; returns the results (also in results.json)."""
    import torch

    from consumers.coberl.envs import make
    from consumers.coberl.learner import train
    from consumers.coberl.model import config_dict

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(params.threads)
    progress = progress or (lambda *a: None)
    cfg, lc = configs(params)
    make_env = lambda: make(params.env, params.gym_id)  # noqa: E731
    seeds = list(range(params.seed, params.seed + params.seeds))
    total, done, runs, t0 = len(seeds) * len(params.agents), 0, [], time.time()
    for seed in seeds:  # seeds outermost: an interrupted sweep still has every agent of its first seeds
        for kind in params.agents:
            label = f"{kind} seed {seed}"
            progress(done, total, label)
            r = train(make_env, kind, cfg, lc, seed=seed,
                      progress=lambda f, n, done=done, label=label: progress(done, total, f"{label}: {f}/{n} frames"))
            agent, acfg = r.pop("agent"), r.pop("agent_config")
            if agent is not None:
                mdir = out / "models" / f"{kind}-seed{seed}"
                mdir.mkdir(parents=True, exist_ok=True)
                torch.save(agent.state_dict(), mdir / "model.pt")
                (mdir / "config.json").write_text(json.dumps(
                    {"env": params.env, "gym_id": params.gym_id, "agent": config_dict(acfg), "learner": asdict(lc)},
                    indent=1))
                r["model"] = str(mdir.relative_to(out))
            log.info("%s: AUC %.3f, return at budget %.3f (%.0f s)", label, r["auc"], r["final_eval"]["mean"], r["seconds"])
            runs.append(r)
            done += 1
    summary = {kind: {"auc": _stats([r["auc"] for r in runs if r["kind"] == kind]),
                      "final_eval": _stats([r["final_eval"]["mean"] for r in runs if r["kind"] == kind]),
                      "frames": [r["frames"] for r in runs if r["kind"] == kind],
                      "parameters": next(r["parameters"] for r in runs if r["kind"] == kind),
                      "seconds": [r["seconds"] for r in runs if r["kind"] == kind]}
               for kind in params.agents}
    results = {"params": params.model_dump(mode="json"), "env": params.gym_id or params.env, "frames": params.frames,
               "seconds": round(time.time() - t0, 1), "summary": summary, "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if params.plots:
        results["plots"] = [plot_curves({results["env"]: runs}, out / "curves.png").name]
    progress(total, total, "done")
    return results


def plot_curves(by_env: dict[str, list[dict]], path: Path) -> Path:
    """One panel per environment: each agent's learning curve, mean over seeds with the seeds' range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(by_env), figsize=(4.5 * len(by_env), 3.5), squeeze=False)
    for ax, (env, runs) in zip(axes[0], by_env.items(), strict=True):
        for kind in dict.fromkeys(r["kind"] for r in runs):
            cs = np.array([[p["mean_return"] for p in r["curve"]] for r in runs if r["kind"] == kind])
            x = [p["frames"] / 1000 for p in next(r for r in runs if r["kind"] == kind)["curve"]]
            ax.plot(x, cs.mean(0), color=COLORS.get(kind), label=f"{kind} ({len(cs)})")
            ax.fill_between(x, cs.min(0), cs.max(0), color=COLORS.get(kind), alpha=0.15)
        ax.set(xlabel="thousand frames", ylabel="training episode return", title=env)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load(model_dir: str | Path):
    """The agent and config saved by `run` in MODEL_DIR."""
    import torch

    from consumers.coberl.model import Agent, AgentConfig

    mdir = Path(model_dir)
    if not (mdir / "config.json").is_file() or not (mdir / "model.pt").is_file():
        raise FileNotFoundError(f"{mdir} is not a model directory of `synth2 coberl train` (config.json + model.pt); "
                                f"pass one of its models/<agent>-seed<N> folders")
    info = json.loads((mdir / "config.json").read_text())
    agent = Agent(AgentConfig(**info["agent"]))
    agent.load_state_dict(torch.load(mdir / "model.pt", weights_only=True))
    return agent.eval(), info


def evaluate(params, out_file: str | Path | None = None) -> dict:
    """ε-greedy returns of a saved agent over PARAMS.episodes episodes (a `CoBERLEvalParams`)."""
    import torch

    from consumers.coberl.envs import make
    from consumers.coberl.learner import evaluate as run_episodes

    torch.set_num_threads(params.threads)
    agent, info = load(params.model)
    rets = run_episodes(agent, lambda: make(info["env"], info["gym_id"]), params.episodes, seed=params.seed,
                        eps=params.eps, max_steps=params.max_steps)
    res = {"model": str(params.model), "env": info["gym_id"] or info["env"], "agent": info["agent"]["kind"],
           "episodes": params.episodes, "eps": params.eps, "returns": rets, "mean_return": float(np.mean(rets)),
           "std_return": float(np.std(rets))}
    if out_file:
        Path(out_file).write_text(json.dumps(res, indent=1))
    return res
