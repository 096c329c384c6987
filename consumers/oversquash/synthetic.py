"""The paper's synthetic check: one attention layer (d = 64, Gaussian queries/keys/values) over a few random
prefix tokens followed by a run of n copies of one token, for five positional encodings. The last-token
output for n and n+1 repeated tokens converges (distance -> 0) under all of them: representational collapse.

As in the paper, queries, keys and values are Gaussian vectors per token (a repeated token has the same
q/k/v at every position) and the positional encoding acts on the attention scores: sinusoidal and learned
absolute vectors are added to q and k, RoPE rotates q and k, ALiBi adds a distance bias. The layer output is
the attention output alone (no residual, no MLP).

`mode="input"` is a GPT-2-style variant reported alongside: Gaussian token vectors, the absolute encoding
added to the *input* before Gaussian W_q/W_k/W_v, so the values carry position too. There the last
token's query and the values differ between n and n+1 at every length and the absolute encodings
(sinusoidal, learned) need not collapse.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ENCODINGS = ("none", "sinusoidal", "rope", "alibi", "learned")


def _sinusoidal(pos: torch.Tensor, d: int) -> torch.Tensor:
    i = torch.arange(0, d, 2, dtype=torch.float64)
    ang = pos[:, None].double() / (10000 ** (i / d))[None, :]
    pe = torch.zeros(len(pos), d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(ang), torch.cos(ang)
    return pe


def _rope(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1]
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = (pos[:, None].double() * inv[None, :]).to(x.dtype)
    c, s = torch.cos(ang), torch.sin(ang)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2], out[..., 1::2] = x1 * c - x2 * s, x1 * s + x2 * c
    return out


class OneLayer:
    """Gaussian single-head attention layer and token/position tables, fixed by SEED."""

    def __init__(self, d: int = 64, prefix: int = 4, max_len: int = 70000, seed: int = 0, alibi_slope: float = 0.5):
        g = torch.Generator().manual_seed(seed)
        self.d, self.alibi_slope = d, alibi_slope
        self.wq, self.wk, self.wv = (torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d) for _ in range(3))
        self.prefix = torch.randn(prefix, d, generator=g, dtype=torch.float64)
        self.token = torch.randn(d, generator=g, dtype=torch.float64)
        # learned absolute table: i.i.d. Gaussian with the same RMS per entry as the sinusoidal one (1/sqrt 2)
        self.learned = torch.randn(max_len, d, generator=g, dtype=torch.float64) / math.sqrt(2)
        self.qkv = [torch.randn(prefix, d, generator=g, dtype=torch.float64) for _ in range(3)]
        self.qkv_tok = [torch.randn(d, generator=g, dtype=torch.float64) for _ in range(3)]

    def last_output(self, n: int, encoding: str, dtype: torch.dtype = torch.float64, mode: str = "qk") -> torch.Tensor:
        """Output at the last position of `prefix + token * n`, computed in DTYPE throughout."""
        L = len(self.prefix) + n
        pos = torch.arange(L)
        pe = _sinusoidal(pos, self.d) if encoding == "sinusoidal" else self.learned[:L] if encoding == "learned" else None
        if mode == "qk":
            q = self.qkv[0][-1:] if n == 0 else self.qkv_tok[0][None]
            k = torch.cat([self.qkv[1], self.qkv_tok[1][None].expand(n, -1)])
            v = torch.cat([self.qkv[2], self.qkv_tok[2][None].expand(n, -1)])
            if pe is not None:
                q, k = q + pe[-1:], k + pe
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        else:
            x = torch.cat([self.prefix, self.token[None].expand(n, -1)])
            if pe is not None:
                x = x + pe
            x = x.to(dtype)
            wq, wk, wv = (w.to(dtype) for w in (self.wq, self.wk, self.wv))
            q, k, v = x[-1:] @ wq, x @ wk, x @ wv
        if encoding == "rope":
            q, k = _rope(q, pos[-1:]), _rope(k, pos)
        logits = (q @ k.T)[0] / math.sqrt(self.d)
        if encoding == "alibi":
            logits = logits - (self.alibi_slope * (L - 1 - pos)).to(dtype)
        w = torch.softmax(logits.float() if dtype == torch.float16 else logits, dim=-1).to(dtype)
        return w @ v


def synthetic_check(ns: list[int] | None = None, d: int = 64, seed: int = 0, encodings=ENCODINGS, mode: str = "qk") -> dict:
    """Distance between last-token outputs for n vs n+1 repeated tokens, per encoding, in float64 and bfloat16.

    `collapsed` is true when the median distance over the largest quarter of NS is under a tenth of the
    median over the smallest quarter (single points are noisy with a random learned table)."""
    ns = ns or [int(v) for v in np.unique(np.geomspace(1, 16384, 29).round().astype(int))]
    layer = OneLayer(d=d, max_len=max(ns) + 16, seed=seed)
    q = max(len(ns) // 4, 1)
    out = {"d": d, "seed": seed, "mode": mode, "n": ns, "prefix_tokens": len(layer.prefix), "encodings": {}}
    for enc in encodings:
        l2, linf, bf = [], [], []
        for n in ns:
            a, b = layer.last_output(n, enc, mode=mode), layer.last_output(n + 1, enc, mode=mode)
            l2.append(float((a - b).norm()))
            linf.append(float((a - b).abs().max()))
            ab, bb = layer.last_output(n, enc, torch.bfloat16, mode), layer.last_output(n + 1, enc, torch.bfloat16, mode)
            bf.append(float((ab.float() - bb.float()).abs().max()))
        first = next((n for n, v in zip(ns, bf) if v == 0.0), None)
        stable = next((n for i, n in enumerate(ns) if all(v == 0.0 for v in bf[i:])), None)
        out["encodings"][enc] = {
            "l2": l2, "linf": linf, "bf16_linf": bf,
            "ratio_last_first": l2[-1] / l2[0] if l2[0] > 0 else 0.0,
            "spearman": _spearman(ns, l2),
            "collapsed": bool(np.median(l2[-q:]) < np.median(l2[:q]) / 10),
            "bf16_identical_n": first,
            "bf16_identical_from_n": stable,
        }
    return out


def _spearman(x, y) -> float | None:
    """Spearman's rank correlation (scipy), or None where either side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(np.asarray(x, dtype=float)) == 0 or np.ptp(np.asarray(y, dtype=float)) == 0:
        return None
    return float(spearmanr(x, y).statistic)
