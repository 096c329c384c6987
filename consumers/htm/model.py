"""Hierarchical Transformer Memory (Lampinen et al. 2021, "Towards mental time travel") in PyTorch.

The past is cut into chunks of `chunk` steps. Each chunk is summarised by the mean of its keys; a
query scores every summary, keeps the `k` best chunks, attends inside each of them, and sums the k
results weighted by the softmax of their summary scores. A step therefore reads k·chunk stored steps
(plus one summary per chunk) instead of the whole memory. (`relevance="separate"` scores chunks with
projections of their own, as the JAX reference does.)

Two ways to run the same modules:

- `forward(batch)`: a whole episode in parallel (training). Step t of chunk j sees, through
  self-attention, the steps of chunk j up to t, and through the memory every chunk before j: exactly
  what the streaming memory holds at that step. Gradients flow through the memory (the reference
  stops them; here the episode is a supervised sequence, so it need not).
- `stream(batch)` / `MemoryState`: one step at a time, with a memory that accumulates steps and commits
  a chunk (keys, values, summary) when it is full. It gives the outputs of `forward` and is what the
  scaling benchmark times.

`attention="full"` gives the TrXL-style baseline from the same parts: the same block, the same
projections, attending to every stored step instead of the top-k chunks. `LSTMModel` is the recurrent
baseline, sized to the same parameter count as HTM. Each head picks its own k chunks with the query
and keys it attends with, so with `chunk=1` and `k` covering every chunk the layer *is* multi-head
attention over the whole memory (a test checks it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Attention = Literal["htm", "full"]
NEG = -1e9


@dataclass
class ModelConfig:
    emb_dim: int = 32          # size of the input embeddings (from the shards)
    names: int = 16            # name tokens (one-shot naming); 0 is "no name"
    phases: int = 4            # step kinds (tasks.PHASES)
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    chunk: int = 8
    k: int = 4
    train_k: int | None = None  # chunks read while training; None: every chunk (each chunk's score learns)
    relevance: Literal["tied", "separate"] = "tied"  # chunk scores: the attention's own q/k, or projections of their own
    explore: float = 0.0       # Gumbel noise (scale) on the chunk scores that pick the chunks, while training only
    mlp: int = 4               # MLP width multiple
    attention: Attention = "htm"

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of heads {self.heads}")
        if self.attention not in ("htm", "full"):
            raise ValueError(f"attention must be 'htm' or 'full' (got {self.attention!r})")

    def to_dict(self) -> dict:
        return asdict(self)


class InputEncoder(nn.Module):
    """Step → vector: whitened embedding, name token, phase, and (transformers) position within its chunk.

    The whitening (`set_whitening`) is fixed, not learned: world embeddings share one dominant direction
    (cosine ≈ 0.98 between any two), which a freshly initialised projection would otherwise drown in."""

    def __init__(self, cfg: ModelConfig, d: int, positions: bool) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(cfg.emb_dim))
        self.register_buffer("white", torch.eye(cfg.emb_dim))
        self.emb = nn.Linear(cfg.emb_dim, d)
        self.name = nn.Embedding(cfg.names + 1, d)
        self.phase = nn.Embedding(cfg.phases, d)
        self.pos = nn.Embedding(cfg.chunk, d) if positions else None
        self.chunk = cfg.chunk

    @torch.no_grad()
    def set_whitening(self, embeddings: torch.Tensor) -> None:
        """PCA-whiten with the statistics of EMBEDDINGS [N, D] (the training pool)."""
        x = embeddings.double()
        mean = x.mean(0)
        cov = torch.cov((x - mean).T) + 1e-6 * torch.eye(x.shape[1], dtype=x.dtype)
        evals, evecs = torch.linalg.eigh(cov)
        self.mean.copy_(mean.float())
        # a floor relative to the largest variance: a pool smaller than the embedding size leaves directions
        # it never varies in, which must not be blown up for data that does
        self.white.copy_((evecs / evals.clamp_min(1e-4 * evals.max()).sqrt()).float())

    def forward(self, emb: torch.Tensor, has_emb: torch.Tensor, name: torch.Tensor, phase: torch.Tensor,
                offset: int = 0) -> torch.Tensor:
        x = self.emb(((emb - self.mean) @ self.white) * has_emb[..., None]) + self.name(name) + self.phase(phase)
        if self.pos is not None:
            t = torch.arange(offset, offset + emb.shape[1], device=emb.device) % self.chunk
            x = x + self.pos(t)
        return x


class MemoryAttention(nn.Module):
    """Attention from queries to a chunked memory: `htm` (top-k chunks) or `full` (every stored step)."""

    def __init__(self, d: int, heads: int, chunk: int, k: int, mode: Attention = "htm", train_k: int | None = None,
                 relevance: str = "tied", explore: float = 0.0) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"d_model {d} is not a multiple of heads {heads}")
        self.h, self.dh, self.chunk, self.k, self.mode = heads, d // heads, chunk, k, mode
        self.train_k, self.explore = train_k, explore
        self.impl: Literal["auto", "dense", "gather"] = "auto"  # how HTM reads its chunks (the same sum)
        self.q, self.kv, self.o = nn.Linear(d, d, bias=False), nn.Linear(d, 2 * d, bias=False), nn.Linear(d, d, bias=False)
        if relevance not in ("tied", "separate"):
            raise ValueError(f"relevance must be 'tied' or 'separate' (got {relevance!r})")
        self.relevance = relevance
        if mode == "htm" and relevance == "separate":
            # the reference scores chunks with projections of their own. Here that learnt nothing in the
            # budgets tried (the scores drift off the cue chunk before attention inside it is useful);
            # tied scores (the mean of the chunk's keys, the attending query) learn with the attention.
            self.rq, self.rk = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)

    def keys_values(self, mem: torch.Tensor, mem_valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """MEM [B, n, c, d] → keys, values [B, H, n, c, dh] and the chunk summaries [B, H, n, dh]: the
        mean of each chunk's valid keys (`tied`) or the relevance key of the mean of its valid steps (`separate`);
        None for full attention."""
        B, n, c, _ = mem.shape
        kv = self.kv(mem).view(B, n, c, 2, self.h, self.dh).permute(3, 0, 4, 1, 2, 5)
        keys, values = kv[0], kv[1]
        if self.mode != "htm":
            return keys, values, None
        if self.relevance == "tied":
            w = mem_valid[:, None, :, :, None].to(keys.dtype)
            return keys, values, (keys * w).sum(3) / w.sum(3).clamp_min(1.0)
        w = mem_valid[..., None].to(mem.dtype)
        mean = (mem * w).sum(2) / w.sum(2).clamp_min(1.0)
        return keys, values, self.rk(mean).view(B, n, self.h, self.dh).transpose(1, 2)

    def reads(self, n: int) -> int:
        """Chunks a query reads out of N: k, or while training `train_k` (every chunk when None). A chunk's
        score gets gradient only when it is read, so with top-k from the start the one chunk that matters
        is found only by chance; scoring every chunk during training teaches the scores to rank it first."""
        return self.k if not self.training else (self.train_k or n)

    def select(self, q: torch.Tensor, summary: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Relevance queries Q [B, H, T, dh] score the chunk summaries [B, H, n, dh]; the top k visible chunks per
        query and head → (relevance weights [B, H, T, k], softmax over the chosen chunks; chunk indices [B, H, T, k])."""
        B, H, T, _ = q.shape
        n = summary.shape[2]
        rel = torch.einsum("bhtd,bhnd->bhtn", q, summary) / math.sqrt(self.dh)
        rel = rel.masked_fill(~visible[:, None], NEG)
        pick = rel
        if self.training and self.explore > 0:
            # Gumbel noise on the scores: the chunk weights are then only right when the relevant chunk's
            # score beats the others by more than the noise, a margin that carries to memories of many more
            # chunks than training had (reading every chunk, a flat score does as well as a sharp one)
            u = torch.rand_like(rel).clamp(1e-6, 1 - 1e-6)
            pick = rel - self.explore * torch.log(-torch.log(u))
        top, idx = pick.topk(min(self.reads(n), n), dim=-1)
        chosen = torch.gather(visible[:, None].expand(B, H, T, n), 3, idx)
        return torch.softmax(top, -1) * chosen, idx  # a chunk that is not visible weighs nothing

    def attend(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, summary: torch.Tensor,
               mem_valid: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """X [B, T, d] queries; VISIBLE [B, T, n]: which chunks each query may read (committed, non-empty)."""
        B, T, _ = x.shape
        n, c = keys.shape[2], keys.shape[3]
        q = self.q(x).view(B, T, self.h, self.dh).transpose(1, 2)  # [B, H, T, dh]
        scale = 1.0 / math.sqrt(self.dh)
        if self.mode == "full" or n == 0:
            logits = torch.einsum("bhtd,bhncd->bhtnc", q, keys) * scale
            ok = visible[:, None, :, :, None] & mem_valid[:, None, None]
            logits = logits.masked_fill(~ok, NEG).reshape(B, self.h, T, n * c)
            p = torch.softmax(logits, -1) * ok.reshape(B, 1, T, n * c).any(-1, keepdim=True)
            out = torch.einsum("bhts,bhsd->bhtd", p, values.reshape(B, self.h, n * c, self.dh))
        else:
            k = min(self.reads(n), n)
            rq = q if self.relevance == "tied" else self.rq(x).view(B, T, self.h, self.dh).transpose(1, 2)
            w, idx = self.select(rq, summary, visible)
            if self.impl == "dense" or (self.impl == "auto" and n <= 4 * k):
                # a small memory (training episodes): scoring every stored step densely and zeroing the
                # chunks not chosen is the same sum, and much faster on CPU than gathering k chunks per query
                dense = torch.zeros(B, self.h, T, n, dtype=w.dtype, device=w.device).scatter(3, idx, w)
                inner = torch.einsum("bhtd,bhncd->bhtnc", q, keys) * scale
                p = torch.softmax(inner.masked_fill(~mem_valid[:, None, None], NEG), -1)
                pw = (dense[..., None] * p).reshape(B, self.h, T, n * c)
                out = pw @ values.reshape(B, self.h, n * c, self.dh)
                return self.o(out.transpose(1, 2).reshape(B, T, self.h * self.dh))
            bi = torch.arange(B, device=x.device)[:, None, None, None]
            hi = torch.arange(self.h, device=x.device)[None, :, None, None]
            k_sel, v_sel = keys[bi, hi, idx], values[bi, hi, idx]  # [B, H, T, k, c, dh]
            step_ok = mem_valid[torch.arange(B, device=x.device)[:, None, None], idx.flatten(2)]  # [B, H, T*k, c]
            step_ok = step_ok.view(B, self.h, T, k, c)
            inner = torch.einsum("bhtd,bhtkcd->bhtkc", q, k_sel) * scale
            p = torch.softmax(inner.masked_fill(~step_ok, NEG), -1)
            out = torch.einsum("bhtkc,bhtkcd->bhtd", w[..., None] * p, v_sel)
        return self.o(out.transpose(1, 2).reshape(B, T, self.h * self.dh))


def _visible(B: int, T: int, n: int, chunk: int, mem_valid: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """[B, T, n]: chunk j is readable at step t iff it lies wholly before t's chunk and holds a valid step."""
    t_chunk = (torch.arange(T, device=mem_valid.device) + offset) // chunk
    before = torch.arange(n, device=mem_valid.device)[None, :] < t_chunk[:, None]
    return before[None] & mem_valid.any(-1)[:, None, :]


class Block(nn.Module):
    """Pre-norm block: causal self-attention over the current chunk, attention to the memory of earlier
    chunks (the memory holds this block's normalised inputs), MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.local = nn.MultiheadAttention(d, cfg.heads, batch_first=True, bias=False)
        self.memory = MemoryAttention(d, cfg.heads, cfg.chunk, cfg.k, cfg.attention, cfg.train_k, cfg.relevance,
                                      cfg.explore)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp * d), nn.GELU(), nn.Linear(cfg.mlp * d, d))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """X [B, T, d] (T a multiple of chunk), VALID [B, T] (a prefix of each row)."""
        B, T, d = x.shape
        c = self.cfg.chunk
        n = T // c
        u = self.ln1(x)
        chunks = u.reshape(B * n, c, d)
        causal = torch.ones(c, c, dtype=torch.bool, device=x.device).triu(1)
        local, _ = self.local(chunks, chunks, chunks, attn_mask=causal, need_weights=False)
        h = x + local.reshape(B, T, d)
        mem_valid = valid.view(B, n, c)
        keys, values, summary = self.memory.keys_values(u.view(B, n, c, d), mem_valid)
        vis = _visible(B, T, n, c, mem_valid)
        h = h + self.memory.attend(self.ln2(h), keys, values, summary, mem_valid, vis)
        return h + self.mlp(self.ln3(h))


class MemoryTransformer(nn.Module):
    """The layer stack; `cfg.attention` chooses HTM or full attention over the memory."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.inp = InputEncoder(cfg, cfg.d_model, positions=True)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, 1 + cfg.names)

    def forward(self, batch: dict) -> torch.Tensor:
        """Batch of episodes → per-step outputs [B, T, 1 + names] (match score, name logits)."""
        x = self.inp(batch["emb"], batch["has_emb"], batch["name"], batch["phase"])
        B, T, d = x.shape
        c = self.cfg.chunk
        pad = (-T) % c
        valid = batch.get("valid", torch.ones(B, T, dtype=torch.bool, device=x.device))
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
            valid = F.pad(valid, (0, pad), value=False)
        for block in self.blocks:
            x = block(x, valid)
        return self.head(self.ln(x[:, :T]))

    # ------------------------------------------------------------ streaming

    def start(self, batch_size: int, device: torch.device | str = "cpu") -> list[MemoryState]:
        return [MemoryState(batch_size, self.cfg, device) for _ in self.blocks]

    def step(self, batch: dict, t: int, states: list[MemoryState]) -> torch.Tensor:
        """One step (index T of the episode) for every episode of the batch → [B, 1 + names]."""
        sl = slice(t, t + 1)
        x = self.inp(batch["emb"][:, sl], batch["has_emb"][:, sl], batch["name"][:, sl], batch["phase"][:, sl], offset=t)
        for block, state in zip(self.blocks, states, strict=True):
            x = state.step(block, x)
        return self.head(self.ln(x[:, 0]))

    def stream(self, batch: dict) -> torch.Tensor:
        states = self.start(batch["emb"].shape[0], batch["emb"].device)
        return torch.stack([self.step(batch, t, states) for t in range(batch["emb"].shape[1])], 1)


class MemoryState:
    """One block's memory while streaming: an accumulator of the current chunk's (normalised) inputs, and
    the committed chunks' keys, values and summaries, written when the accumulator fills (into buffers that
    double when full, so a commit costs one chunk, not the whole memory). Every episode of the batch
    advances in lockstep, so one step counter serves them all."""

    def __init__(self, batch_size: int, cfg: ModelConfig, device) -> None:
        self.c, self.h, self.dh = cfg.chunk, cfg.heads, cfg.d_model // cfg.heads
        self.acc = torch.zeros(batch_size, cfg.chunk, cfg.d_model, device=device)
        self.filled = 0
        self.chunks = 0
        self._keys = self._values = self._summaries = None

    def reserve(self, chunks: int) -> None:
        """Room for CHUNKS committed chunks (the benchmark fills a memory without stepping through it)."""
        if self._keys is not None and self._keys.shape[2] >= chunks:
            return
        B, dev = self.acc.shape[0], self.acc.device
        keys = torch.zeros(B, self.h, chunks, self.c, self.dh, device=dev)
        values = torch.zeros_like(keys)
        summaries = torch.zeros(B, self.h, chunks, self.dh, device=dev)
        if self._keys is not None:
            n = self.chunks
            keys[:, :, :n], values[:, :, :n], summaries[:, :, :n] = self.memory()
        self._keys, self._values, self._summaries = keys, values, summaries

    def memory(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.chunks
        return self._keys[:, :, :n], self._values[:, :, :n], self._summaries[:, :, :n]

    def write(self, keys: torch.Tensor, values: torch.Tensor, summaries: torch.Tensor | None) -> None:
        """Append committed chunks: keys, values [B, H, m, c, dh], summaries [B, H, m, dh] (None: full attention)."""
        m = keys.shape[2]
        if self._keys is None or self.chunks + m > self._keys.shape[2]:
            self.reserve(max(2 * (self.chunks + m), 8))
        sl = slice(self.chunks, self.chunks + m)
        self._keys[:, :, sl], self._values[:, :, sl] = keys, values
        if summaries is not None:
            self._summaries[:, :, sl] = summaries
        self.chunks += m

    def commit(self, block: Block) -> None:
        B = self.acc.shape[0]
        ok = torch.ones(B, 1, self.c, dtype=torch.bool, device=self.acc.device)
        self.write(*block.memory.keys_values(self.acc[:, None], ok))
        self.acc = torch.zeros_like(self.acc)
        self.filled = 0

    def step(self, block: Block, x: torch.Tensor) -> torch.Tensor:
        """X [B, 1, d] → the block's output for this step."""
        B = x.shape[0]
        u = block.ln1(x)
        self.acc[:, self.filled] = u[:, 0]
        ctx = self.acc[:, : self.filled + 1]
        local, _ = block.local(u, ctx, ctx, need_weights=False)
        h = x + local
        if self.chunks:
            keys, values, summary = self.memory()
            n = self.chunks
            ok = torch.ones(B, n, self.c, dtype=torch.bool, device=x.device)
            vis = torch.ones(B, 1, n, dtype=torch.bool, device=x.device)
            h = h + block.memory.attend(block.ln2(h), keys, values, summary, ok, vis)
        out = h + block.mlp(block.ln3(h))
        self.filled += 1
        if self.filled == self.c:
            self.commit(block)
        return out


class LSTMModel(nn.Module):
    """The recurrent baseline: the same input encoder (no positions), an LSTM, the same head."""

    def __init__(self, cfg: ModelConfig, hidden: int) -> None:
        super().__init__()
        self.cfg, self.hidden = cfg, hidden
        self.inp = InputEncoder(cfg, cfg.d_model, positions=False)
        self.lstm = nn.LSTM(cfg.d_model, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1 + cfg.names)

    def forward(self, batch: dict) -> torch.Tensor:
        x = self.inp(batch["emb"], batch["has_emb"], batch["name"], batch["phase"])
        return self.head(self.lstm(x)[0])


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lstm_hidden_for(cfg: ModelConfig, target: int) -> int:
    """The LSTM width whose model has the parameter count closest to TARGET."""
    def count(h: int) -> int:
        return num_parameters(LSTMModel(cfg, h))

    lo, hi = 1, 4096
    while lo < hi:  # smallest h with count(h) >= target
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if count(mid) < target else (lo, mid)
    return min((h for h in (lo - 1, lo) if h >= 1), key=lambda h: abs(count(h) - target))


def build_model(kind: str, cfg: ModelConfig) -> tuple[nn.Module, dict]:
    """KIND `htm` | `full` | `lstm` → (model, its description); the LSTM matches the transformers' size."""
    if kind in ("htm", "full"):
        m = MemoryTransformer(ModelConfig(**{**cfg.to_dict(), "attention": kind}))
        return m, {"kind": kind, "config": m.cfg.to_dict(), "parameters": num_parameters(m)}
    if kind == "lstm":
        target = num_parameters(MemoryTransformer(cfg))
        h = lstm_hidden_for(cfg, target)
        m = LSTMModel(cfg, h)
        return m, {"kind": kind, "config": cfg.to_dict(), "hidden": h, "parameters": num_parameters(m)}
    raise ValueError(f"unknown model kind {kind!r}; expected htm, full or lstm")
