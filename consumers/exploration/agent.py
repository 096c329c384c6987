"""A compact PPO (Schulman et al. 2017) for the rooms environment, written here rather than taken from an
RL library: no well-kept one (stable-baselines3, CleanRL, TorchRL) is installed in this environment, and the
intrinsic reward has to be normalised and mixed in the rollout itself (RND-style: divided by a running std
of its discounted return), which is a few lines here and a callback maze in a library.

The policy sees the last `frames` egocentric views stacked on the channel axis (a small Nature-DQN-style conv
net; `FrameStack` keeps them per env and refills them at each episode start): a single view cannot tell a
wall it just turned away from one it has never faced, and a short stack is the cheapest memory that can. At
40,960 steps (a diagnosis run, seed 0) a stack of 4 learned slower than one view (clip+episodic 2.6 against
3.9 objects per episode), so the default is 1. It is the same network for every embedding and
novelty, so runs differ only in their bonus.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class PPOConfig:
    n_envs: int = 8
    n_steps: int = 32  # per env per rollout: 256 steps an update; 64 learned slower per env step (#19)
    epochs: int = 4
    minibatches: int = 4
    lr: float = 5e-4
    gamma: float = 0.99
    lam: float = 0.95
    clip: float = 0.2
    entropy: float = 0.01
    value: float = 0.5
    max_grad_norm: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def _init(layer: nn.Module, gain: float = 2 ** 0.5) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Policy(nn.Module):
    """Stacked views (uint8 [B, H, W, 3 * frames]) → action logits and a value."""

    def __init__(self, n_actions: int, image_size: int = 64, width: int = 128, frames: int = 1) -> None:
        super().__init__()
        self.image_size, self.frames = image_size, frames
        self.body = nn.Sequential(_init(nn.Conv2d(3 * frames, 16, 8, 4)), nn.ReLU(), _init(nn.Conv2d(16, 32, 4, 2)), nn.ReLU(),
                                  nn.Flatten())
        with torch.no_grad():
            n = self.body(torch.zeros(1, 3 * frames, image_size, image_size)).shape[1]
        self.fc = nn.Sequential(_init(nn.Linear(n, width)), nn.ReLU())
        self.pi = _init(nn.Linear(width, n_actions), 0.01)
        self.v = _init(nn.Linear(width, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs.permute(0, 3, 1, 2).float().div(255.0)
        h = self.fc(self.body(x))
        return self.pi(h), self.v(h).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, rng: torch.Generator | None = None, greedy: bool = False):
        logits, value = self(torch.from_numpy(np.ascontiguousarray(obs)))
        if greedy:
            action = logits.argmax(-1)
        else:
            action = torch.multinomial(F.softmax(logits, -1), 1, generator=rng).squeeze(-1)
        logp = F.log_softmax(logits, -1).gather(-1, action[:, None]).squeeze(-1)
        return action.numpy(), logp, value


class FrameStack:
    """The last K views of each of N envs, newest last, as one uint8 array [N, H, W, 3K]."""

    def __init__(self, n_envs: int, k: int, shape: tuple[int, ...]) -> None:
        self.k = k
        self.buf = np.zeros((n_envs, k, *shape), np.uint8)

    def reset(self, obs: np.ndarray, envs: np.ndarray | None = None) -> np.ndarray:
        """Fill ENVS' stacks (all: None) with their first view OBS (one per env in ENVS)."""
        idx = np.arange(len(self.buf)) if envs is None else np.asarray(envs)
        self.buf[idx] = obs[:, None]
        return self.get()

    def push(self, obs: np.ndarray, done: np.ndarray) -> np.ndarray:
        """OBS: every env's new view (an ended env's reset view, as a SAME_STEP vector env returns it)."""
        self.buf[:, :-1] = self.buf[:, 1:]
        self.buf[:, -1] = obs
        if done.any():
            self.buf[done] = obs[done][:, None]
        return self.get()

    def get(self) -> np.ndarray:
        n, k, h, w, c = self.buf.shape
        return self.buf.transpose(0, 2, 3, 1, 4).reshape(n, h, w, k * c)


class RunningStd:
    """Std of the discounted intrinsic return, per env stream (RND's reward normalisation)."""

    def __init__(self, n: int, gamma: float) -> None:
        self.ret, self.gamma = np.zeros(n), gamma
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, rewards: np.ndarray) -> None:
        self.ret = self.ret * self.gamma + rewards
        x = self.ret
        m, v, n = x.mean(), x.var(), len(x)
        delta, tot = m - self.mean, self.count + n
        self.mean += delta * n / tot
        self.var = (self.var * self.count + v * n + delta ** 2 * self.count * n / tot) / tot
        self.count = tot

    @property
    def std(self) -> float:
        return float(np.sqrt(self.var) + 1e-8)


class PPO:
    def __init__(self, policy: Policy, cfg: PPOConfig, seed: int = 0) -> None:
        self.policy, self.cfg = policy, cfg
        self.opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
        self.gen = torch.Generator().manual_seed(seed)

    def update(self, batch: dict[str, torch.Tensor], last_value: torch.Tensor) -> dict:
        """BATCH: obs [T, N, ...], actions, logp, values, rewards, dones [T, N] (done: the step ended its
        episode). Advantages by GAE; clipped surrogate, value loss, entropy bonus."""
        c = self.cfg
        rewards, values, dones = batch["rewards"], batch["values"], batch["dones"]
        T = len(rewards)
        adv = torch.zeros_like(rewards)
        last = torch.zeros_like(last_value)
        for t in reversed(range(T)):
            nxt = last_value if t == T - 1 else values[t + 1]
            nonterminal = 1.0 - dones[t]
            delta = rewards[t] + c.gamma * nxt * nonterminal - values[t]
            last = delta + c.gamma * c.lam * nonterminal * last
            adv[t] = last
        returns = adv + values
        flat = {k: v.flatten(0, 1) for k, v in batch.items()}
        adv, returns = adv.flatten(), returns.flatten()
        n = len(adv)
        mb = n // c.minibatches
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0}
        for _ in range(c.epochs):
            perm = torch.randperm(n, generator=self.gen)
            for s in range(0, mb * c.minibatches, mb):
                idx = perm[s:s + mb]
                logits, v = self.policy(flat["obs"][idx])
                logp_all = F.log_softmax(logits, -1)
                logp = logp_all.gather(-1, flat["actions"][idx, None]).squeeze(-1)
                a = adv[idx]
                a = (a - a.mean()) / (a.std() + 1e-8)
                ratio = (logp - flat["logp"][idx]).exp()
                pl = -torch.min(ratio * a, ratio.clamp(1 - c.clip, 1 + c.clip) * a).mean()
                vl = 0.5 * ((v - returns[idx]) ** 2).mean()
                ent = -(logp_all.exp() * logp_all).sum(-1).mean()
                loss = pl + c.value * vl - c.entropy * ent
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
                self.opt.step()
                stats["policy_loss"] += pl.item()
                stats["value_loss"] += vl.item()
                stats["entropy"] += ent.item()
        k = c.epochs * c.minibatches
        return {key: round(v / k, 4) for key, v in stats.items()}
