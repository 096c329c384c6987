"""Equivalent-effect abstraction as a consumer run (`kind: consumer`, `consumer: {name: eea, params}`): the
same entry point as `synth2 eea train` (`consumers.homomorphism.experiment.train`). Light at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from contracts.registry import ConsumerParams, Progress, ReadsFrom, register

Game = Literal["breakout", "asterix", "freeway", "seaquest", "space_invaders"]


class EEAParams(ConsumerParams):
    """Train value-based agents with and without the equivalent-effect abstraction, same hyperparameters."""

    env: Literal["gridworld", "cartpole", "minatar", "chain"] = Field(
        "gridworld", description="gridworld: tabular Q-learning + value iteration; cartpole, minatar, chain: DQN.")
    abstraction: Literal["both", "with", "without"] = Field("both", description="Which agents to run.")
    seeds: int = Field(1, ge=1, le=50, description="Seeds per agent.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="First seed.")
    gamma: float | None = Field(None, gt=0, le=1, description="Discount (default: 0.95 gridworld, 0.99 cartpole/minatar).")
    threads: int = Field(1, ge=1, le=64, description="torch threads.")
    plots: bool = True
    # gridworld
    layout: Literal["four_rooms", "open", "maze"] = Field("four_rooms", description="gridworld: the map.")
    episodes: int = Field(2000, ge=1, le=1_000_000, description="gridworld: most episodes per run.")
    alpha: float = Field(1.0, gt=0, le=1, description="gridworld: Q-learning step size.")
    epsilon: float = Field(0.1, ge=0, le=1, description="gridworld: ε-greedy exploration.")
    step_reward: float = Field(-1.0, ge=-100, le=100, description="gridworld: reward of a step.")
    goal_reward: float = Field(0.0, ge=-100, le=100, description="gridworld: reward of entering the goal.")
    patience: int = Field(5, ge=1, le=1000, description="gridworld: consecutive optimal episodes that count as solved.")
    # DQN
    game: Game = Field("breakout", description="minatar: the game.")
    steps: int = Field(50_000, ge=100, le=50_000_000, description="DQN: environment steps budget per run.")
    max_seconds: float | None = Field(None, gt=0, le=7 * 24 * 3600, description="DQN: stop a run after this long.")
    hidden: int = Field(128, ge=8, le=4096)
    lr: float = Field(1e-3, gt=0, le=1)
    batch_size: int = Field(64, ge=1, le=4096)
    buffer_size: int = Field(50_000, ge=100, le=10_000_000)
    learning_starts: int = Field(1000, ge=1, le=10_000_000)
    train_every: int = Field(4, ge=1, le=10_000, description="DQN: environment steps between updates.")
    gradient_steps: int = Field(2, ge=1, le=10_000, description="DQN: updates each time.")
    target_every: int = Field(500, ge=1, le=10_000_000, description="DQN: environment steps between target copies.")
    eps_end: float = Field(0.04, ge=0, le=1)
    eps_steps: int = Field(8000, ge=1, le=50_000_000, description="DQN: ε decays linearly from 1 over these steps.")
    eval_every: int = Field(2000, ge=1, le=50_000_000, description="DQN: environment steps between greedy evaluations.")
    eval_episodes: int = Field(5, ge=1, le=1000)
    target_return: float | None = Field(None, ge=-1e9, le=1e9,
                                        description="DQN: stop at this greedy mean return (default 475 on cartpole).")


class EEAEvalParams(ConsumerParams):
    """Greedy evaluation of a model saved by a train run."""

    model: Annotated[str, ReadsFrom("model")] = Field(
        min_length=1, max_length=2000, description="A models/<variant>-seed<N> folder of a train run.")
    episodes: int = Field(10, ge=1, le=10_000)
    seed: int = Field(1, ge=0, le=2**31 - 1)
    threads: int = Field(1, ge=1, le=64)


def run(params: EEAParams, out_dir: Path, progress: Progress) -> dict:
    from consumers.homomorphism.experiment import train

    return train(params, out_dir, progress)


register("eea", EEAParams, run, "Equivalent-effect abstraction (a learned MDP homomorphism): samples to the optimal "
         "policy / a target return with and without it (Mavor-Parker et al.).")
