"""Environments behind the small interface of consumers/homomorphism/envs.py (`reset(seed) -> obs`,
`step(a) -> (obs, reward, terminated, truncated)`, `n_actions`, `obs_shape` as C×H×W).

MinAtar games are that consumer's `MinAtar` wrapper of the `minatar` package (GPL-3.0: a dependency, never
copied), here with the game's minimal action set (3–6 actions: fewer actions to learn in a small budget).
Any gymnasium environment with image observations and discrete actions works through `Gymnasium`, e.g.
`MinAtar/Breakout-v1`, which `minatar.gym` registers for gymnasium. `Corridor` is a trivial test task."""

from __future__ import annotations

import numpy as np

from consumers.homomorphism.envs import MINATAR_GAMES
from consumers.homomorphism.envs import MinAtar as _MinAtar

__all__ = ["MINATAR_GAMES", "Corridor", "Gymnasium", "MinAtar", "make"]


class MinAtar(_MinAtar):
    """A MinAtar game with its minimal action set and sticky actions (p = 0.1, MinAtar's default)."""

    def __init__(self, game: str = "breakout", max_steps: int = 10_000) -> None:
        super().__init__(game, max_steps)
        self.actions = list(self.env.minimal_action_set())
        self.n_actions = len(self.actions)

    def step(self, a: int):
        return super().step(self.actions[int(a)])


class Gymnasium:
    """Any gymnasium environment with discrete actions and image observations (H×W×C or C×H×W)."""

    def __init__(self, env_id: str, max_steps: int = 10_000) -> None:
        import gymnasium as gym

        if env_id.startswith("MinAtar/"):
            from minatar.gym import register_envs

            if env_id not in gym.registry:
                register_envs()
        self.env = gym.make(env_id)
        if not isinstance(self.env.action_space, gym.spaces.Discrete):
            raise ValueError(f"{env_id} has action space {self.env.action_space}; a discrete one is needed")
        shape = self.env.observation_space.shape
        if shape is None or len(shape) != 3:
            raise ValueError(f"{env_id} observations have shape {shape}; an image (3 dimensions) is needed")
        self.channels_last = shape[-1] < shape[0]
        self.obs_shape = (shape[2], shape[0], shape[1]) if self.channels_last else tuple(shape)
        high = getattr(self.env.observation_space, "high", None)
        self.scale = float(np.max(high)) if high is not None and np.max(high) > 1 else 1.0
        self.n_actions = int(self.env.action_space.n)
        self.max_steps, self.t = max_steps, 0

    def _obs(self, o) -> np.ndarray:
        o = np.asarray(o, dtype=np.float32) / self.scale
        return np.ascontiguousarray(o.transpose(2, 0, 1) if self.channels_last else o)

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.t = 0
        return self._obs(self.env.reset(seed=seed)[0])

    def step(self, a: int):
        o, r, term, trunc, _ = self.env.step(int(a))
        self.t += 1
        return self._obs(o), float(r), bool(term), bool(trunc) or self.t >= self.max_steps


class Corridor:
    """A 1×1×N image corridor: start at the left, action 1 moves right, action 0 stays; +1 and the end on
    reaching the right end, at most 3·N steps. An agent that learns anything reaches it in N - 1 steps."""

    n_actions = 2

    def __init__(self, n: int = 5) -> None:
        self.n, self.obs_shape = n, (1, 1, n)

    def _obs(self) -> np.ndarray:
        o = np.zeros(self.obs_shape, np.float32)
        o[0, 0, self.pos] = 1.0
        return o

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.pos, self.t = 0, 0
        return self._obs()

    def step(self, a: int):
        self.pos += int(a == 1)
        self.t += 1
        done = self.pos == self.n - 1
        return self._obs(), float(done), done, self.t >= 3 * self.n


def make(env: str, gym_id: str | None = None):
    """ENV: a MinAtar game, `gymnasium` (then GYM_ID names the environment) or `corridor`."""
    if env in MINATAR_GAMES:
        return MinAtar(env)
    if env == "gymnasium":
        if not gym_id:
            raise ValueError("env 'gymnasium' needs gym_id, e.g. MinAtar/Breakout-v1")
        return Gymnasium(gym_id)
    if env == "corridor":
        return Corridor()
    raise ValueError(f"unknown environment {env!r}; known: {', '.join(MINATAR_GAMES)}, gymnasium, corridor")
