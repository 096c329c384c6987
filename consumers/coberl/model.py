"""CoBERL (Banino et al., ICLR 2022) and its LSTM-only baseline, in PyTorch.

    obs ─► residual conv encoder ─► x_t ─┬──────────────────────────────┐
                                         └► gated transformer (GTrXL) ─► y_t ─► gate(x_t, y_t) ─► LSTM ─► value heads
    training only: x_t masked at a share of steps ─► same transformer, both ways ─► ŷ_t ─► RELIC loss(proj(ŷ_t), sg(x_t))

The transformer is causal and banded: step t attends to the `window` steps ending at t of its own episode,
with a learnt bias per head and distance (relative positions), so acting (a sliding window per
environment) and learning (a replayed sequence, burnt in for at least `window` steps) see the same context.
Its masked pass exists for the auxiliary loss alone and attends both ways within the window (the paper drops
the causal mask there, BERT-style); its targets x_t are held fixed (sg). The value path reads the unmasked,
causal pass, which keeps the value path of CoBERL and of the no-contrastive ablation the same network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

KINDS = ("coberl", "no_contrastive", "lstm")


@dataclass
class AgentConfig:
    obs_shape: tuple[int, int, int] = (4, 10, 10)
    n_actions: int = 3
    kind: str = "coberl"      # coberl | no_contrastive (same net, no auxiliary loss) | lstm (no transformer, no gate)
    channels: int = 16        # encoder conv channels
    res_blocks: int = 1
    d_model: int = 64
    heads: int = 2
    layers: int = 1
    window: int = 8           # steps each transformer query sees (its own included)
    lstm: int = 64
    mask_rate: float = 0.15   # share of a sequence's steps masked for the contrastive loss
    tau: float = 0.1          # InfoNCE temperature
    consistency: float = 1.0  # weight of the RELIC consistency (KL) term
    aux_attention: str = "bidirectional"  # the masked pass: bidirectional (the paper: no causal mask) | causal
    contrastive_targets: str = "stop_gradient"  # stop_gradient (targets held fixed) | gradient (encoder learns through them)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown agent kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of heads {self.heads}")
        if self.aux_attention not in ("bidirectional", "causal"):
            raise ValueError(f"aux_attention must be 'bidirectional' or 'causal' (got {self.aux_attention!r})")
        if self.contrastive_targets not in ("stop_gradient", "gradient"):
            raise ValueError(f"contrastive_targets must be 'stop_gradient' or 'gradient' (got {self.contrastive_targets!r})")
        if not 0.0 < self.mask_rate < 1.0:
            raise ValueError(f"mask_rate must lie in (0, 1) (got {self.mask_rate})")
        self.obs_shape = tuple(self.obs_shape)

    @property
    def transformer(self) -> bool:
        return self.kind != "lstm"

    @property
    def contrastive(self) -> bool:
        return self.kind == "coberl"


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(ch, ch, 3, padding=1), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.relu(self.c1(F.relu(x))))


class Encoder(nn.Module):
    """Residual conv encoder, IMPALA-style but with a stride-2 stem conv (10×10 → 5×5) where IMPALA has a conv
    and a max-pool: the pool alone took a fifth of an update's CPU time here. Then residual blocks, a linear."""

    def __init__(self, obs_shape: tuple[int, int, int], ch: int, blocks: int, d: int) -> None:
        super().__init__()
        c, h, w = obs_shape
        self.stem = nn.Conv2d(c, ch, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(ch) for _ in range(blocks)])
        self.out = nn.Linear(ch * ((h + 1) // 2) * ((w + 1) // 2), d)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return F.relu(self.out(F.relu(self.blocks(self.stem(obs))).flatten(1)))


class GRUGate(nn.Module):
    """GTrXL's GRU-type gate: g(x, y) = (1 - z) ⊙ x + z ⊙ tanh(W_g y + U_g (r ⊙ x)); z's bias starts at -2 so
    the gate starts near the identity on x (the skip path), as Parisotto et al. found stabilises RL."""

    def __init__(self, d: int, bias: float = 2.0) -> None:
        super().__init__()
        self.w = nn.Linear(d, 3 * d, bias=False)
        self.u = nn.Linear(d, 2 * d, bias=False)
        self.ug = nn.Linear(d, d, bias=False)
        self.bz = nn.Parameter(torch.full((d,), bias))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        wr, wz, wg = self.w(y).chunk(3, -1)
        ur, uz = self.u(x).chunk(2, -1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz - self.bz)
        return (1 - z) * x + z * torch.tanh(wg + self.ug(r * x))


class GatedLayer(nn.Module):
    """One GTrXL layer: pre-norm attention and MLP, each joined to its input by a GRU gate, not a sum."""

    def __init__(self, d: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.rel = nn.Parameter(torch.zeros(heads, 2 * window - 1))  # bias by offset -(window-1)..window-1
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        self.g1, self.g2 = GRUGate(d), GRUGate(d)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.rel[:, dist.clamp(1 - self.window, self.window - 1) + self.window - 1]  # [H, T, T]
        bias = bias.masked_fill(~allowed[:, None], float("-inf"))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = self.g1(x, F.relu(self.o(a.transpose(1, 2).reshape(B, T, d))))
        return self.g2(x, F.relu(self.ff(self.ln2(x))))


def attention_mask(episode: torch.Tensor, window: int, causal: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """allowed[b, i, j]: step i may read step j (j ≤ i, i - j < window, same episode); and the distances i - j.
    Not CAUSAL (the masked pass, BERT-style): |i - j| < window, same episode."""
    T = episode.shape[1]
    pos = torch.arange(T)
    dist = pos[:, None] - pos[None, :]
    band = (dist.abs() < window) if not causal else (dist >= 0) & (dist < window)
    return band & (episode[:, :, None] == episode[:, None, :]), dist


class GatedTransformer(nn.Module):
    def __init__(self, d: int, heads: int, layers: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.layers = nn.ModuleList(GatedLayer(d, heads, window) for _ in range(layers))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, allowed, dist)
        return x


def mask_positions(batch: int, steps: int, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A [batch, steps] boolean mask with exactly max(1, round(rate·steps)) masked steps in every sequence,
    drawn uniformly without replacement (so the share masked is the configured one, not only in expectation)."""
    k = max(1, round(rate * steps))
    order = torch.rand(batch, steps, generator=generator).argsort(1)
    return torch.zeros(batch, steps, dtype=torch.bool).scatter_(1, order[:, :k], True)


def relic_loss(pred: torch.Tensor, target: torch.Tensor, tau: float = 0.1, consistency: float = 1.0) -> dict:
    """RELIC-style contrastive loss between M predictions and their M targets (row i belongs with row i; the
    other rows are the negatives). InfoNCE both ways on cosine similarities / tau, plus the consistency term:
    the KL from the target→prediction distribution to the prediction→target one (the first held fixed), which
    is zero when the similarity structure is the same seen from either side."""
    p, t = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    logits = p @ t.T / tau
    labels = torch.arange(len(p))
    nce_pt = F.cross_entropy(logits, labels)
    nce_tp = F.cross_entropy(logits.T, labels)
    kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(logits.T, -1).detach(), log_target=True,
                  reduction="batchmean")
    loss = nce_pt + nce_tp + consistency * kl
    return {"loss": loss, "nce": (nce_pt + nce_tp).detach() / 2, "kl": kl.detach(),
            "accuracy": (logits.argmax(-1) == labels).float().mean().detach()}


class Agent(nn.Module):
    """Q-values from a stream of observations; `unroll` for replayed sequences, `step` for acting."""

    def __init__(self, cfg: AgentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, A = cfg.d_model, cfg.n_actions
        self.encoder = Encoder(cfg.obs_shape, cfg.channels, cfg.res_blocks, d)
        if cfg.transformer:
            self.transformer = GatedTransformer(d, cfg.heads, cfg.layers, cfg.window)
            self.gate = GRUGate(d)
        if cfg.contrastive:
            self.mask_token = nn.Parameter(0.02 * torch.randn(d))
            self.predict = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.lstm = nn.LSTMCell(d, cfg.lstm)
        self.value = nn.Sequential(nn.Linear(cfg.lstm, 64), nn.ReLU(), nn.Linear(64, 1))
        self.advantage = nn.Sequential(nn.Linear(cfg.lstm, 64), nn.ReLU(), nn.Linear(64, A))

    def initial_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(n, self.cfg.lstm), torch.zeros(n, self.cfg.lstm)

    def heads(self, h: torch.Tensor) -> torch.Tensor:
        """Dueling value heads: Q = V + A - mean A."""
        adv = self.advantage(h)
        return self.value(h) + adv - adv.mean(-1, keepdim=True)

    def unroll(self, obs: torch.Tensor, first: torch.Tensor, episode: torch.Tensor, state, burn_in: int = 0,
               aux: bool = False, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Q [B, T, A] over sequences obs [B, T, C, H, W] starting from the LSTM STATE stored by the actor.
        `first[b, t]`: obs t starts an episode (the LSTM restarts from zero there). The LSTM state is detached
        after BURN_IN steps (R2D2's burn-in). With AUX and a contrastive agent, also the RELIC loss."""
        B, T = obs.shape[:2]
        x = self.encoder(obs.flatten(0, 1).float()).view(B, T, -1)
        out: dict = {}
        z = x
        if self.cfg.transformer:
            allowed, dist = attention_mask(episode, self.cfg.window)
            if aux and self.cfg.contrastive:  # the unmasked and the masked pass as one batch of 2B sequences
                m = mask_positions(B, T, self.cfg.mask_rate, generator)
                both = torch.cat([x, torch.where(m[..., None], self.mask_token, x)])
                bidir = self.cfg.aux_attention == "bidirectional"
                allowed_m = attention_mask(episode, self.cfg.window, causal=False)[0] if bidir else allowed
                y, ym = self.transformer(both, torch.cat([allowed, allowed_m]), dist).split(B)
                target = x[m].detach() if self.cfg.contrastive_targets == "stop_gradient" else x[m]
                out = relic_loss(self.predict(ym[m]), target, self.cfg.tau, self.cfg.consistency)
                out["mask"] = m
            else:
                y = self.transformer(x, allowed, dist)
            z = self.gate(x, y)
        h, c = state
        hs = []
        for t in range(T):
            if t == burn_in and burn_in:
                h, c = h.detach(), c.detach()
            keep = (~first[:, t]).float()[:, None]
            h, c = self.lstm(z[:, t], (h * keep, c * keep))
            hs.append(h)
        return self.heads(torch.stack(hs, 1)), out

    def start(self, n: int) -> dict:
        """Acting state of N environments: the LSTM state and the transformer's window of encoder outputs."""
        h, c = self.initial_state(n)
        return {"h": h, "c": c, "win": torch.zeros(n, self.cfg.window, self.cfg.d_model),
                "valid": torch.zeros(n, self.cfg.window, dtype=torch.bool)}

    @torch.no_grad()
    def step(self, obs: torch.Tensor, first: torch.Tensor, st: dict) -> torch.Tensor:
        """Q [N, A] for one observation per environment; updates ST in place. FIRST: a new episode starts."""
        keep = (~first).float()[:, None]
        x = self.encoder(obs.float())
        z = x
        if self.cfg.transformer:
            valid = torch.cat([st["valid"][:, 1:] & ~first[:, None], torch.ones(len(x), 1, dtype=torch.bool)], 1)
            win = torch.cat([st["win"][:, 1:], x[:, None]], 1)
            st["win"], st["valid"] = win, valid
            W = self.cfg.window
            pos = torch.arange(W)
            dist = pos[:, None] - pos[None, :]
            allowed = (dist >= 0) & valid[:, None, :] & valid[:, :, None]
            allowed = allowed | torch.eye(W, dtype=torch.bool)
            z = self.gate(x, self.transformer(win, allowed, dist)[:, -1])
        st["h"], st["c"] = self.lstm(z, (st["h"] * keep, st["c"] * keep))
        return self.heads(st["h"])


def num_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def config_dict(cfg: AgentConfig) -> dict:
    d = asdict(cfg)
    d["obs_shape"] = list(cfg.obs_shape)
    return d
