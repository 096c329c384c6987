"""The closed generation loop as a consumer run (`POST /v1/consumers/loop/runs`, `kind: consumer`) and
the settings of `synth2 loop` (one definition: synth2/cli_loop.py generates its options from `LoopParams`).

Light at import time (no torch): the service imports this module to validate requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from contracts.registry import ConsumerParams, Progress, ReadsFrom, register

ROOT = Path(__file__).resolve().parents[1]
Data = Annotated[str | None, ReadsFrom("data")]


class LoopParams(ConsumerParams):
    """Round r trains the VLM on human + synthetic pairs, finds its errors per concept on the validation
    split, and weights the next synthetic job's concepts by them (`strategy: uniform`: the baseline at
    the same synthetic budget)."""

    world: Data = Field(None, min_length=1, max_length=2000, description=(
        "A built embedded world (synth2 world build): the defaults of human, val, test, decoder and spec."))
    human: Data = Field(None, min_length=1, max_length=2000, description="Human-annotated training shards.")
    val: Data = Field(None, min_length=1, max_length=2000, description="Validation shards (decide the weights).")
    test: Data = Field(None, min_length=1, max_length=2000, description="Test shards (reported only).")
    decoder: Annotated[str | None, ReadsFrom("model")] = Field(None, min_length=1, max_length=500,
                                                               description="Causal LM the VLM starts from.")
    spec: Data = Field(None, min_length=1, max_length=2000, description=(
        "Base synthesize spec (YAML) of every round's job; its concepts.items are the concept bank "
        "(default: configs/demo.yaml on the world's models)."))
    strategy: Literal["errors", "uniform"] = "errors"
    rounds: int = Field(3, ge=1, le=100)
    pairs_per_round: int = Field(500, ge=1, le=10_000_000, description="Synthetic pairs added per round.")
    oversample: float = Field(2.0, ge=1.0, le=100.0, description="Captions requested per pair kept.")
    steps: int = Field(300, ge=1, le=1_000_000, description="VLM training steps per round (from scratch).")
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0, le=1.0)
    share: float = Field(0.3, gt=0, lt=1, description="Synthetic share of the training mix.")
    alpha: float = Field(2.0, ge=0, le=10, description="Weight ∝ (smoothed validation error)^alpha.")
    floor: float = Field(0.1, ge=0, le=1, description="Share of each job spread uniformly over the bank.")
    kinds: bool = Field(False, description=(
        "errors strategy: also split each job between one-concept and two-concept prompts (relation "
        "captions) by the share of the validation misses that are relation scenes."))
    seed: int = Field(0, ge=0, le=2**31 - 1)
    eval_limit: int | None = Field(None, ge=1, le=10_000_000)
    threads: int | None = Field(None, ge=1, le=256)

    @model_validator(mode="after")
    def _complete(self) -> LoopParams:
        if self.world is None:
            missing = [k for k in ("human", "val", "test", "decoder", "spec") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"without world, set {', '.join(missing)}")
        return self


def config(params: LoopParams, out: str | Path, jobs_dir: str | Path | None = None):
    """The `vlm.loop.LoopConfig` of PARAMS: a world fills every location left unset."""
    from vlm.loop import LoopConfig

    w = Path(params.world) if params.world else None
    spec: str | dict | None = params.spec
    if spec is None:
        import yaml

        base = ROOT / "configs" / "demo.yaml"
        if not base.exists():
            raise FileNotFoundError(f"no spec given and the default {base} is missing")
        d = yaml.safe_load(base.read_text())
        d["captions"]["model"] = str(w / "lm")
        d["synthesis"].update(prior=str(w / "prior"), encoder={"name": f"local-dir:{w / 'clip'}"})
        spec = d
    return LoopConfig(human=params.human or str(w / "data" / "train"), val=params.val or str(w / "data" / "val"),
                      test=params.test or str(w / "data" / "test"), decoder=params.decoder or str(w / "lm"),
                      spec=spec, out=str(out), strategy=params.strategy, rounds=params.rounds,
                      pairs_per_round=params.pairs_per_round, oversample=params.oversample, steps=params.steps,
                      batch_size=params.batch_size, lr=params.lr, share=params.share, alpha=params.alpha,
                      floor=params.floor, kinds=params.kinds, seed=params.seed, jobs_dir=str(jobs_dir) if jobs_dir else None,
                      eval_limit=params.eval_limit, threads=params.threads)


def summary(state: dict) -> dict:
    return {"strategy": state["settings"]["strategy"],
            "rounds": [{"round": r["round"], "job_id": r["job_id"], "synthetic_pairs": r["synthetic_pairs_total"],
                        "test_held_out_composition": r["test"].get("held_out_composition"),
                        "test_cider": r["test"]["cider"]} for r in state["rounds"]],
            "loop": "loop.json", "plots": ["loop.png"] + [f"round-{r['round']}.png" for r in state["rounds"]]}


def run(params: LoopParams, out_dir: Path, progress: Progress) -> dict:
    from vlm.loop import run_loop

    return summary(run_loop(config(params, out_dir), progress=progress))


register("loop", LoopParams, run, "The closed loop: train the VLM, find its errors per concept on the validation "
         "split, weight the next synthetic job by them, train again (or the uniform baseline).")
