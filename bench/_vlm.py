"""Train the VLM on a data mix and score it on the embedded world's balanced test split: the one
train-then-evaluate call the benches share (bench/synth2_experiment.py, bench/diversity_ablation.py); and how
the VLM benches record a path (`rel_path`)."""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rel_path(path: Path) -> str:
    """A path as the results record it: relative to the repository, or its name when it lies elsewhere."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else f"<elsewhere>/{path.name}"


def train_and_score(sources: list[str], world: Path, out: Path, *, steps: int, batch_size: int, lr: float, seed: int,
                    threads: int | None, **overrides) -> dict:
    """Train `vlm.train` from scratch on `sources` ("PATH[@WEIGHT]") into `out`, starting from the world's
    LM, then caption the world's test split greedily and score it. `overrides` are further TrainConfig
    fields (e.g. noise_std). Returns the headline figures and the seconds each part took."""
    from vlm.evaluate import evaluate
    from vlm.train import TrainConfig, train

    cfg = TrainConfig(sources=sources, decoder=str(world / "lm"), out=str(out), steps=steps, batch_size=batch_size,
                      lr=lr, seed=seed, threads=threads, progress=False, ckpt_every=max(steps // 2, 1), log_every=25,
                      shuffle_buffer=2000, **overrides)
    t = time.time()
    tr = train(cfg)
    t_train = time.time() - t
    t = time.time()
    # The test split's emb.npy are the world CLIP's image-tower outputs for its real images (computed when the
    # world was built): the same numbers as encoding the PNGs again, and pinned to this world's CLIP.
    ev = evaluate(Path(out) / "model", str(world / "data" / "test"), beams=(1,), batch_size=240, use_images=False)
    g = ev["decoding"]["greedy"]
    w = g["world"]
    return {"final_loss": tr["final_loss"], "cider": g["cider"], "bleu4": g["bleu4"], "parse_rate": w["parse_rate"],
            "attributes": {k: v["accuracy"] for k, v in w["attributes"].items()},
            "held_out_composition": w["held_out_composition"]["accuracy"],
            "seen_composition": w["seen_composition"]["accuracy"], "examples": g["examples"][:4],
            "train_seconds": round(t_train, 1), "eval_seconds": round(time.time() - t, 1)}
