"""DQN with and without the abstraction; everything else — networks' trunks, optimiser, replay, exploration,
target updates, every hyperparameter — is the same.

Without: Q(s, ·) = QNet(s). With: Q(s, a) = Q̃(ê(s, a)), ê from a forward model trained on the same replay
minibatches (its loss added to the TD loss; its output detached in the TD term). The TD target is
r + γ max_a' Q_target(s', a') in both, with the abstraction's Q_target(s', a') = Q̃_target(ê(s', a'))."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from consumers.homomorphism.models import EffectValueNet, ForwardModel, QNet

log = logging.getLogger("synth2.eea")


@dataclass
class DQNConfig:
    hidden: int = 256
    lr: float = 1e-3
    gamma: float = 0.99
    batch_size: int = 64
    buffer_size: int = 50_000
    learning_starts: int = 1000
    train_every: int = 1          # env steps between updates
    gradient_steps: int = 1       # updates each time
    target_every: int = 500       # env steps between target-network copies
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_steps: int = 10_000       # linear decay over this many env steps
    max_grad_norm: float = 10.0
    model_weight: float = 1.0     # forward-model loss weight (abstraction only)


class Replay:
    def __init__(self, size: int, obs_shape: tuple[int, ...], image: bool) -> None:
        dt = np.uint8 if image else np.float32  # MinAtar's channels are binary
        self.s = np.zeros((size, *obs_shape), dt)
        self.s2 = np.zeros((size, *obs_shape), dt)
        self.a = np.zeros(size, np.int64)
        self.r = np.zeros(size, np.float32)
        self.d = np.zeros(size, np.float32)
        self.size, self.n, self.i = size, 0, 0

    def add(self, s, a, r, s2, done) -> None:
        self.s[self.i], self.a[self.i], self.r[self.i], self.s2[self.i], self.d[self.i] = s, a, r, s2, done
        self.i = (self.i + 1) % self.size
        self.n = min(self.n + 1, self.size)

    def sample(self, rng: np.random.Generator, k: int):
        idx = rng.integers(self.n, size=k)
        f = lambda x: torch.as_tensor(x[idx]).float()
        return f(self.s), torch.as_tensor(self.a[idx]), f(self.r), f(self.s2), f(self.d)


class DQNAgent:
    def __init__(self, kind: str, obs_shape: tuple[int, ...], n_actions: int, cfg: DQNConfig, abstraction: bool) -> None:
        self.kind, self.obs_shape, self.n_actions, self.cfg = kind, tuple(obs_shape), n_actions, cfg
        self.abstraction = abstraction
        if abstraction:
            self.model = ForwardModel(kind, obs_shape, n_actions, cfg.hidden)
            self.value = EffectValueNet(kind, obs_shape, cfg.hidden)
            params = list(self.model.parameters()) + list(self.value.parameters())
        else:
            self.model, self.value = None, QNet(kind, obs_shape, n_actions, cfg.hidden)
            params = list(self.value.parameters())
        self.target = copy.deepcopy(self.value)
        self.opt = torch.optim.Adam(params, lr=cfg.lr)
        self.params = params
        self.scale = torch.ones(obs_shape[0] if kind == "vector" else 1)  # observation scale (the env's)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.scale if self.kind == "vector" else x

    def q(self, s: torch.Tensor, net=None) -> torch.Tensor:
        """Q(s, ·) for a batch of normalised states."""
        net = net or self.value
        if not self.abstraction:
            return net(s)
        b, A = s.shape[0], self.n_actions
        with torch.no_grad():
            nxt, r = self.model.effect(s.repeat_interleave(A, 0), torch.arange(A).repeat(b))
        return net(nxt, r).view(b, A)

    def q_sa(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        if not self.abstraction:
            return self.value(s).gather(1, a[:, None])[:, 0]
        with torch.no_grad():
            nxt, r = self.model.effect(s, a)
        return self.value(nxt, r)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for a batch of raw observations."""
        return self.q(self.norm(torch.as_tensor(obs).float())).argmax(1).numpy()

    def update(self, batch) -> dict:
        s, a, r, s2, d = batch
        s, s2 = self.norm(s), self.norm(s2)
        with torch.no_grad():
            target = r + self.cfg.gamma * (1 - d) * self.q(s2, self.target).max(1).values
        if self.abstraction:  # one forward-model pass: its loss, and (detached) the effects the values read
            pred = self.model(s, a)
            ml = self.model.loss(pred, r, s2, d, s)
            nxt = torch.sigmoid(pred[0]) if self.kind == "image" else pred[0]
            td = F.smooth_l1_loss(self.value(nxt.detach(), pred[1].detach()), target)
            loss = td + self.cfg.model_weight * ml
            out = {"td": td.item(), "model": ml.item()}
        else:
            td = loss = F.smooth_l1_loss(self.q_sa(s, a), target)
            out = {"td": td.item()}
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.opt.step()
        return out

    def sync_target(self) -> None:
        self.target.load_state_dict(self.value.state_dict())

    def state_dict(self) -> dict:
        return {"value": self.value.state_dict(), "model": self.model.state_dict() if self.model else None,
                "scale": self.scale}

    def load_state_dict(self, sd: dict) -> None:
        self.value.load_state_dict(sd["value"])
        if self.model is not None:
            self.model.load_state_dict(sd["model"])
        self.scale = sd["scale"]
        self.sync_target()

    def config(self) -> dict:
        return {"kind": self.kind, "obs_shape": list(self.obs_shape), "n_actions": self.n_actions,
                "abstraction": self.abstraction, "dqn": asdict(self.cfg)}


def evaluate(agent: DQNAgent, make_env: Callable, episodes: int, seed: int, max_steps: int = 2000) -> list[float]:
    """Greedy returns of EPISODES episodes run in lockstep (one batched forward per step)."""
    envs = [make_env() for _ in range(episodes)]
    obs = [e.reset(seed=seed + i) for i, e in enumerate(envs)]
    ret, live, t = [0.0] * episodes, list(range(episodes)), 0
    while live and t < max_steps:
        acts = agent.act(np.stack([obs[i] for i in live]))
        still = []
        for i, a in zip(live, acts):
            obs[i], r, term, trunc = envs[i].step(int(a))
            ret[i] += r
            if not (term or trunc):
                still.append(i)
        live, t = still, t + 1
    return ret


def train_dqn(make_env: Callable, *, abstraction: bool, cfg: DQNConfig, max_steps: int, seed: int = 0,
              eval_every: int = 2000, eval_episodes: int = 5, target_return: float | None = None,
              max_seconds: float | None = None, progress: Callable[[int, int], None] | None = None,
              agent_cls: type[DQNAgent] | None = None) -> dict:
    """Train for MAX_STEPS environment steps (or until the greedy evaluation's mean return reaches TARGET_RETURN,
    or MAX_SECONDS pass). Returns the learning curve, training-episode returns and steps to the target.
    AGENT_CLS (a `DQNAgent` subclass) lets an experiment swap the update rule; everything else stays the same."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = make_env()
    agent = (agent_cls or DQNAgent)(env.kind, env.obs_shape, env.n_actions, cfg, abstraction)
    if getattr(env, "obs_scale", None) is not None:
        agent.scale = torch.as_tensor(env.obs_scale, dtype=torch.float32)
    buf = Replay(min(cfg.buffer_size, max_steps), env.obs_shape, env.kind == "image")
    obs, ep_ret, episodes, curve, losses = env.reset(seed=seed), 0.0, [], [], []
    steps_to_target, t0 = None, time.time()
    for step in range(1, max_steps + 1):
        eps = max(cfg.eps_end, cfg.eps_start + (cfg.eps_end - cfg.eps_start) * step / cfg.eps_steps)
        a = int(rng.integers(env.n_actions)) if rng.random() < eps else int(agent.act(obs[None])[0])
        obs2, r, term, trunc = env.step(a)
        buf.add(obs, a, r, obs2, float(term))
        ep_ret += r
        obs = obs2
        if term or trunc:
            episodes.append({"env_steps": step, "return": ep_ret})
            obs, ep_ret = env.reset(), 0.0
        if step >= cfg.learning_starts and step % cfg.train_every == 0:
            for _ in range(cfg.gradient_steps):
                losses.append(agent.update(buf.sample(rng, cfg.batch_size)))
        if step % cfg.target_every == 0:
            agent.sync_target()
        if step % eval_every == 0 or step == max_steps:
            rets = evaluate(agent, make_env, eval_episodes, seed=10_000 + 97 * seed + step)
            curve.append({"env_steps": step, "mean_return": float(np.mean(rets)), "returns": rets,
                          "seconds": round(time.time() - t0, 2)})
            log.info("%s step %d: eval %.1f", "eea" if abstraction else "dqn", step, curve[-1]["mean_return"])
            if progress:
                progress(step, max_steps)
            if target_return is not None and curve[-1]["mean_return"] >= target_return:
                steps_to_target = step
                break
            if max_seconds and time.time() - t0 > max_seconds:
                break
    tail = losses[-200:]
    return {"abstraction": abstraction, "seed": seed, "env_steps": step, "steps_to_target": steps_to_target,
            "target_return": target_return, "curve": curve, "episodes": episodes,
            "final_eval": curve[-1]["mean_return"] if curve else None, "seconds": round(time.time() - t0, 2),
            "loss": {k: float(np.mean([x[k] for x in tail])) for k in (tail[0] if tail else {})}, "agent": agent}
