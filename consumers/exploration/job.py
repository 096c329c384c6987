"""Semantic exploration from vision-language representations (Tam et al. 2022) as a consumer run
(`kind: consumer`, `consumer: {name: explore, params}`): the same entry point as `synth2 explore train`
(`consumers.exploration.train.run`). Light at import time: no torch, no gymnasium."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from contracts.registry import ConsumerParams, Progress, ReadsFrom, register

Embedding = Literal["clip", "vlm", "pixels", "random_conv", "caption"]
Novelty = Literal["episodic", "rnd"]


class ExploreParams(ConsumerParams):
    """PPO driven by novelty in an embedding space, each embedding x novelty pair (and a random policy) for the
    same number of environment steps, per seed."""

    task: Literal["explore", "reach"] = Field("explore", description="explore: no extrinsic reward; reach: reward 1 "
                                              "for reaching the layout's named object.")
    world: Annotated[str | None, ReadsFrom("model")] = Field(
        None, max_length=2000, description="A built world directory (its clip/ is used); without it and without clip, "
                                           "a tiny world is built into the output directory.")
    clip: Annotated[str | None, ReadsFrom("model")] = Field(
        None, max_length=2000, description="The CLIP (an open_clip folder or local-dir:...) for the clip and caption "
                                           "embeddings; default: WORLD/clip.")
    vlm: Annotated[str | None, ReadsFrom("model")] = Field(
        None, max_length=2000, description="A synth2 VLM model folder, for the vlm embedding.")
    embeddings: list[Embedding] = Field(["clip", "pixels", "random_conv", "caption"], min_length=0, max_length=5)
    novelties: list[Novelty] = Field(["episodic", "rnd"], min_length=1, max_length=2)
    random_policy: bool = Field(True, description="Also run a uniformly random policy.")
    seeds: list[int] = Field([0], min_length=1, max_length=16, description="One layout and one run per seed.")
    layout_seed: int | None = Field(None, ge=0, le=2**31 - 1, description="The map; default: each run's seed.")
    steps: int = Field(20_000, ge=64, le=10_000_000, description="Environment steps per run (all envs together), "
                                                                 "rounded down to whole rollouts (at least one).")
    episode_steps: int = Field(200, ge=8, le=10_000, description="Steps per episode.")
    rooms: int = Field(3, ge=1, le=8, description="Rooms per side of the map.")
    room_size: int = Field(4, ge=3, le=12, description="Cells per side of a room.")
    objects_per_room: int = Field(2, ge=1, le=8)
    image_size: int = Field(64, ge=32, le=128, description="Side of the egocentric view, pixels.")
    frames: int = Field(1, ge=1, le=16, description="Views the policy sees at once (the newest and the K-1 before "
                                                    "it, stacked): its only memory.")
    n_envs: int = Field(8, ge=1, le=64)
    rollout: int = Field(32, ge=8, le=4096, description="Steps per env per PPO update.")
    epochs: int = Field(4, ge=1, le=32)
    lr: float = Field(5e-4, gt=0, le=1.0)
    entropy: float = Field(0.01, ge=0, le=1.0)
    beta: float = Field(1.0, ge=0, le=100.0, description="Weight of the normalised intrinsic reward.")
    last_fraction: float = Field(0.25, gt=0, le=1.0, description="Per-episode figures over episodes ending in this "
                                                                 "last share of the steps.")

    @field_validator("embeddings", "novelties", "seeds")
    @classmethod
    def _unique(cls, v: list) -> list:
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat (got {v})")
        return v

    @model_validator(mode="after")
    def _needs(self) -> ExploreParams:
        if "vlm" in self.embeddings and not self.vlm:
            raise ValueError("the vlm embedding needs vlm (a synth2 VLM model folder)")
        if not self.embeddings and not self.random_policy:
            raise ValueError("nothing to run: no embeddings and random_policy false")
        if self.objects_per_room * self.rooms ** 2 > 48:
            raise ValueError(f"{self.objects_per_room} objects in each of {self.rooms ** 2} rooms is more than the "
                             f"world's 48 colour-shape compositions")
        return self


def run(params: ExploreParams, out_dir: Path, progress: Progress) -> dict:
    from consumers.exploration.train import run as train_run

    res = train_run(params, out_dir, progress=progress)
    return {"task": res["task"], "steps": res["steps"],
            "objects_per_episode": {k: v["objects_per_episode"]["mean"] for k, v in res["summary"].items()},
            "distinct_objects": {k: v["distinct_objects"]["mean"] for k, v in res["summary"].items()},
            "first_solved_step": {k: v["first_solved_step"]["mean"] for k, v in res["summary"].items()}}


register("explore", ExploreParams, run, "Semantic exploration (Tam et al. 2022): PPO with episodic-kNN or RND "
                                        "novelty in CLIP, VLM, caption, pixel or random-conv embeddings, in rooms of "
                                        "world objects; distinct objects and rooms visited.")


class ExploreEvalParams(ConsumerParams):
    """Run one trained policy (a folder `synth2 explore train` wrote) for fresh episodes."""

    model: Annotated[str, ReadsFrom("model")] = Field(min_length=1, max_length=2000,
                                                      description="A run folder: OUT/<condition>/seed<N>.")
    episodes: int = Field(16, ge=1, le=10_000)
    layouts: Literal["same", "new"] = Field("same", description="same: the layout it trained on; new: a fresh "
                                                                "layout each episode.")
    seed: int = Field(1, ge=0, le=2**31 - 1)
