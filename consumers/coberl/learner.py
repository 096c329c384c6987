"""An R2D2-style learner in one process (Kapturowski et al. 2019, as CoBERL uses on Atari): N environments
stepped in lockstep by one batched forward, every step kept in a replay of per-environment streams with the
actor's LSTM state, sequences (burn-in + unroll + n) sampled uniformly or by priority (R2D2's: 0.9 × max +
0.1 × mean |TD| of the sequence, importance weights), n-step double-Q targets from a target network, optionally
on R2D2's rescaled value scale h, Huber TD loss, plus CoBERL's contrastive loss on the same sequences. The
replay and the value scale are the learner's, so every agent kind gets the same.

Why R2D2 and not PPO / V-MPO: the budget here is frames and CPU seconds on two shared cores, and replay
reuses every frame `replay_ratio` times, where an on-policy learner sees each frame in a few epochs and then
drops it; the contrastive loss trains on the replayed sequences too. One actor thread.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from consumers.coberl.model import Agent, AgentConfig, num_parameters

log = logging.getLogger("synth2.coberl")


@dataclass
class LearnerConfig:
    frames: int = 50_000          # environment steps of the run (all environments together)
    envs: int = 8                 # environments stepped in lockstep
    batch: int = 16               # sequences per update
    burn_in: int = 8              # steps replayed before the learnt ones (LSTM state and transformer window)
    unroll: int = 16              # learnt steps per sequence
    n_step: int = 3
    gamma: float = 0.99
    lr: float = 5e-4
    replay_ratio: float = 4.0     # learnt transitions per environment frame
    learning_starts: int = 2_000  # frames before the first update
    target_every: int = 100       # updates between target-network copies
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_fraction: float = 0.25    # share of the frames over which ε decays linearly
    contrastive_weight: float = 0.1  # 1 until round 2's stop 20: at 1 the auxiliary gradient took half of each
    #                                   shared step and stalled Asterix (README, "The cap's size")
    contrastive_warmup: float = 0.0  # share of the frames over which the weight ramps linearly from 0
    contrastive_scale: str = "td_relative"  # fixed | td_relative: the auxiliary gradient's norm at most weight × TD's on
    #                                   the parameters both reach (encoder, transformer)
    value_rescale: str = "none"   # none | r2d2: Q learnt on h(x) = sign(x)(sqrt(|x|+1) - 1) + eps·x, targets via h⁻¹
    rescale_eps: float = 1e-3
    replay: str = "uniform"       # uniform | prioritized (R2D2's sequence priorities)
    priority_exponent: float = 0.9   # sampling probability ∝ priority ** this
    priority_eta: float = 0.9        # priority = eta · max |TD| + (1 - eta) · mean |TD| over the learnt steps
    importance_start: float = 0.6    # importance-weight exponent β, annealed linearly to 1 over the frames
    max_grad_norm: float = 10.0
    curve_points: int = 20
    eval_episodes: int = 8
    eval_eps: float = 0.01
    eval_max_steps: int = 5_000
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.contrastive_scale not in ("fixed", "td_relative"):
            raise ValueError(f"contrastive_scale must be 'fixed' or 'td_relative' (got {self.contrastive_scale!r})")
        if self.value_rescale not in ("none", "r2d2"):
            raise ValueError(f"value_rescale must be 'none' or 'r2d2' (got {self.value_rescale!r})")
        if self.replay not in ("uniform", "prioritized"):
            raise ValueError(f"replay must be 'uniform' or 'prioritized' (got {self.replay!r})")

    def contrastive_weight_at(self, frames: int) -> float:
        """The contrastive weight after FRAMES frames (the ramp of `contrastive_warmup`)."""
        ramp = self.contrastive_warmup * self.frames
        return self.contrastive_weight * (min(1.0, frames / ramp) if ramp > 0 else 1.0)

    def importance_at(self, frames: int) -> float:
        """The importance-weight exponent β after FRAMES frames: importance_start annealed linearly to 1."""
        return self.importance_start + (1.0 - self.importance_start) * min(1.0, frames / max(1, self.frames))

    @property
    def seq_len(self) -> int:
        return self.burn_in + self.unroll + self.n_step


class SequenceReplay:
    """Per-environment streams in ring buffers; a sample is T consecutive steps of one stream, drawn uniformly or
    (with a PRIORITY_EXPONENT) with probability ∝ priority ** exponent. A priority belongs to the sequence that
    starts at a slot; a new slot starts at the largest priority yet (prioritised replay's rule: every sequence is
    seen at least once before its TD error is known)."""

    def __init__(self, n_envs: int, capacity: int, obs_shape: tuple[int, ...], lstm: int) -> None:
        self.obs = np.zeros((n_envs, capacity, *obs_shape), np.uint8)  # observations × 255 (MinAtar's are 0/1)
        self.act = np.zeros((n_envs, capacity), np.int64)
        self.rew = np.zeros((n_envs, capacity), np.float32)
        self.done = np.zeros((n_envs, capacity), bool)     # the episode ended after this step's action
        self.first = np.zeros((n_envs, capacity), bool)    # this step's observation starts an episode
        self.episode = np.zeros((n_envs, capacity), np.int64)
        self.h = np.zeros((n_envs, capacity, lstm), np.float32)  # the actor's LSTM state before this step
        self.c = np.zeros((n_envs, capacity, lstm), np.float32)
        self.priority = np.zeros((n_envs, capacity))  # of the sequence starting at this step
        self.max_priority = 1.0
        self.n_envs, self.capacity, self.len, self.ptr, self.added = n_envs, capacity, 0, 0, 0

    def add(self, obs, first, episode, h, c, act, rew, done) -> None:
        i = self.ptr
        self.obs[:, i] = np.rint(obs * 255)
        self.first[:, i], self.episode[:, i], self.h[:, i], self.c[:, i] = first, episode, h, c
        self.act[:, i], self.rew[:, i], self.done[:, i] = act, rew, done
        self.priority[:, i] = self.max_priority
        self.ptr = (i + 1) % self.capacity
        self.len = min(self.len + 1, self.capacity)
        self.added += 1

    def sample(self, rng: np.random.Generator, batch: int, T: int, priority_exponent: float | None = None,
               importance: float = 1.0, stride: int = 1) -> dict:
        """BATCH sequences of T steps; "env" and "start" name them (for `update_priorities`), "weight" is the
        importance weight (N·P)^-IMPORTANCE over the batch's largest (all 1 when uniform). Uniform: any start;
        prioritised: starts every STRIDE steps of a stream, as R2D2 stores overlapping sequences, so that most
        sequences are learnt from, and get a priority from their TD error, rather than keep the new ones' largest."""
        if self.len < T:
            raise ValueError(f"replay holds {self.len} steps per environment, fewer than a sequence ({T})")
        n = self.len - T + 1  # valid starts per environment: those whose T steps are all in the ring
        if priority_exponent is None:
            e = rng.integers(self.n_envs, size=batch)
            start = (self.ptr - self.len + rng.integers(0, n, size=batch)) % self.capacity
            weight = np.ones(batch)
        else:
            first = (-(self.added - self.len)) % stride  # the oldest offset on the grid of absolute steps
            slots = (self.ptr - self.len + np.arange(first, n, stride)) % self.capacity
            n = len(slots)
            p = self.priority[:, slots].ravel() ** priority_exponent
            p /= p.sum()
            k = rng.choice(p.size, size=batch, p=p)
            e, start = k // n, slots[k % n]
            weight = (p.size * p[k]) ** -importance
            weight /= weight.max()  # over the batch's largest, as Dopamine's: the loss keeps its scale for Adam
        idx = (start[:, None] + np.arange(T)) % self.capacity
        g = lambda a: torch.as_tensor(a[e[:, None], idx])
        return {"obs": g(self.obs).float() / 255, "act": g(self.act), "rew": g(self.rew), "done": g(self.done),
                "first": g(self.first), "episode": g(self.episode),
                "h": torch.as_tensor(self.h[e, start]), "c": torch.as_tensor(self.c[e, start]),
                "env": e, "start": start, "weight": torch.as_tensor(weight, dtype=torch.float32)}

    def update_priorities(self, env: np.ndarray, start: np.ndarray, td_abs: np.ndarray, eta: float) -> None:
        """R2D2's sequence priority from the |TD| [B, L] of the learnt steps: eta · max + (1 - eta) · mean."""
        p = eta * td_abs.max(1) + (1 - eta) * td_abs.mean(1) + 1e-6
        self.priority[env, start] = p
        self.max_priority = max(self.max_priority, float(p.max()))


def rescale(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """R2D2's value rescaling h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps·x (Pohlen et al. 2018): squashes large
    returns so one network fits values of any scale; invertible (`unrescale`)."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1) - 1) + eps * x


def unrescale(y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """h⁻¹(y) = sign(y)(((sqrt(1 + 4eps(|y| + 1 + eps)) - 1) / 2eps)² - 1), the closed form of `rescale`'s inverse."""
    return torch.sign(y) * (((torch.sqrt(1 + 4 * eps * (y.abs() + 1 + eps)) - 1) / (2 * eps)) ** 2 - 1)


def n_step_targets(q_online: torch.Tensor, q_target: torch.Tensor, rew: torch.Tensor, done: torch.Tensor,
                   start: int, length: int, n: int, gamma: float, rescale_eps: float | None = None) -> torch.Tensor:
    """Double-Q n-step targets for steps start..start+length-1 of [B, T] sequences: the rewards up to the
    episode's end, then γⁿ Q_target(s_{t+n}, argmax_a Q_online(s_{t+n}, a)) if the episode is still going.
    With RESCALE_EPS the Q-values are on the rescaled scale: h(rewards + γⁿ h⁻¹(Q_target)), as R2D2."""
    ret = torch.zeros(rew.shape[0], length)
    alive = torch.ones(rew.shape[0], length)
    for k in range(n):
        ret = ret + alive * gamma**k * rew[:, start + k:start + k + length]
        alive = alive * (~done[:, start + k:start + k + length]).float()
    nxt = slice(start + n, start + n + length)
    a_star = q_online[:, nxt].argmax(-1, keepdim=True)  # h is monotone: the same argmax on either scale
    boot = q_target[:, nxt].gather(-1, a_star)[..., 0]
    if rescale_eps is None:
        return ret + alive * gamma**n * boot
    return rescale(ret + alive * gamma**n * unrescale(boot, rescale_eps), rescale_eps)


class Learner:
    def __init__(self, cfg: AgentConfig, lc: LearnerConfig) -> None:
        self.cfg, self.lc = cfg, lc
        self.agent = Agent(cfg)
        self.target = copy.deepcopy(self.agent).requires_grad_(False)
        self.opt = torch.optim.Adam(self.agent.parameters(), lr=lc.lr)
        self.updates = 0

    def update(self, b: dict, weight: float | None = None) -> dict:
        """One Adam step on B: the TD loss plus WEIGHT (default: the config's) × the contrastive loss. The two
        gradients are taken apart so their norms can be reported, on the encoder and on the parameters both
        reach (encoder, transformer); with `contrastive_scale` td_relative the contrastive one is scaled so its
        norm on the latter is at most WEIGHT × the TD one's: Adam normalises a parameter's step by its whole
        gradient's size, so an auxiliary gradient 100× the TD one would leave the TD signal a hundredth."""
        lc = self.lc
        weight = lc.contrastive_weight if weight is None else weight
        q, aux = self.agent.unroll(b["obs"], b["first"], b["episode"], (b["h"], b["c"]), lc.burn_in, aux=True)
        with torch.no_grad():
            qt, _ = self.target.unroll(b["obs"], b["first"], b["episode"], (b["h"], b["c"]), lc.burn_in)
            eps = lc.rescale_eps if lc.value_rescale == "r2d2" else None
            target = n_step_targets(q.detach(), qt, b["rew"], b["done"], lc.burn_in, lc.unroll, lc.n_step, lc.gamma, eps)
        learnt = slice(lc.burn_in, lc.burn_in + lc.unroll)
        q_sa = q[:, learnt].gather(-1, b["act"][:, learnt, None])[..., 0]
        w = b.get("weight", torch.ones(len(q_sa)))  # importance weights of prioritised replay
        td = (w[:, None] * F.smooth_l1_loss(q_sa, target, reduction="none")).mean()
        out = {"td": td.item(), "q": q_sa.mean().item(), "td_abs": (q_sa - target).detach().abs().numpy()}
        self.opt.zero_grad()
        if aux:
            params = list(self.agent.parameters())
            g_td = torch.autograd.grad(td, params, retain_graph=True, allow_unused=True)
            g_aux = torch.autograd.grad(aux["loss"], params, allow_unused=True)
            enc = {id(p) for p in self.agent.encoder.parameters()}
            shared = [gt is not None and ga is not None for gt, ga in zip(g_td, g_aux, strict=True)]

            def norm(gs, which) -> float:
                return float(torch.sqrt(sum((g.square().sum() for p, g, s in zip(params, gs, shared, strict=True)
                                             if which(p, s)), torch.tensor(0.0))))

            on_enc, on_shared = (lambda p, s: id(p) in enc), (lambda p, s: s)
            n_td, n_aux = norm(g_td, on_enc), norm(g_aux, on_enc)
            s_td, s_aux = norm(g_td, on_shared), norm(g_aux, on_shared)
            scale = weight
            if lc.contrastive_scale == "td_relative" and s_aux * weight > s_td:
                scale = weight * s_td / max(s_aux, 1e-12)
            for p, gt, ga in zip(params, g_td, g_aux, strict=True):
                g = None if gt is None else gt.clone()
                if ga is not None:
                    g = scale * ga if g is None else g + scale * ga
                p.grad = g
            out.update(nce=aux["nce"].item(), kl=aux["kl"].item(), contrastive_accuracy=aux["accuracy"].item(),
                       grad_td_encoder=n_td, grad_aux_encoder=n_aux, grad_td_shared=s_td, grad_aux_shared=s_aux,
                       contrastive_scale=scale)
        else:
            td.backward()
        torch.nn.utils.clip_grad_norm_(self.agent.parameters(), lc.max_grad_norm)
        self.opt.step()
        self.updates += 1
        if self.updates % lc.target_every == 0:
            self.target.load_state_dict(self.agent.state_dict())
        return out


def learning_curve(episodes: list[dict], frames: int, points: int) -> list[dict]:
    """Mean return of the episodes that ended in each of POINTS equal spans of the frames (a span with none
    carries the previous value; leading empty spans take the first value seen)."""
    edges = np.linspace(0, frames, points + 1)
    ends = np.array([e["frames"] for e in episodes], float)
    rets = np.array([e["return"] for e in episodes], float)
    vals: list[float | None] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (ends > lo) & (ends <= hi)
        vals.append(float(rets[sel].mean()) if sel.any() else (vals[-1] if vals else None))
    seen = next((v for v in vals if v is not None), 0.0)
    vals = [seen if v is None else v for v in vals]
    return [{"frames": int(hi), "mean_return": round(v, 4)} for hi, v in zip(edges[1:], vals, strict=True)]


def auc(curve: list[dict]) -> float:
    """Area under the learning curve divided by the frames: the mean return over the whole budget."""
    return float(np.mean([p["mean_return"] for p in curve])) if curve else 0.0


def evaluate(agent: Agent | None, make_env: Callable, episodes: int, seed: int, eps: float = 0.01,
             max_steps: int = 5_000) -> list[float]:
    """Returns of EPISODES episodes in lockstep, ε-greedy with EPS (AGENT None: uniformly random actions)."""
    rng = np.random.default_rng(seed)
    envs = [make_env() for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i) for i, e in enumerate(envs)])
    n_act = envs[0].n_actions
    ret, live = np.zeros(episodes), np.ones(episodes, bool)
    st = agent.start(episodes) if agent is not None else None
    first = torch.ones(episodes, dtype=torch.bool)
    for _ in range(max_steps):
        a = rng.integers(n_act, size=episodes)
        if agent is not None:
            greedy = agent.step(torch.as_tensor(obs), first, st).argmax(1).numpy()
            a = np.where(rng.random(episodes) < eps, a, greedy)
        first = torch.zeros(episodes, dtype=torch.bool)
        for i in np.flatnonzero(live):
            obs[i], r, term, trunc = envs[i].step(int(a[i]))
            ret[i] += r
            live[i] = not (term or trunc)
        if not live.any():
            break
    return ret.tolist()


def train(make_env: Callable, kind: str, cfg: AgentConfig, lc: LearnerConfig, seed: int = 0,
          progress: Callable[[int, int], None] | None = None, keep_losses: bool = False) -> dict:
    """One run of LC.frames frames: KIND coberl | no_contrastive | lstm (CFG's kind is set from it) or random.
    Returns the training episodes, the learning curve, its AUC, the final ε-greedy evaluation and the agent (and
    with KEEP_LOSSES every update's losses and gradient norms)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    envs = [make_env() for _ in range(lc.envs)]
    obs = np.stack([e.reset(seed=1000 * seed + i) for i, e in enumerate(envs)])
    n_act = envs[0].n_actions
    learner = None
    if kind != "random":
        cfg = AgentConfig(**{**asdict(cfg), "kind": kind, "obs_shape": envs[0].obs_shape, "n_actions": n_act})
        learner = Learner(cfg, lc)
        cap = min(lc.frames // lc.envs + 1, 1_000_000 // lc.envs)
        replay = SequenceReplay(lc.envs, max(cap, lc.seq_len), cfg.obs_shape, cfg.lstm)
        st = learner.agent.start(lc.envs)
    first = np.ones(lc.envs, bool)
    episode = np.arange(lc.envs) * 1_000_000
    ep_ret = np.zeros(lc.envs)
    episodes: list[dict] = []
    losses: list[dict] = []
    frames, due, t0 = 0, 0.0, time.time()
    per_update = lc.batch * lc.unroll
    alpha = lc.priority_exponent if lc.replay == "prioritized" else None
    stride = max(1, lc.unroll // 2)  # prioritised sequences overlap by half their learnt steps (R2D2: 40 of 80)
    report = max(lc.frames // 50, lc.envs)
    while frames < lc.frames:
        a = rng.integers(n_act, size=lc.envs)
        if learner is not None:
            eps = max(lc.eps_end, lc.eps_start + (lc.eps_end - lc.eps_start) * frames / max(1, lc.eps_fraction * lc.frames))
            h0, c0 = st["h"].numpy().copy(), st["c"].numpy().copy()
            greedy = learner.agent.step(torch.as_tensor(obs), torch.as_tensor(first), st).argmax(1).numpy()
            a = np.where(rng.random(lc.envs) < eps, a, greedy)
        rew, done = np.zeros(lc.envs, np.float32), np.zeros(lc.envs, bool)
        nxt = obs.copy()
        for i, env in enumerate(envs):
            nxt[i], rew[i], term, trunc = env.step(int(a[i]))
            done[i] = term or trunc
        if learner is not None:
            replay.add(obs, first, episode, h0, c0, a, rew, done)
        ep_ret += rew
        frames += lc.envs
        for i in np.flatnonzero(done):
            episodes.append({"frames": frames, "return": float(ep_ret[i])})
            ep_ret[i] = 0.0
            nxt[i] = envs[i].reset()
            episode[i] += 1
        obs, first = nxt, done.copy()
        if learner is not None and frames >= lc.learning_starts and replay.len >= lc.seq_len:
            due += lc.envs * lc.replay_ratio / per_update
            while due >= 1:
                b = replay.sample(rng, lc.batch, lc.seq_len, alpha, lc.importance_at(frames), stride)
                out = learner.update(b, lc.contrastive_weight_at(frames))
                td_abs = out.pop("td_abs")
                if alpha is not None:
                    replay.update_priorities(b["env"], b["start"], td_abs, lc.priority_eta)
                losses.append(out)
                due -= 1
        if progress and frames % report < lc.envs:
            progress(frames, lc.frames)
        if lc.max_seconds and time.time() - t0 > lc.max_seconds:
            log.warning("%s seed %d: stopped at %d frames after %.0f s (max_seconds)", kind, seed, frames, time.time() - t0)
            break
    train_seconds = time.time() - t0
    agent = learner.agent if learner else None
    rets = evaluate(agent, make_env, lc.eval_episodes, seed=10_000 + 97 * seed, eps=lc.eval_eps,
                    max_steps=lc.eval_max_steps)
    curve = learning_curve(episodes, frames, lc.curve_points)
    tail = [e["return"] for e in episodes if e["frames"] > 0.9 * frames]
    last = losses[-max(1, len(losses) // 10):]
    return {"kind": kind, "seed": seed, "frames": frames, "episodes": episodes, "curve": curve,
            "auc": round(auc(curve), 4), "final_eval": {"returns": rets, "mean": float(np.mean(rets)), "eps": lc.eval_eps},
            "train_return_last10pct": float(np.mean(tail)) if tail else None,
            "updates": learner.updates if learner else 0,
            "loss": {k: round(float(np.mean([x[k] for x in last])), 4) for k in (last[0] if last else {})},
            "parameters": num_parameters(agent) if agent else 0,
            "train_seconds": round(train_seconds, 1), "seconds": round(time.time() - t0, 1),
            "frames_per_second": round(frames / max(train_seconds, 1e-9), 1),
            "agent": agent, "agent_config": cfg if learner else None, **({"losses": losses} if keep_losses else {})}
