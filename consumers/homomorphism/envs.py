"""Environments for the DQN agents behind one small interface: `reset(seed) -> obs`,
`step(a) -> (obs, reward, terminated, truncated)`, `n_actions`, `obs_shape`, `kind` (`vector` or `image`).

CartPole comes from gymnasium and MinAtar from the `minatar` package (GPL-3.0: used as a dependency only).
`chain` is a tiny deterministic corridor for tests: walk right to the end for +1."""

from __future__ import annotations

import numpy as np

MINATAR_GAMES = ("breakout", "asterix", "freeway", "seaquest", "space_invaders")


class CartPole:
    kind = "vector"
    n_actions = 2
    obs_shape = (4,)
    obs_scale = (2.4, 3.0, 0.21, 3.0)  # cart position and pole angle at their termination limits
    max_return = 500.0

    def __init__(self) -> None:
        import gymnasium as gym

        self.env = gym.make("CartPole-v1")

    def reset(self, seed: int | None = None) -> np.ndarray:
        return self.env.reset(seed=seed)[0].astype(np.float32)

    def step(self, a: int):
        obs, r, term, trunc, _ = self.env.step(int(a))
        return obs.astype(np.float32), float(r), bool(term), bool(trunc)


class MinAtar:
    """A MinAtar game with all 6 actions (no minimal action set: in Breakout up, down and fire do what no-op
    does, which is what the abstraction is for) and MinAtar's default sticky actions (p = 0.1)."""

    kind = "image"
    n_actions = 6
    max_return = None

    def __init__(self, game: str = "breakout", max_steps: int = 10_000) -> None:
        if game not in MINATAR_GAMES:
            raise ValueError(f"unknown MinAtar game {game!r}; known: {', '.join(MINATAR_GAMES)}")
        from minatar import Environment

        self.env = Environment(game)
        h, w, c = self.env.state_shape()
        self.obs_shape = (c, h, w)
        self.max_steps, self.t = max_steps, 0

    def _obs(self) -> np.ndarray:
        return np.ascontiguousarray(self.env.state().transpose(2, 0, 1), dtype=np.float32)

    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self.env.seed(seed)
        self.env.reset()
        self.t = 0
        return self._obs()

    def step(self, a: int):
        r, term = self.env.act(int(a))
        self.t += 1
        return self._obs(), float(r), bool(term), self.t >= self.max_steps


class Chain:
    """N cells, one-hot observation, actions left / right / stay / stay (two actions with the same effect);
    +1 and the end of the episode on reaching the right end; 4·N steps at most."""

    kind = "vector"
    n_actions = 4
    max_return = 1.0

    def __init__(self, n: int = 4) -> None:
        self.n, self.obs_shape = n, (n,)

    def _obs(self) -> np.ndarray:
        o = np.zeros(self.n, np.float32)
        o[self.pos] = 1.0
        return o

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.pos, self.t = 0, 0
        return self._obs()

    def step(self, a: int):
        self.pos = max(0, self.pos - 1) if a == 0 else min(self.n - 1, self.pos + 1) if a == 1 else self.pos
        self.t += 1
        done = self.pos == self.n - 1
        return self._obs(), float(done), done, self.t >= 4 * self.n


def make(env: str, game: str = "breakout"):
    if env == "cartpole":
        return CartPole()
    if env == "minatar":
        return MinAtar(game)
    if env == "chain":
        return Chain()
    raise ValueError(f"unknown environment {env!r}; known: cartpole, minatar, chain")
