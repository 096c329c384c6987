"""VLM finetuning + evaluation as a consumer run (`POST /v1/consumers/vlm/runs`, `kind: consumer`).

Light at import time (no torch): the service imports this module to validate requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from contracts.registry import ConsumerParams, Progress, ReadsFrom, register

SourceRef = Annotated[str, Field(min_length=1, max_length=2000), ReadsFrom("data", weighted=True)]


class VLMParams(ConsumerParams):
    """Finetune the VLM on mixed shard sets, then caption a test set and score it."""

    data: list[SourceRef] = Field(min_length=1, max_length=16, description=(
        "Training sources: shard directories or URLs on the service's machine, or service job URLs "
        "(http(s)://host/v1/jobs/ID, read with SYNTH2_API_KEY), each with an optional @WEIGHT."))
    decoder: Annotated[str, ReadsFrom("model")] = Field(min_length=1, max_length=500, description="Causal LM: path or hub id.")
    test: Annotated[str | None, ReadsFrom("data")] = Field(None, min_length=1, max_length=2000,
                             description="Test shards with real images and references (default: no evaluation).")
    steps: int = Field(500, ge=1, le=1_000_000)
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0, le=1.0)
    prefix_length: int = Field(4, ge=1, le=256)
    mapper: Literal["mlp", "transformer"] = "mlp"
    freeze_decoder: bool = False
    noise_std: float = Field(0.0, ge=0, le=10)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    beams: list[Annotated[int, Field(ge=1, le=16)]] = Field([1], min_length=1, max_length=4)
    eval_limit: int | None = Field(None, ge=1, le=10_000_000)
    threads: int | None = Field(None, ge=1, le=256)

    @field_validator("data")
    @classmethod
    def _weights(cls, v: list[str]) -> list[str]:
        for s in v:  # the same rule as vlm.data.Source.parse, without importing torch here
            _, sep, w = s.rpartition("@")
            try:
                weight = float(w) if sep else 1.0
            except ValueError:
                continue  # an "@" that is part of the path
            if not weight > 0:
                raise ValueError(f"source {s!r}: weight must be > 0")
        return v


def run(params: VLMParams, out_dir: Path, progress: Progress) -> dict:
    from vlm.evaluate import evaluate
    from vlm.train import TrainConfig, prepare_out, run_training

    cfg = TrainConfig(sources=params.data, decoder=params.decoder, out=str(out_dir / "train"), steps=params.steps,
                      batch_size=params.batch_size, lr=params.lr, prefix_length=params.prefix_length,
                      mapper=params.mapper, freeze_decoder=params.freeze_decoder, noise_std=params.noise_std,
                      seed=params.seed, threads=params.threads, progress=False)
    total = params.steps + (1 if params.test else 0)
    prepare_out(cfg)
    res = run_training(cfg, report=lambda m: progress(m["step"], total, f"train (loss {m['loss']:.3f})"))
    summary: dict = {"train": res, "model": "train/model", "loss_plot": "train/loss.png"}
    if params.test:
        progress(params.steps, total, "evaluate")
        ev = evaluate(out_dir / "train" / "model", params.test, tuple(params.beams), limit=params.eval_limit,
                      out=out_dir / "eval.json")
        summary["eval"] = {k: {m: v[m] for m in ("bleu4", "cider")} | ({"held_out_composition": v["world"][
            "held_out_composition"]["accuracy"]} if "world" in v else {}) for k, v in ev["decoding"].items()}
    progress(total, total, "done")
    return summary


register("vlm", VLMParams, run, "Finetune the synth2 VLM on shard sets (mixed by weight) and evaluate it (BLEU-4, CIDEr, "
         "per-attribute accuracy on the embedded world).")
