"""Neural pieces for the DQN agents: a forward model of effects and the value heads.

Without the abstraction the Q-network reads the state and has one output per action: Q(s, ·).
With it, the forward model predicts each action's effect ê(s, a) — the next observation (and reward) — and
a value network with a single output reads the effect: Q(s, a) = Q̃(ê(s, a)). Pairs with the same predicted
effect get the same value by construction, so what is learnt through one pair is known to all of them.
The effect is detached: the forward model learns only from its prediction loss, never from the TD error,
so it stays a model of the dynamics rather than drifting into a second Q-network."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def body(kind: str, obs_shape: tuple[int, ...], hidden: int) -> tuple[nn.Module, int]:
    """The trunk shared by every network of one agent: an MLP for vectors, MinAtar's DQN conv for images."""
    if kind == "vector":
        return nn.Sequential(nn.Linear(obs_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()), hidden
    c, h, w = obs_shape
    return nn.Sequential(nn.Conv2d(c, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * (h - 2) * (w - 2), hidden),
                         nn.ReLU()), hidden


class QNet(nn.Module):
    """Q(s, ·): one output per action (the baseline)."""

    def __init__(self, kind: str, obs_shape: tuple[int, ...], n_actions: int, hidden: int) -> None:
        super().__init__()
        self.body, d = body(kind, obs_shape, hidden)
        self.head = nn.Linear(d, n_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class EffectValueNet(nn.Module):
    """Q̃(e): the value of an effect — the same trunk as QNet with one output, reading a predicted next
    observation plus the predicted reward."""

    def __init__(self, kind: str, obs_shape: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        self.body, d = body(kind, obs_shape, hidden)
        self.head = nn.Linear(d + 1, 1)

    def forward(self, next_obs: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.body(next_obs), reward[:, None]], 1))[:, 0]


class ForwardModel(nn.Module):
    changed_weight = 20.0

    """(s, a) → predicted next observation, reward and termination logit.

    Vectors: an MLP on [s, one-hot a] predicting the change s' − s. Images (MinAtar's binary channels): a fully
    convolutional net on s with the action broadcast as planes, predicting each cell's logit on top of a learnt
    copy of the current frame; the effect is the cells' probabilities."""

    def __init__(self, kind: str, obs_shape: tuple[int, ...], n_actions: int, hidden: int) -> None:
        super().__init__()
        self.kind, self.n_actions = kind, n_actions
        if kind == "vector":
            d = obs_shape[0]
            self.net = nn.Sequential(nn.Linear(d + n_actions, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, d + 2))
        else:
            c = obs_shape[0]
            # two 3x3 layers see 5x5: enough for MinAtar, where everything moves at most one cell a step
            self.net = nn.Sequential(nn.Conv2d(c + n_actions, 16, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
            self.cells = nn.Conv2d(16, c, 1)
            self.scalars = nn.Linear(16, 2)
            # Most cells of a MinAtar frame are the same in the next one: the cell logits start from a copy of the
            # current frame (this weight times ±1), so the net learns what changes, as the vector model learns s' − s.
            self.copy = nn.Parameter(torch.tensor(4.0))

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (next observation — for images, logits —, reward, termination logit)."""
        onehot = F.one_hot(a, self.n_actions).float()
        if self.kind == "vector":
            out = self.net(torch.cat([s, onehot], 1))
            return s + out[:, :-2], out[:, -2], out[:, -1]
        h = self.net(torch.cat([s, onehot[:, :, None, None].expand(-1, -1, *s.shape[2:])], 1))
        sc = self.scalars(h.mean((2, 3)))
        return self.cells(h) + self.copy * (2 * s - 1), sc[:, 0], sc[:, 1]

    def effect(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The effect a value is stored under: (predicted next observation, predicted reward)."""
        nxt, r, _ = self(s, a)
        return (torch.sigmoid(nxt) if self.kind == "image" else nxt), r

    def loss(self, pred: tuple[torch.Tensor, torch.Tensor, torch.Tensor], r, s2, done,
             s: torch.Tensor | None = None) -> torch.Tensor:
        """Prediction loss of PRED = self(s, a) against the observed transition. For images given S, the cells
        that change weigh CHANGED_WEIGHT times the others: an action's effect (Breakout's paddle: 2 cells of 400)
        is otherwise lost in the frame's mean, and the model predicts the same frame for every action."""
        nxt, r_hat, d_logit = pred
        if self.kind == "image":
            w = None if s is None else 1 + (self.changed_weight - 1) * (s2 != s).float()
            obs = F.binary_cross_entropy_with_logits(nxt, s2, weight=w)
        else:
            obs = F.mse_loss(nxt, s2)
        return obs + F.mse_loss(r_hat, r) + F.binary_cross_entropy_with_logits(d_logit, done)
