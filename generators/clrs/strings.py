"""CLRS-30 string matching: the naive matcher and Knuth-Morris-Pratt (CLRS3 ch. 32).

Nodes: the haystack T first, then the needle P (`string` = 1 on the needle), symbols one-hot over a 4-letter
alphabet. Both matchers stop at the first match, as the benchmark's do; `match` marks the haystack node where it
starts (the needle's first node if there is none, which the sampler rules out by planting the needle).
"""

from __future__ import annotations

import numpy as np

from generators.clrs import register
from generators.clrs.probing import Probes, Trajectory, categorical, one_hot
from generators.clrs.sampling import Sampling, needle_length
from generators.clrs.sorting import predecessors
from generators.clrs.specs import Location, Stage, Type

_IN, _OUT, _H = Stage.INPUT, Stage.OUTPUT, Stage.HINT
_NODE, _GRAPH = Location.NODE, Location.GRAPH

ALPHABET = 4


def string_layout(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two strings as one node set: (`string` mask, `pos`, one-hot `key`, predecessor chains within each string)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    na, nb = len(a), len(b)
    string = np.concatenate([np.zeros(na), np.ones(nb)])
    pos = np.concatenate([np.arange(na) / na, np.arange(nb) / nb])
    key = categorical(np.concatenate([a, b]), ALPHABET)
    chain = np.concatenate([predecessors(np.arange(na)), na + predecessors(np.arange(nb))])
    return string, pos, key, chain


def needle_split(n: int, rng: np.random.Generator | None = None, inputs: str = "benchmark") -> tuple[int, int]:
    """(haystack, needle) lengths for n nodes: the benchmark's needle of n // 5 symbols (1 below 5 nodes), or
    for the training inputs a needle of 1..8 symbols (at most n // 2)."""
    if n < 2:
        raise ValueError("string matching needs at least 2 nodes")
    m = needle_length(n, rng, inputs)
    return n - m, m


def sample_haystack(n: int, rng: np.random.Generator, inputs: str = "benchmark") -> tuple[np.ndarray, np.ndarray]:
    """A random haystack with a random needle planted in it (never at the very end, as in the benchmark)."""
    h, m = needle_split(n, rng, inputs)
    needle = rng.integers(0, ALPHABET, size=m)
    hay = rng.integers(0, ALPHABET, size=h)
    at = int(rng.integers(0, max(1, h - m)))
    hay[at:at + m] = needle
    return hay, needle


_MATCH_SPEC = {
    "string": (_IN, _NODE, Type.MASK),
    "pos": (_IN, _NODE, Type.SCALAR),
    "key": (_IN, _NODE, Type.CATEGORICAL),
    "match": (_OUT, _NODE, Type.MASK_ONE),
    "pred_h": (_H, _NODE, Type.POINTER),
}


def _start(name: str, t: np.ndarray, p: np.ndarray) -> tuple[Probes, np.ndarray]:
    pr = Probes(name, len(t) + len(p))
    string, pos, key, chain = string_layout(t, p)
    pr.input("string", string)
    pr.input("pos", pos)
    pr.input("key", key)
    return pr, chain


@register("naive_string_matcher", "strings", {
    **_MATCH_SPEC,
    "s": (_H, _NODE, Type.MASK_ONE),
    "i": (_H, _NODE, Type.MASK_ONE),
    "j": (_H, _NODE, Type.MASK_ONE),
})
def naive_string_matcher(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """NAIVE-STRING-MATCHER: one step per shift `s` tried and per matched symbol (`i` in T, `j` in P)."""
    return run_naive_string_matcher(*sample_haystack(n, rng, how.inputs))


def run_naive_string_matcher(t, p) -> Trajectory:
    t, p = np.asarray(t, dtype=np.int64), np.asarray(p, dtype=np.int64)
    h, m = len(t), len(p)
    n = h + m
    pr, chain = _start("naive_string_matcher", t, p)
    found = h  # the needle's head when nothing matches
    for s in range(h - m + 1):
        j = 0
        pr.hint(pred_h=chain, s=one_hot(s, n), i=one_hot(s, n), j=one_hot(h, n))
        while t[s + j] == p[j]:
            if j == m - 1:
                found = s
                break
            j += 1
            pr.hint(pred_h=chain, s=one_hot(s, n), i=one_hot(s + j, n), j=one_hot(h + j, n))
        if found != h:
            break
    if h - m + 1 <= 0:  # needle longer than haystack: nothing to try, record the initial state
        pr.hint(pred_h=chain, s=one_hot(0, n), i=one_hot(0, n), j=one_hot(h, n))
    pr.output("match", one_hot(found, n))
    return pr.finish()


@register("kmp_matcher", "strings", {
    **_MATCH_SPEC,
    "pi": (_H, _NODE, Type.POINTER),
    "is_reset": (_H, _NODE, Type.MASK),
    "k": (_H, _NODE, Type.MASK_ONE),
    "k_reset": (_H, _GRAPH, Type.MASK),
    "q": (_H, _NODE, Type.MASK_ONE),
    "q_reset": (_H, _GRAPH, Type.MASK),
    "s": (_H, _NODE, Type.MASK_ONE),
    "i": (_H, _NODE, Type.MASK_ONE),
    "phase": (_H, _GRAPH, Type.MASK),
})
def kmp_matcher(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """COMPUTE-PREFIX-FUNCTION (phase 0) then KMP-MATCHER (phase 1), one step per loop iteration and per fallback.

    A matched length L > 0 is shown as the needle node L - 1; L = 0 as the needle's head with the `*_reset` flag
    set. `pi` points each needle node q to the last node of P[0..q]'s longest proper border (`is_reset` where that
    border is empty); haystack nodes point to themselves. `s` is the shift a match ending at `i` would start at.
    """
    return run_kmp_matcher(*sample_haystack(n, rng, how.inputs))


def run_kmp_matcher(t, p) -> Trajectory:
    t, p = np.asarray(t, dtype=np.int64), np.asarray(p, dtype=np.int64)
    h, m = len(t), len(p)
    n = h + m
    pr, chain = _start("kmp_matcher", t, p)
    border = np.zeros(m, np.int64)  # the prefix function, as lengths
    done = np.zeros(m, bool)
    done[0] = True

    def node(length: int) -> int:
        return h + max(length - 1, 0)

    def push(k: int, q_node: int, q_len: int, s: int, i: int, phase: int) -> None:
        pi = np.arange(n)
        pi[h:] = h + np.where(done & (border > 0), border - 1, 0)
        pi[h:][~done] = h + np.arange(m)[~done]
        is_reset = np.concatenate([np.zeros(h), done & (border == 0)])
        pr.hint(pred_h=chain, pi=pi, is_reset=is_reset, k=one_hot(node(k), n), k_reset=float(k == 0),
                q=one_hot(q_node, n), q_reset=float(q_len == 0), s=one_hot(s, n), i=one_hot(i, n), phase=float(phase))

    k = 0
    push(k, h + (1 if m > 1 else 0), 0, 0, 0, 0)
    for q in range(1, m):
        while k > 0 and p[k] != p[q]:
            k = int(border[k - 1])
            push(k, h + q, 0, 0, 0, 0)
        if p[k] == p[q]:
            k += 1
        border[q], done[q] = k, True
        push(k, h + q, 0, 0, 0, 0)
    found, q_len = h, 0
    for i in range(h):
        s = max(0, i - m + 1)
        push(k, node(q_len), q_len, s, i, 1)
        while q_len > 0 and p[q_len] != t[i]:
            q_len = int(border[q_len - 1])
            push(k, node(q_len), q_len, s, i, 1)
        if p[q_len] == t[i]:
            if q_len == m - 1:
                found = s
                break
            q_len += 1
    pr.output("match", one_hot(found, n))
    return pr.finish()
