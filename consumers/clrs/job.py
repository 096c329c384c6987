"""CLRS training as a consumer run (`kind: consumer`, `consumer: {name: clrs, params}`): the same entry
point as `synth2 clrs train` (`consumers.clrs.train.run`). Light at import time: no torch here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from consumers.registry import ConsumerParams, Progress, ReadsFrom, register


class ClrsParams(ConsumerParams):
    """Single-task CLRS training (encode-process-decode), tested out of distribution."""

    algorithm: str = Field(min_length=1, max_length=100, description="A CLRS-30 algorithm (generators/clrs).")
    data: Annotated[str | None, ReadsFrom("data")] = Field(
        None, max_length=2000, description="Output directory of a `kind: clrs` job; "
                                                     "without it trajectories come straight from the samplers.")
    processor: Literal["triplet_gmpnn", "mpnn", "pgn"] = "triplet_gmpnn"
    hidden: int = Field(128, ge=8, le=1024)
    steps: int = Field(1000, ge=1, le=1_000_000)
    batch_size: int = Field(32, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0, le=1.0)
    teacher_forcing: float = Field(0.0, ge=0.0, le=1.0)
    eval_every: int = Field(100, ge=1, le=1_000_000)
    max_seconds: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    train_count: int = Field(1000, ge=1, le=1_000_000, description="Without data: training trajectories.")
    train_nodes: list[int] = Field([4, 7, 11, 13, 16], min_length=1, max_length=64)
    test_nodes: list[int] = Field([64], min_length=1, max_length=64)
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("algorithm")
    @classmethod
    def _known(cls, v: str) -> str:
        from generators.clrs import algorithms  # NumPy only

        if v not in algorithms():
            raise ValueError(f"unknown CLRS algorithm {v!r}; known: {', '.join(algorithms())}")
        return v

    @field_validator("train_nodes", "test_nodes")
    @classmethod
    def _nodes(cls, v: list[int]) -> list[int]:
        if min(v) < 2 or max(v) > 1024:
            raise ValueError("node counts must lie between 2 and 1024")
        return v


def run(params: ClrsParams, out_dir: Path, progress: Progress) -> dict:
    from consumers.clrs.train import run as train_run

    p = params
    res = train_run(p.algorithm, out_dir, data=p.data, processor=p.processor, hidden=p.hidden, steps=p.steps,
                    batch_size=p.batch_size, lr=p.lr, teacher_forcing=p.teacher_forcing, eval_every=p.eval_every,
                    max_seconds=p.max_seconds, seed=p.seed, progress=lambda d, t, _: progress(d, t, "train"),
                    **({} if p.data else {"train_count": p.train_count, "train_nodes": p.train_nodes,
                                          "test_nodes": p.test_nodes}))
    return {"algorithm": p.algorithm, "processor": p.processor, "test_micro_f1": res["test_micro_f1"],
            "per_feature": {k: v["score"] for k, v in res["test"]["per_feature"].items()}, "steps": res["steps"],
            "test_nodes": res["test_nodes"]}


register("clrs", ClrsParams, run, "CLRS-30 single-task encode-process-decode training, OOD micro-F1 (Ibarz et al. 2022).")
