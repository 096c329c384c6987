"""CLRS training as a consumer run (`kind: consumer`, `consumer: {name: clrs, params}`): the same entry
point as `synth2 clrs train` (`consumers.clrs.train.run`), with the same params (consumers/clrs/params.py).
Light at import time: no torch here."""

from __future__ import annotations

from pathlib import Path

from consumers.clrs.params import ClrsParams
from contracts.registry import Progress, register


def run(params: ClrsParams, out_dir: Path, progress: Progress) -> dict:
    from consumers.clrs.train import run as train_run

    res = train_run(params, out_dir, progress=lambda d, t, _: progress(d, t, "train"))
    return summary(res)


def summary(res: dict) -> dict:
    """What a run reports: micro-F1 and per-feature scores as fractions in [0, 1] (scalars: -MSE)."""
    return {"algorithm": res["algorithm"], "processor": res["processor"], "test_micro_f1": res["test_micro_f1"],
            "per_feature": {k: v["score"] for k, v in res["test"]["per_feature"].items()}, "steps": res["steps"],
            "test_nodes": res["test_nodes"], "test_trajectories": res["test"]["trajectories"]}


register("clrs", ClrsParams, run, "CLRS-30 single-task encode-process-decode training, OOD micro-F1 (Ibarz et al. 2022).")
