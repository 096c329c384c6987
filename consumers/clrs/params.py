"""The CLRS consumer's settings, defined once: they drive `synth2 clrs train / eval` (synth2/params_cli.py),
the consumer run's params (`consumer: {name: clrs, params}`) and its HTTP schema, and are the single
argument of the entry points (`consumers.clrs.train.run`, `consumers.clrs.evaluate.evaluate_checkpoint`).
Pydantic only: no torch here.

Without `data`, trajectories come straight from the samplers, split as the reference does it:
- test: the CLRS-30 test split — the benchmark's inputs at length 64 and its per-algorithm count (32, or
  32 x 32 / 32 x 64 for the algorithms with few output signals: `generators.clrs.benchmark_split`);
- train and validation: the reference training script's recipe — lengths 4, 7, 11, 13, 16 (20 for the
  string matchers), its randomised inputs (`train_inputs: training`), validation at the largest length.
Scores are fractions in [0, 1] everywhere (results, summaries, the CLI).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from contracts.reads import ReadsFrom
from contracts.registry import ConsumerParams

STRING_MATCHERS = ("naive_string_matcher", "kmp_matcher")
TRAIN_LENGTHS = [4, 7, 11, 13, 16]


def _known_algorithm(v: str) -> str:
    from generators.clrs import algorithms  # NumPy only

    if v not in algorithms():
        raise ValueError(f"unknown CLRS algorithm {v!r}; known: {', '.join(algorithms())}")
    return v


def _node_counts(v: list[int] | None) -> list[int] | None:
    if v is not None and (min(v) < 2 or max(v) > 1024):
        raise ValueError("node counts must lie between 2 and 1024")
    return v


class ClrsParams(ConsumerParams):
    """Single-task CLRS training (encode-process-decode), tested out of distribution."""

    algorithm: str = Field(min_length=1, max_length=100, description="A CLRS-30 algorithm (generators/clrs).")
    data: Annotated[str | None, ReadsFrom("data")] = Field(
        None, max_length=2000, description="Output directory of a `kind: clrs` job; without it trajectories come "
                                           "straight from the samplers.")
    processor: Literal["triplet_gmpnn", "mpnn", "pgn"] = "triplet_gmpnn"
    hidden: int = Field(128, ge=8, le=1024)
    steps: int = Field(1000, ge=1, le=1_000_000)
    batch_size: int = Field(32, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0, le=1.0)
    teacher_forcing: float = Field(0.0, ge=0.0, le=1.0,
                                   description="Probability that a step reads the true hints instead of its own.")
    eval_every: int = Field(100, ge=1, le=1_000_000)
    max_seconds: float | None = Field(None, gt=0, le=7 * 24 * 3600,
                                      description="Stop training after this long (the best checkpoint is kept).")
    batching: Literal["by_size", "mixed"] = Field(
        "by_size", description="by_size: each batch one node count (as the reference trainer); mixed: padded.")
    variant: Literal["benchmark", "textbook"] = Field(
        "benchmark", description="Without data: the samplers' variant (generators/clrs/sampling.py).")
    train_inputs: Literal["training", "benchmark"] = Field(
        "training", description="Without data: train/val inputs — the reference training script's randomisation "
                                "or the benchmark's fixed distribution.")
    train_count: int = Field(1000, ge=1, le=1_000_000, description="Without data: training trajectories.")
    train_nodes: list[int] | None = Field(None, min_length=1, max_length=64,
                                          description="Without data: training lengths (default 4,7,11,13,16; 20 for "
                                                      "the string matchers).")
    val_count: int = Field(32, ge=1, le=1_000_000, description="Without data: validation trajectories.")
    test_count: int | None = Field(None, ge=1, le=1_000_000,
                                   description="Without data: test trajectories (default: the benchmark's count).")
    test_nodes: list[int] = Field([64], min_length=1, max_length=64, description="Without data: test lengths.")
    test_batch_size: int = Field(4, ge=1, le=4096)
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("algorithm")
    @classmethod
    def _known(cls, v: str) -> str:
        return _known_algorithm(v)

    @field_validator("train_nodes", "test_nodes")
    @classmethod
    def _nodes(cls, v: list[int] | None) -> list[int] | None:
        return _node_counts(v)

    def train_lengths(self) -> list[int]:
        """The training lengths: as given, or the reference training script's."""
        if self.train_nodes is not None:
            return list(self.train_nodes)
        return [max(TRAIN_LENGTHS) * 5 // 4] if self.algorithm in STRING_MATCHERS else list(TRAIN_LENGTHS)


class ClrsEvalParams(ConsumerParams):
    """Scores of a trained CLRS model on a `clrs` job's split, or on fresh samples (the CLRS-30 test split)."""

    model: Annotated[str, ReadsFrom("model")] = Field(min_length=1, max_length=2000,
                                                      description="A model directory (`synth2 clrs train --out`).")
    data: Annotated[str | None, ReadsFrom("data")] = Field(
        None, max_length=2000, description="Output directory of a `kind: clrs` job; without it, fresh samples.")
    split: Literal["train", "val", "test"] = "test"
    count: int | None = Field(None, ge=1, le=1_000_000,
                              description="Without data: trajectories (default: the benchmark's test count).")
    nodes: int = Field(64, ge=2, le=1024, description="Without data: the length (the benchmark tests at 64).")
    variant: Literal["benchmark", "textbook"] = "benchmark"
    inputs: Literal["benchmark", "training"] = "benchmark"
    seed: int = Field(1, ge=0, le=2**31 - 1)
    batch_size: int = Field(4, ge=1, le=4096)
