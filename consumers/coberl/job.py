"""CoBERL as a consumer run (`kind: consumer`, `consumer: {name: coberl, params}`): the same entry point as
`synth2 coberl train` (`consumers.coberl.train.run`). Light at import time: no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from contracts.registry import ConsumerParams, Progress, ReadsFrom, register

Agent = Literal["coberl", "no_contrastive", "lstm", "random"]
Env = Literal["breakout", "asterix", "freeway", "seaquest", "space_invaders", "gymnasium", "corridor"]


class CoBERLParams(ConsumerParams):
    """Train CoBERL, its no-contrastive ablation, an LSTM-only agent and a random policy at equal frames."""

    env: Env = Field("breakout", description="A MinAtar game; `gymnasium` (with gym_id) for any gymnasium image "
                                             "environment with discrete actions; `corridor`: a trivial test task.")
    gym_id: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_./-]+-v[0-9]+$",
                               description="env gymnasium: a registered id, e.g. MinAtar/Breakout-v1.")
    agents: list[Agent] = Field(["coberl", "no_contrastive", "lstm", "random"], min_length=1, max_length=4)
    seeds: int = Field(1, ge=1, le=50, description="Seeds per agent.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="First seed.")
    frames: int = Field(30_000, ge=100, le=50_000_000, description="Environment frames per run (all agents alike).")
    envs: int = Field(32, ge=1, le=256, description="Environments stepped in lockstep.")
    # the agent
    channels: int = Field(16, ge=1, le=256, description="Encoder conv channels.")
    res_blocks: int = Field(1, ge=0, le=8, description="Encoder residual blocks.")
    d_model: int = Field(64, ge=8, le=1024)
    heads: int = Field(2, ge=1, le=32)
    layers: int = Field(1, ge=1, le=12, description="Gated transformer layers.")
    window: int = Field(4, ge=1, le=512, description="Steps each transformer query attends to (its own included).")
    lstm: int = Field(64, ge=8, le=2048, description="LSTM units.")
    mask_rate: float = Field(0.15, gt=0, lt=1, description="Share of a sequence's steps masked for the contrastive loss.")
    tau: float = Field(0.1, gt=0, le=10, description="InfoNCE temperature.")
    consistency: float = Field(1.0, ge=0, le=100, description="Weight of RELIC's consistency (KL) term.")
    contrastive_weight: float = Field(0.1, ge=0, le=100, description="Weight of the contrastive loss (coberl only); "
                                      "with td_relative, its gradient is at most this share of the TD one's.")
    contrastive_warmup: float = Field(0.0, ge=0, le=1, description="Share of the frames over which the contrastive "
                                                                   "weight ramps linearly from 0.")
    contrastive_scale: Literal["fixed", "td_relative"] = Field(
        "td_relative", description="td_relative: the contrastive gradient's norm on the parameters both losses reach "
                                   "(encoder, transformer) is cut to at most contrastive_weight × the TD gradient's there; "
                                   "fixed: contrastive_weight × the loss as it is.")
    contrastive_targets: Literal["stop_gradient", "gradient"] = Field(
        "stop_gradient", description="Whether the contrastive targets (the encoder outputs) are held fixed.")
    aux_attention: Literal["bidirectional", "causal"] = Field(
        "bidirectional", description="Attention of the masked pass (the paper: no causal mask, BERT-style).")
    # the R2D2-style learner
    batch: int = Field(32, ge=1, le=4096, description="Sequences per update.")
    burn_in: int = Field(4, ge=0, le=1000, description="Replayed steps before the learnt ones (at least window - 1).")
    unroll: int = Field(12, ge=1, le=1000, description="Learnt steps per sequence.")
    n_step: int = Field(3, ge=1, le=100)
    gamma: float = Field(0.99, gt=0, le=1)
    lr: float = Field(1e-3, gt=0, le=1)
    replay_ratio: float = Field(2.0, gt=0, le=1000, description="Learnt transitions per environment frame.")
    learning_starts: int = Field(1_000, ge=0, le=50_000_000, description="Frames before the first update.")
    target_every: int = Field(25, ge=1, le=1_000_000, description="Updates between target-network copies.")
    value_rescale: Literal["r2d2", "none"] = Field(
        "r2d2", description="r2d2: Q learnt on R2D2's rescaled scale h(x) = sign(x)(sqrt(|x|+1) - 1) + eps·x, the n-step "
                            "target as h(rewards + γⁿ h⁻¹(Q_target)); none: returns as they are. Every agent alike.")
    rescale_eps: float = Field(1e-3, gt=0, le=1, description="eps of the value rescaling h.")
    replay: Literal["prioritized", "uniform"] = Field(
        "prioritized", description="prioritized: R2D2's sequence replay, priority = priority_eta · max |TD| + "
                                   "(1 - priority_eta) · mean |TD|, sampled ∝ priority ** priority_exponent, with "
                                   "importance weights; uniform: every sequence alike. Every agent alike.")
    priority_exponent: float = Field(0.9, ge=0, le=1, description="Sampling probability ∝ priority ** this.")
    priority_eta: float = Field(0.9, ge=0, le=1, description="Weight of the max |TD| in a sequence's priority.")
    importance_start: float = Field(0.6, ge=0, le=1, description="Importance-weight exponent at the start, annealed "
                                                                  "linearly to 1 over the frames.")
    eps_end: float = Field(0.05, ge=0, le=1, description="ε after its linear decay from 1.")
    eps_fraction: float = Field(0.25, gt=0, le=1, description="Share of the frames over which ε decays.")
    curve_points: int = Field(20, ge=2, le=1000, description="Points of the learning curve.")
    eval_episodes: int = Field(8, ge=1, le=1000, description="Episodes of the final ε-greedy evaluation.")
    eval_eps: float = Field(0.01, ge=0, le=1)
    max_seconds: float | None = Field(None, gt=0, le=7 * 24 * 3600,
                                      description="Stop a run after this long (its frames are then fewer: say so).")
    threads: int = Field(1, ge=1, le=64, description="torch threads.")
    plots: bool = True

    @field_validator("agents")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"agents must not repeat (got {v})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CoBERLParams:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of heads {self.heads}")
        if self.burn_in < self.window - 1:
            raise ValueError(f"burn_in {self.burn_in} is shorter than window - 1 ({self.window - 1}): the first learnt "
                             "steps would see less context than when acting")
        if (self.env == "gymnasium") != (self.gym_id is not None):
            raise ValueError("gym_id is needed with env gymnasium, and only then")
        return self


class CoBERLEvalParams(ConsumerParams):
    """ε-greedy evaluation of a model saved by a train run."""

    model: Annotated[str, ReadsFrom("model")] = Field(
        min_length=1, max_length=2000, description="A models/<agent>-seed<N> folder of a train run.")
    episodes: int = Field(10, ge=1, le=10_000)
    eps: float = Field(0.01, ge=0, le=1, description="ε of the evaluation policy.")
    max_steps: int = Field(5_000, ge=1, le=1_000_000, description="Steps per episode at most.")
    seed: int = Field(1, ge=0, le=2**31 - 1)
    threads: int = Field(1, ge=1, le=64)


def run(params: CoBERLParams, out_dir: Path, progress: Progress) -> dict:
    from consumers.coberl.train import run as train_run

    res = train_run(params, out_dir, progress)
    return {"env": res["env"], "frames": res["frames"],
            "auc": {k: v["auc"]["mean"] for k, v in res["summary"].items()},
            "return_at_budget": {k: v["final_eval"]["mean"] for k, v in res["summary"].items()}}


register("coberl", CoBERLParams, run, "CoBERL (contrastive BERT for RL: gated transformer + LSTM, R2D2-style) vs no "
         "contrastive loss vs LSTM only vs random, on MinAtar at equal frames (Banino et al. 2022).")
