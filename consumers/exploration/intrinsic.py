"""Intrinsic rewards over embeddings, and the wrappers that add them to an environment's reward.

- `EpisodicNovelty` (NGU, Badia et al. 2020, the episodic part): the k nearest neighbours of the new
  embedding in this episode's memory; squared distances over their running mean, minus a cluster
  distance, through the inverse kernel eps / (d + eps); bonus 1 / sqrt(sum + c), 0 past a maximum
  similarity. The memory is emptied at every episode start.
- `RND` (Burda et al. 2019) on the same embeddings: a predictor trained online against a frozen random
  network; bonus: its squared error (before this step's update). Inputs whitened by running statistics.

`IntrinsicReward` wraps one environment, `VecIntrinsicReward` a gymnasium vector environment (one batched
embedding call per step). Both write the bonus to `info["intrinsic"]` and add `beta * bonus` to the reward.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

Embed = Callable[[np.ndarray, list[str]], torch.Tensor]
NOVELTIES = ("episodic", "rnd")


class EpisodicNovelty:
    """Per-environment episodic memories; `bonus(emb, envs)` scores then stores each embedding."""

    def __init__(self, n_envs: int, k: int = 10, eps: float = 1e-3, c: float = 1e-3, cluster: float = 0.008,
                 max_similarity: float = 8.0, capacity: int = 1000) -> None:
        self.k, self.eps, self.c, self.cluster, self.max_sim, self.capacity = k, eps, c, cluster, max_similarity, capacity
        self.memory: list[list[torch.Tensor]] = [[] for _ in range(n_envs)]
        self.mean_d2, self.count = 0.0, 0

    def reset(self, env: int, emb: torch.Tensor | None = None) -> None:
        self.memory[env] = [] if emb is None else [emb.detach().float()]

    def score(self, emb: torch.Tensor, env: int) -> float:
        """The bonus of EMB against ENV's memory, without storing it."""
        mem = self.memory[env]
        if not mem:
            return 1.0 / np.sqrt(self.c)
        d2 = ((torch.stack(mem) - emb.float()) ** 2).sum(-1)
        knn = torch.topk(d2, min(self.k, len(mem)), largest=False).values
        self.count += 1
        self.mean_d2 += (float(knn.mean()) - self.mean_d2) / min(self.count, 1000)  # running mean, ~last 1000
        dn = torch.clamp(knn / max(self.mean_d2, 1e-12) - self.cluster, min=0.0)
        s = float(torch.sqrt((self.eps / (dn + self.eps)).sum() + self.c))
        return 0.0 if s > self.max_sim else 1.0 / s

    def bonus(self, emb: torch.Tensor, envs: list[int] | None = None) -> np.ndarray:
        envs = list(range(len(emb))) if envs is None else envs
        out = np.zeros(len(emb), np.float32)
        for i, e in enumerate(envs):
            out[i] = self.score(emb[i], e)
            if len(self.memory[e]) < self.capacity:
                self.memory[e].append(emb[i].detach().float())
        return out


class _RunningNorm:
    def __init__(self, dim: int) -> None:
        self.mean, self.var, self.n = torch.zeros(dim), torch.ones(dim), 1e-4

    def update(self, x: torch.Tensor) -> None:
        m, v, n = x.mean(0), x.var(0, unbiased=False), len(x)
        delta, tot = m - self.mean, self.n + n
        self.mean = self.mean + delta * n / tot
        self.var = (self.var * self.n + v * n + delta ** 2 * self.n * n / tot) / tot
        self.n = tot

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.var.clamp_min(1e-8).sqrt()).clamp(-5, 5)


class RND:
    """Random network distillation on embeddings of size DIM; lifelong (no reset between episodes)."""

    def __init__(self, dim: int, out: int = 64, hidden: int = 128, lr: float = 1e-3, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)

        def mlp() -> nn.Sequential:
            net = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU(),
                                nn.Linear(hidden, out))
            with torch.no_grad():
                for p in net.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / np.sqrt(p.shape[-1]) if p.dim() > 1 else 0.0))
            return net

        self.target, self.predictor = mlp().requires_grad_(False), mlp()
        self.opt = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        self.norm = _RunningNorm(dim)

    def reset(self, env: int, emb: torch.Tensor | None = None) -> None:
        pass  # lifelong novelty: nothing is episodic

    def error(self, emb: torch.Tensor) -> torch.Tensor:
        x = self.norm(emb.float())
        return ((self.predictor(x) - self.target(x)) ** 2).mean(-1)

    def bonus(self, emb: torch.Tensor, envs: list[int] | None = None, learn: bool = True) -> np.ndarray:
        emb = emb.detach().float()
        self.norm.update(emb)
        err = self.error(emb)
        out = err.detach().numpy().astype(np.float32)
        if learn:
            self.opt.zero_grad(set_to_none=True)
            err.mean().backward()
            self.opt.step()
        return out


def make_novelty(kind: str, n_envs: int, dim: int, seed: int = 0, capacity: int = 1000):
    if kind == "episodic":
        return EpisodicNovelty(n_envs, capacity=capacity)
    if kind == "rnd":
        return RND(dim, seed=seed)
    raise ValueError(f"unknown novelty {kind!r}; expected one of {', '.join(NOVELTIES)}")


class IntrinsicReward(gym.Wrapper):
    """One environment: reward + beta * novelty of the new view's embedding (`info["intrinsic"]`)."""

    def __init__(self, env: gym.Env, embed: Embed, novelty, beta: float = 1.0) -> None:
        super().__init__(env)
        self.embed, self.novelty, self.beta = embed, novelty, beta

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.novelty.reset(0, self.embed(obs[None], [info.get("caption", "")])[0])
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        bonus = float(self.novelty.bonus(self.embed(obs[None], [info.get("caption", "")]), [0])[0])
        info["intrinsic"] = bonus
        return obs, reward + self.beta * bonus, terminated, truncated, info


class VecIntrinsicReward(gym.vector.VectorWrapper):
    """A vector environment with `autoreset_mode=SAME_STEP`: the bonus of each env's new view (the final one
    of an ending episode), the ending env's episodic memory restarted from its reset view.
    `infos["intrinsic"]` holds the raw bonuses; the reward gets `beta` times them."""

    def __init__(self, env: gym.vector.VectorEnv, embed: Embed, novelty, beta: float = 1.0) -> None:
        super().__init__(env)
        if env.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError("VecIntrinsicReward needs a vector env made with autoreset_mode=AutoresetMode.SAME_STEP")
        self.embed, self.novelty, self.beta = embed, novelty, beta

    def reset(self, **kwargs):
        obs, infos = self.env.reset(**kwargs)
        emb = self.embed(obs, list(infos["caption"]))
        for i in range(self.num_envs):
            self.novelty.reset(i, emb[i])
        return obs, infos

    def step(self, actions):
        obs, reward, terminated, truncated, infos = self.env.step(actions)
        done = np.logical_or(terminated, truncated)
        views, caps = obs.copy(), list(infos["caption"])
        for i in np.flatnonzero(done):
            views[i] = infos["final_obs"][i]
            caps[i] = infos["final_info"]["caption"][i]
        bonus = self.novelty.bonus(self.embed(views, caps), list(range(self.num_envs)))
        if done.any():
            idx = np.flatnonzero(done)
            emb = self.embed(obs[idx], [infos["caption"][i] for i in idx])
            for j, i in enumerate(idx):
                self.novelty.reset(int(i), emb[j])
        infos["intrinsic"] = bonus
        return obs, reward + self.beta * bonus, terminated, truncated, infos
