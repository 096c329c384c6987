"""Train HTM, full attention and the LSTM on one episode length; evaluate at multiples of it.

A run directory holds one folder per model (`config.json` + `model.pt`, loaded by `load_model`),
`results.json` (accuracy per model and evaluated length, training curves, parameter counts, seconds)
and `accuracy.png`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from consumers.htm.model import MemoryAttention, ModelConfig, build_model
from consumers.htm.tasks import EmbeddingPool, decision_logits, episodes

log = logging.getLogger("synth2.htm")
KINDS = ("htm", "full", "lstm")
EVAL_STEPS = 8192  # episodes x steps per evaluation batch (bounds the memory of a 10x evaluation)


def train_model(kind: str, task: str, pool: EmbeddingPool, cfg: ModelConfig, *, length: int, choices: int = 3,
                steps: int = 1000, batch_size: int = 32, lr: float = 2e-3, seed: int = 0,
                max_seconds: float | None = None, progress: Callable[[int, int], None] | None = None):
    """Adam with warm-up and cosine decay, one fresh batch of episodes per step. HTM's chunk-score noise
    (`cfg.explore`) is off for the first 40 % of the steps and ramps up to its full scale by 80 %: noise from
    the start drowns the first signal, and without it the scores never need to single a chunk out."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, info = build_model(kind, cfg)
    model.inp.set_whitening(torch.from_numpy(pool.emb))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    curve, t0, done = [], time.time(), 0
    loss_sum = acc_sum = 0.0
    model.train()
    memories = [m for m in model.modules() if isinstance(m, MemoryAttention)]
    for step in range(steps):
        for m in memories:
            m.explore = cfg.explore * min(1.0, max(0.0, (step / steps - 0.4) / 0.4))
        batch = episodes(task, pool, batch_size, length, rng, choices=choices, names=cfg.names)
        logits = decision_logits(model(batch), batch)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["label"].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        done = step + 1
        loss_sum += loss.item()
        acc_sum += (logits.argmax(-1) == batch["label"]).float().mean().item()
        if done % 50 == 0 or done == steps:
            n = (done - 1) % 50 + 1
            curve.append({"step": done, "loss": round(loss_sum / n, 4), "accuracy": round(acc_sum / n, 4),
                          "seconds": round(time.time() - t0, 1)})
            loss_sum = acc_sum = 0.0
        if progress:
            progress(done, steps)
        if max_seconds and time.time() - t0 > max_seconds:
            log.info("%s: stopped at step %d after %.0f s (max_seconds)", kind, done, time.time() - t0)
            break
    model.eval()
    info.update(steps=done, train_seconds=round(time.time() - t0, 1), curve=curve, task=task, length=length,
                choices=choices)
    return model, info


@torch.no_grad()
def evaluate(model, task: str, pool: EmbeddingPool, length: int, *, episodes_n: int = 512, choices: int = 3,
             seed: int = 1) -> dict:
    """Accuracy on EPISODES_N fresh episodes of LENGTH steps (seeded, so every model sees the same ones)."""
    rng = np.random.default_rng(seed)
    model.eval()
    bs = max(1, min(episodes_n, EVAL_STEPS // length))
    correct = total = 0
    t0 = time.time()
    for start in range(0, episodes_n, bs):
        batch = episodes(task, pool, min(bs, episodes_n - start), length, rng, choices=choices, names=model.cfg.names)
        hit = decision_logits(model(batch), batch).argmax(-1) == batch["label"]
        correct += int(hit.sum())
        total += hit.numel()
    return {"length": length, "accuracy": correct / total, "decisions": total, "episodes": episodes_n,
            "chance": 1.0 / choices, "seconds": round(time.time() - t0, 2)}


def save_model(model, info: dict, d: str | Path) -> None:
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), d / "model.pt")
    (d / "config.json").write_text(json.dumps(info, indent=1))


def load_model(d: str | Path):
    """A model directory written by `save_model` → (model, info)."""
    d = Path(d)
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"{d} has no config.json: not an HTM model directory (synth2 htm train writes "
                                f"one per model: OUT/htm, OUT/full, OUT/lstm)")
    info = json.loads((d / "config.json").read_text())
    model, _ = build_model(info["kind"], ModelConfig(**info["config"]))
    model.load_state_dict(torch.load(d / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, info


def default_world(out: Path) -> Path:
    """The embedded world at its tiny size (built once into OUT/world, about a minute on 2 cores)."""
    from generators.world.build import build_world

    threads = torch.get_num_threads()
    build_world(out / "world", size="tiny", seed=0, image_size=32)
    torch.set_num_threads(threads)
    return out / "world"


def run(p, out: str | Path, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """P: consumers.htm.job.HTMParams. Trains every model of P.models, evaluates each at every multiple."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, eval_data = p.data, p.eval_data
    if data is None:
        world = default_world(out)
        data, eval_data = str(world / "data" / "train"), eval_data or str(world / "data" / "test")
    pool = EmbeddingPool.load(data)
    eval_pool = EmbeddingPool.load(eval_data) if eval_data else pool
    cfg = ModelConfig(emb_dim=pool.emb.shape[1], names=p.names, d_model=p.d_model, heads=p.heads, layers=p.layers,
                      chunk=p.chunk, k=p.k, train_k=p.train_k, relevance=p.relevance,
                      explore=p.explore)
    lengths = [p.length * m for m in p.eval_multiples]
    results = {"task": p.task, "data": data, "eval_data": eval_data or data, "train_length": p.length,
               "lengths": lengths, "choices": p.choices, "chance": 1.0 / p.choices, "seed": p.seed, "models": {}}
    total = p.steps * len(p.models)
    for i, kind in enumerate(p.models):
        def tick(done: int, steps: int, i=i, kind=kind) -> None:
            if progress:
                progress(i * p.steps + done, total, f"train {kind}")

        model, info = train_model(kind, p.task, pool, cfg, length=p.length, choices=p.choices, steps=p.steps,
                                  batch_size=p.batch_size, lr=p.lr, seed=p.seed, max_seconds=p.max_seconds,
                                  progress=tick)
        save_model(model, info, out / kind)
        if progress:
            progress((i + 1) * p.steps, total, f"evaluate {kind}")
        evals = [evaluate(model, p.task, eval_pool, n, episodes_n=p.eval_episodes, choices=p.choices, seed=p.seed + 1)
                 for n in lengths]
        results["models"][kind] = {**{k: v for k, v in info.items() if k != "config"}, "eval": evals}
        log.info("%s: %s", kind, ", ".join(f"{e['length']}: {e['accuracy']:.3f}" for e in evals))
    results["config"] = cfg.to_dict()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "accuracy.png")
    return results


def plot(results: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind, r in results["models"].items():
        ax.plot([e["length"] for e in r["eval"]], [e["accuracy"] for e in r["eval"]], "o-", label=kind)
    ax.axhline(results["chance"], color="grey", ls=":", label="chance")
    ax.axvline(results["train_length"], color="grey", ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="episode length (steps)", ylabel="accuracy", ylim=(0, 1.02),
           title=results["task"].replace("_", " "))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
