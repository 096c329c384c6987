"""The over-squashing analysis as a consumer run (`kind: consumer`, `consumer: {name: oversquash, params}`).

The params mirror `synth2 analyze collapse`; `run` calls the same entry point, `analysis.run_analysis`.
Light at import time (no torch): the service imports this module to validate requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from contracts.registry import ConsumerParams, Progress, ReadsFrom, register

Dtype = Literal["float32", "bfloat16", "float16"]
Family = Literal["ones", "digits_run", "copy_last"]


def _listify(v):
    """`a,b` (a comma-separated string, as `--param dtypes=a,b` gives) or a list."""
    return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


class OversquashParams(ConsumerParams):
    """Representational collapse and over-squashing of a causal LM ("Transformers need glasses!")."""

    model: Annotated[str, ReadsFrom("model")] = Field(min_length=1, max_length=500,
                       description="Causal LM: a directory on the service's machine, or a hub id (AutoModelForCausalLM).")
    gguf_file: str | None = Field(None, min_length=1, max_length=500, pattern=r"^[^/\\]+\.gguf$",
                                  description="A GGUF file inside `model` (a `model` ending in .gguf, or "
                                              "pkg:PACKAGE/FILE.gguf, needs none).")
    sep_every: int = Field(3, ge=1, le=64, description="Separator (comma) every K digits for the 'glasses' curves.")
    max_len: int | None = Field(None, ge=8, le=131_072, description="Longest sequence in tokens (default: the model's).")
    points: int = Field(40, ge=2, le=400, description="About how many n values per collapse curve.")
    dtypes: list[Dtype] = Field(["float32", "bfloat16", "float16"], min_length=1, max_length=3,
                                description="Precisions to run the model in; must include float32.")
    families: list[Family] = Field(["ones", "digits_run", "copy_last"], min_length=1, max_length=3,
                                   description="Sequence families for the collapse curves.")
    device: Annotated[str, Field(pattern=r"^(cpu|cuda(:\d{1,2})?|mps)$")] = "cpu"
    behaviour: bool = Field(True, description="Counting/copying accuracy against length.")
    synthetic: bool = Field(True, description="The one-attention-layer synthetic check.")
    synthetic_max_n: int = Field(16384, ge=16, le=1_000_000, description="Longest run in the synthetic check.")
    projections: int = Field(16, ge=1, le=256, description="Gaussian probes for the sensitivity estimate.")
    plots: bool = True

    @field_validator("dtypes", "families", mode="before")
    @classmethod
    def _split(cls, v):
        return _listify(v)

    @field_validator("dtypes")
    @classmethod
    def _dtypes(cls, v: list[str]) -> list[str]:
        if "float32" not in v:
            raise ValueError("must include float32 (the reference precision)")
        if len(set(v)) != len(v):
            raise ValueError("each precision at most once")
        return v

    @field_validator("families")
    @classmethod
    def _families(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each family at most once")
        return v


def run(params: OversquashParams, out_dir: Path, progress: Progress) -> dict:
    """`run_analysis` into OUT_DIR (collapse.json + PNGs); the summary is its headline figures."""
    from consumers.oversquash.analysis import grid, run_analysis

    res = run_analysis(params.model, out_dir, gguf_file=params.gguf_file, sep_every=params.sep_every,
                       max_len=params.max_len, points=params.points,
                       dtypes=tuple(params.dtypes), families=tuple(params.families), device=params.device,
                       do_behaviour=params.behaviour, do_synthetic=params.synthetic,
                       synthetic_ns=grid(params.synthetic_max_n, 24), projections=params.projections,
                       plots=params.plots, progress=lambda done, total, step: progress(done, total, step))
    return {"model": res["model"], "max_len_used": res["max_len_used"], **res["summary"]}


register("oversquash", OversquashParams, run,
         "Representational collapse, over-squashing sensitivity and separators of a causal LM (Barbero et al. 2024).")
