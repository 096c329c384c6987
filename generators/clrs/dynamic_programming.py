"""CLRS-30 dynamic programming: matrix-chain order, LCS length and optimal BST (CLRS3 ch. 15).

Tables are edge features `[N, N]`. As in the benchmark, matrix-chain order and LCS fill their tables by
synchronous rounds (every cell recomputed from the previous round's table, one step per round, until nothing
changes), and optimal BST by the book's loop over subproblem size (one step per size).
"""

from __future__ import annotations

import numpy as np

from generators.clrs import register
from generators.clrs.probing import Probes, Trajectory, categorical
from generators.clrs.sampling import Sampling
from generators.clrs.sorting import node_positions, predecessors
from generators.clrs.specs import Location, Stage, Type
from generators.clrs.strings import ALPHABET, string_layout

_IN, _OUT, _H = Stage.INPUT, Stage.OUTPUT, Stage.HINT
_NODE, _EDGE = Location.NODE, Location.EDGE


@register("matrix_chain_order", "dynamic_programming", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "p": (_IN, _NODE, Type.SCALAR),
    "s": (_OUT, _EDGE, Type.POINTER),
    "pred_h": (_H, _NODE, Type.POINTER),
    "m": (_H, _EDGE, Type.SCALAR),
    "s_h": (_H, _EDGE, Type.POINTER),
    "msk": (_H, _EDGE, Type.MASK),
})
def matrix_chain_order(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """MATRIX-CHAIN-ORDER for matrices A_1..A_{n-1}, A_i of shape p[i-1] x p[i], p from U[0, 1).

    Cell (i, j), 1 <= i <= j < n: `m` the cost so far, `s_h` the split k (A_i..A_k times A_k+1..A_j), `msk`
    whether the cell has a value yet. Row and column 0 stay empty.
    """
    return run_matrix_chain_order(rng.uniform(0.0, 1.0, size=n))


def run_matrix_chain_order(p) -> Trajectory:
    p = np.asarray(p, dtype=np.float64)
    n = len(p)
    pr = Probes("matrix_chain_order", n)
    pr.input("pos", node_positions(n))
    pr.input("p", p)
    chain = predecessors(np.arange(n))
    m = np.zeros((n, n))
    s = np.zeros((n, n), np.int64)
    msk = np.zeros((n, n), bool)
    idx = np.arange(1, n)
    msk[idx, idx] = True
    i_, j_, k_ = np.ogrid[:n, :n, :n]  # axes (i, j, k)
    splits = (i_ >= 1) & (i_ <= k_) & (k_ < j_)  # k splits chain i..j
    cost = p[np.maximum(i_ - 1, 0)] * p[k_] * p[j_]

    def left_right(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """t[i, k] and t[k + 1, j], both broadcast to (i, j, k)."""
        below = np.concatenate([t[1:], np.zeros_like(t[:1])])  # below[k, j] = t[k + 1, j]
        return t[:, None, :], below.T[None, :, :]

    while True:
        pr.hint(pred_h=chain, m=m, s_h=s, msk=msk)
        (ml, mr), (kl, kr) = left_right(m), left_right(msk)
        ok = splits & kl & kr
        cand = np.where(ok, ml + mr + cost, np.inf)
        best_k = cand.argmin(-1)
        best = np.take_along_axis(cand, best_k[..., None], -1)[..., 0]
        update = ok.any(-1) & (~msk | (best < m))
        new_m = np.where(update, best, m)
        s = np.where(update, best_k, s)
        msk = msk | ok.any(-1)
        if np.array_equal(new_m, m):
            break
        m = new_m
    pr.output("s", s)
    return pr.finish()


@register("lcs_length", "dynamic_programming", {
    "string": (_IN, _NODE, Type.MASK),
    "pos": (_IN, _NODE, Type.SCALAR),
    "key": (_IN, _NODE, Type.CATEGORICAL),
    "b": (_OUT, _EDGE, Type.CATEGORICAL),
    "pred_h": (_H, _NODE, Type.POINTER),
    "b_h": (_H, _EDGE, Type.CATEGORICAL),
    "c": (_H, _EDGE, Type.SCALAR),
})
def lcs_length(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """LCS-LENGTH of x (n - n//2 symbols) and y (n//2 symbols) over a 4-letter alphabet (the benchmark's split).

    Nodes: x first, then y. Cell (i, |x| + j) holds `c` (LCS length of x[:i+1], y[:j+1]) and `b`, one-hot over
    {0: diagonal, 1: up, 2: left, 3: blank}. Every cell outside the x-by-y block is blank: the benchmark marks
    it -1 in the blank class ("masked": no decision there, not scored), the textbook variant one-hot blank.
    """
    if n < 2:
        raise ValueError("lcs_length needs at least 2 nodes (one symbol per string)")
    ny = n // 2
    x = rng.integers(0, ALPHABET, size=n - ny)
    y = rng.integers(0, ALPHABET, size=ny)
    return run_lcs_length(x, y, how.variant)


def _pair_block(block: np.ndarray, nx: int, n: int) -> np.ndarray:
    out = np.zeros((n, n), np.float32)
    out[:nx, nx:] = block
    return out


def _pair_block_cat(block: np.ndarray, nx: int, n: int, masked: bool) -> np.ndarray:
    out = np.full((n, n), 3, np.int64)
    out[:nx, nx:] = block
    cat = categorical(out, 4)
    if masked:  # the benchmark's blank cells: [0, 0, 0, -1]
        cat[..., 3] *= -1
    return cat


def run_lcs_length(x, y, variant: str = "benchmark") -> Trajectory:
    x, y = np.asarray(x, dtype=np.int64), np.asarray(y, dtype=np.int64)
    nx, ny = len(x), len(y)
    n = nx + ny
    masked = variant == "benchmark"
    pr = Probes("lcs_length", n)
    string, pos, key, chain = string_layout(x, y)
    pr.input("string", string)
    pr.input("pos", pos)
    pr.input("key", key)
    eq = x[:, None] == y[None, :]
    c = np.zeros((nx, ny))
    b = np.zeros((nx, ny), np.int64)
    # First column and first row, against the book's all-zero row/column 0.
    for i in range(nx):
        up = c[i - 1, 0] if i > 0 else 0.0
        c[i, 0], b[i, 0] = (1.0, 0) if eq[i, 0] else (up, 1)
    for j in range(1, ny):
        left = c[0, j - 1]
        if eq[0, j]:
            c[0, j], b[0, j] = 1.0, 0
        elif 0.0 >= left:
            c[0, j], b[0, j] = 0.0, 1
        else:
            c[0, j], b[0, j] = left, 2
    while True:
        pr.hint(pred_h=chain, b_h=_pair_block_cat(b, nx, n, masked), c=_pair_block(c, nx, n))
        new_c = c.copy()
        diag, up, left = c[:-1, :-1] + 1, c[:-1, 1:], c[1:, :-1]
        inner = eq[1:, 1:]
        new_c[1:, 1:] = np.where(inner, diag, np.maximum(up, left))
        b[1:, 1:] = np.where(inner, 0, np.where(up >= left, 1, 2))
        if np.array_equal(new_c, c):
            break
        c = new_c
    pr.output("b", _pair_block_cat(b, nx, n, masked))
    return pr.finish()


@register("optimal_bst", "dynamic_programming", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "p": (_IN, _NODE, Type.SCALAR),
    "q": (_IN, _NODE, Type.SCALAR),
    "root": (_OUT, _EDGE, Type.POINTER),
    "pred_h": (_H, _NODE, Type.POINTER),
    "root_h": (_H, _EDGE, Type.POINTER),
    "e": (_H, _EDGE, Type.SCALAR),
    "w": (_H, _EDGE, Type.SCALAR),
    "msk": (_H, _EDGE, Type.MASK),
})
def optimal_bst(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """OPTIMAL-BST over n keys (the benchmark's length n; n + 1 nodes), or n - 1 keys in the textbook variant
    (n nodes). The nodes carry q (dummy keys) and p (keys, 0 on the last node).

    The 2k + 1 probabilities of k keys are U[0, 1) draws normalised to sum 1, as in the benchmark. Cell (i, j),
    i <= j, is the subtree over keys i..j-1 and dummies i..j: `e` expected cost, `w` weight, `root_h` its root.
    """
    keys = n if how.benchmark else n - 1
    arr = rng.uniform(0.0, 1.0, size=2 * keys + 1)
    arr /= arr.sum()
    return run_optimal_bst(arr[:keys], arr[keys:])


def run_optimal_bst(p, q) -> Trajectory:
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    n = len(q)
    if len(p) != n - 1:
        raise ValueError("optimal_bst needs len(q) == len(p) + 1")
    pr = Probes("optimal_bst", n)
    pr.input("pos", node_positions(n))
    pr.input("p", np.append(p, 0.0))
    pr.input("q", q)
    chain = predecessors(np.arange(n))
    e = np.diag(q)
    w = np.diag(q)
    root = np.zeros((n, n), np.int64)
    msk = np.eye(n, dtype=bool)
    pr.hint(pred_h=chain, root_h=root, e=e, w=w, msk=msk)
    for size in range(1, n):
        for i in range(n - size):
            j = i + size
            w[i, j] = w[i, j - 1] + p[j - 1] + q[j]
            r = np.arange(i, j)
            cost = e[i, r] + e[r + 1, j] + w[i, j]
            best = int(cost.argmin())
            e[i, j], root[i, j] = cost[best], i + best
            msk[i, j] = True
        pr.hint(pred_h=chain, root_h=root, e=e, w=w, msk=msk)
    pr.output("root", root)
    return pr.finish()
