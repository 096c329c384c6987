"""CLRS-30 searching: minimum, binary search and quickselect (CLRS3 ch. 2, 9)."""

from __future__ import annotations

import numpy as np

from generators.clrs import register
from generators.clrs.probing import Probes, Trajectory, one_hot
from generators.clrs.sampling import Sampling
from generators.clrs.sorting import node_positions, partition_steps, predecessors, uniform_keys
from generators.clrs.specs import Location, Stage, Type

_IN, _OUT, _H = Stage.INPUT, Stage.OUTPUT, Stage.HINT
_NODE, _GRAPH = Location.NODE, Location.GRAPH


@register("minimum", "searching", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "key": (_IN, _NODE, Type.SCALAR),
    "min": (_OUT, _NODE, Type.MASK_ONE),
    "pred_h": (_H, _NODE, Type.POINTER),
    "min_h": (_H, _NODE, Type.MASK_ONE),
    "i": (_H, _NODE, Type.MASK_ONE),
})
def minimum(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """MINIMUM: one step per scanned element; `min_h` is the smallest so far (the first one on ties)."""
    return run_minimum(uniform_keys(n, rng))


def run_minimum(key) -> Trajectory:
    key = np.asarray(key, dtype=np.float64)
    n = len(key)
    pr = Probes("minimum", n)
    pr.input("pos", node_positions(n))
    pr.input("key", key)
    chain = predecessors(np.arange(n))
    best = 0
    pr.hint(pred_h=chain, min_h=one_hot(0, n), i=one_hot(0, n))
    for i in range(1, n):
        if key[i] < key[best]:
            best = i
        pr.hint(pred_h=chain, min_h=one_hot(best, n), i=one_hot(i, n))
    pr.output("min", one_hot(best, n))
    return pr.finish()


@register("binary_search", "searching", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "key": (_IN, _NODE, Type.SCALAR),
    "target": (_IN, _GRAPH, Type.SCALAR),
    "return": (_OUT, _NODE, Type.MASK_ONE),
    "pred_h": (_H, _NODE, Type.POINTER),
    "low": (_H, _NODE, Type.MASK_ONE),
    "high": (_H, _NODE, Type.MASK_ONE),
    "mid": (_H, _NODE, Type.MASK_ONE),
})
def binary_search(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Binary search for the first key >= target in sorted U[0, 1) keys (the last node if none is).

    The benchmark's input: sorted keys and a target, all from U[0, 1); one step per halving.
    """
    key = np.sort(uniform_keys(n, rng))
    target = float(rng.uniform(0.0, 1.0))
    return run_binary_search(key, target)


def run_binary_search(key, target: float) -> Trajectory:
    key = np.asarray(key, dtype=np.float64)
    n = len(key)
    pr = Probes("binary_search", n)
    pr.input("pos", node_positions(n))
    pr.input("key", key)
    pr.input("target", target)
    chain = predecessors(np.arange(n))
    low, high = 0, n - 1
    pr.hint(pred_h=chain, low=one_hot(low, n), high=one_hot(high, n), mid=one_hot((low + high) // 2, n))
    while low < high:
        mid = (low + high) // 2
        if target <= key[mid]:
            high = mid
        else:
            low = mid + 1
        pr.hint(pred_h=chain, low=one_hot(low, n), high=one_hot(high, n), mid=one_hot((low + high) // 2, n))
    pr.output("return", one_hot(high, n))
    return pr.finish()


@register("quickselect", "searching", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "key": (_IN, _NODE, Type.SCALAR),
    "median": (_OUT, _NODE, Type.MASK_ONE),
    "pred_h": (_H, _NODE, Type.POINTER),
    "p": (_H, _NODE, Type.MASK_ONE),
    "r": (_H, _NODE, Type.MASK_ONE),
    "i": (_H, _NODE, Type.MASK_ONE),
    "j": (_H, _NODE, Type.MASK_ONE),
    "i_rank": (_H, _GRAPH, Type.SCALAR),
    "target": (_H, _GRAPH, Type.SCALAR),
    "pivot": (_H, _NODE, Type.MASK_ONE),
})
def quickselect(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """SELECT (CLRS RANDOMIZED-SELECT with the last element as pivot) of the element of rank n // 2.

    Steps as in quicksort's PARTITION; `pivot` is the pivot's node, `target` the rank sought inside the
    current subarray and `i_rank` the low side's end, both divided by n. The benchmark's `i_rank` is the
    end's whole-array position on the loop steps and its rank within the subarray on the step that places
    the pivot; the textbook variant uses the rank within the subarray throughout.
    """
    return run_quickselect(uniform_keys(n, rng), how.variant)


def run_quickselect(key, variant: str = "benchmark") -> Trajectory:
    key = np.asarray(key, dtype=np.float64)
    n = len(key)
    pr = Probes("quickselect", n)
    pr.input("pos", node_positions(n))
    pr.input("key", key)
    order = list(range(n))
    a = key.copy()
    p, r, rank = 0, n - 1, n // 2

    def push(p_: int, r_: int, i: int, j: int) -> None:
        placed = j == r_  # the step after the pivot moved to position i; the loop steps have j < r
        i_rank = i if variant == "benchmark" and not placed else i - p_
        pr.hint(pred_h=predecessors(order), p=one_hot(order[p_], n), r=one_hot(order[r_], n), i=one_hot(order[i], n),
                j=one_hot(order[j], n), i_rank=i_rank / n, target=rank / n,
                pivot=one_hot(order[i] if placed else order[r_], n))

    while True:
        q = partition_steps(a, order, p, r, push)
        k = q - p
        if rank == k:
            break
        if rank < k:
            r = q - 1
        else:
            p, rank = q + 1, rank - k - 1
    pr.output("median", one_hot(order[q], n))
    return pr.finish()
