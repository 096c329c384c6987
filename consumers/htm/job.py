"""Hierarchical Transformer Memory as a consumer run (`kind: consumer`, `consumer: {name: htm, params}`):
the same entry point as `synth2 htm train` (`consumers.htm.train.run`). Light at import time: no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from contracts.registry import ConsumerParams, Progress, ReadsFrom, register

Kind = Literal["htm", "full", "lstm"]


class HTMParams(ConsumerParams):
    """Train at one episode length, evaluate at multiples of it: HTM, full attention, LSTM."""

    task: Literal["passive_visual_match", "one_shot_naming"] = "passive_visual_match"
    data: Annotated[str | None, ReadsFrom("data")] = Field(
        None, max_length=2000, description="Training shards (a shard directory, .tar pattern or service job URL); "
                                           "without it a tiny embedded world is built into the output directory.")
    eval_data: Annotated[str | None, ReadsFrom("data")] = Field(
        None, max_length=2000, description="Evaluation shards (held-out embeddings); default: the world's test split "
                                           "when data is not given, else data.")
    models: list[Kind] = Field(["htm", "full", "lstm"], min_length=1, max_length=3)
    length: int = Field(64, ge=8, le=4096, description="Training episode length (steps).")
    eval_multiples: list[int] = Field([1, 4, 10], min_length=1, max_length=8,
                                      description="Evaluate at these multiples of length.")
    choices: int = Field(3, ge=2, le=16, description="Candidates (visual match) or objects (naming) per episode.")
    names: int = Field(16, ge=2, le=256, description="Nonsense-name vocabulary (one-shot naming).")
    chunk: int = Field(8, ge=1, le=256, description="Memory chunk size (steps).")
    k: int = Field(2, ge=1, le=256, description="Chunks each query reads (HTM).")
    train_k: int | None = Field(None, ge=1, le=4096, description="Chunks read while training; default every chunk, "
                                                               "so every chunk's score gets gradient.")
    relevance: Literal["tied", "separate"] = Field("tied", description="Chunk scores from the attention's own query "
                                                   "and keys, or from projections of their own (the reference).")
    explore: float = Field(1.0, ge=0, le=10, description="Gumbel noise on HTM's chunk scores while training (ramped "
                           "up from 40 % to 80 % of the steps): the scores must single out the relevant chunk.")
    d_model: int = Field(32, ge=8, le=1024)
    heads: int = Field(4, ge=1, le=32)
    layers: int = Field(1, ge=1, le=12)
    steps: int = Field(2000, ge=1, le=1_000_000, description="Training steps (the acceptance budget: HTM read 0.893 "
                       "at 10x after 1,200 steps and 0.956 after 2,000).")
    batch_size: int = Field(32, ge=1, le=4096)
    lr: float = Field(3e-3, gt=0, le=1.0)
    eval_episodes: int = Field(256, ge=1, le=100_000)
    max_seconds: float | None = Field(None, gt=0, le=7 * 24 * 3600, description="Stop each model's training after this long.")
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("models")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"models must not repeat (got {v})")
        return v

    @field_validator("eval_multiples")
    @classmethod
    def _multiples(cls, v: list[int]) -> list[int]:
        if min(v) < 1 or max(v) > 64:
            raise ValueError("eval multiples must lie between 1 and 64")
        return v

    @field_validator("heads")
    @classmethod
    def _heads(cls, v: int, info) -> int:
        d = info.data.get("d_model")
        if d is not None and d % v:
            raise ValueError(f"d_model {d} is not a multiple of heads {v}")
        return v


def run(params: HTMParams, out_dir: Path, progress: Progress) -> dict:
    from consumers.htm.train import run as train_run

    res = train_run(params, out_dir, progress=progress)
    return {"task": res["task"], "train_length": res["train_length"], "chance": res["chance"],
            "accuracy": {kind: {str(e["length"]): e["accuracy"] for e in r["eval"]} for kind, r in res["models"].items()},
            "parameters": {kind: r["parameters"] for kind, r in res["models"].items()}}


register("htm", HTMParams, run, "Hierarchical Transformer Memory vs full attention vs LSTM: recall over long "
                                "episodes of embeddings, trained at one length, tested at 1x-10x (Lampinen et al. 2021).")


class HTMEvalParams(ConsumerParams):
    """Evaluate one trained model (a folder `synth2 htm train` wrote) at other episode lengths."""

    model: Annotated[str, ReadsFrom("model")] = Field(min_length=1, max_length=2000,
                                                      description="A model folder: OUT/htm, OUT/full or OUT/lstm.")
    data: Annotated[str, ReadsFrom("data")] = Field(min_length=1, max_length=2000, description="Evaluation shards.")
    lengths: list[int] | None = Field(None, min_length=1, max_length=16,
                                      description="Episode lengths; default: 1x, 4x and 10x the training length.")
    episodes: int = Field(256, ge=1, le=100_000)
    seed: int = Field(1, ge=0, le=2**31 - 1)

    @field_validator("lengths")
    @classmethod
    def _lengths(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (min(v) < 4 or max(v) > 65536):
            raise ValueError("episode lengths must lie between 4 and 65536")
        return v
