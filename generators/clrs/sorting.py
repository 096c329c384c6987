"""CLRS-30 sorting: insertion sort, bubble sort, heapsort and quicksort (CLRS3 ch. 2, 6, 7).

Every node is one key. The sorted order is written as predecessor pointers (`pred[v]` = the node just before
`v` in sorted order, the first node points to itself), as in the benchmark; the hints follow the array as it is
rearranged, with the loop variables as one-hot node masks (the node currently at that array position).
"""

from __future__ import annotations

import numpy as np

from generators.clrs import register
from generators.clrs.probing import Probes, Trajectory, one_hot
from generators.clrs.sampling import Sampling
from generators.clrs.specs import Location, Stage, Type

_IN, _OUT, _H = Stage.INPUT, Stage.OUTPUT, Stage.HINT
_NODE, _GRAPH = Location.NODE, Location.GRAPH


def predecessors(order) -> np.ndarray:
    """Nodes listed in some order → predecessor pointers (`out[order[t]] = order[t-1]`, the head points to itself)."""
    order = np.asarray(order, dtype=np.int64)
    out = np.arange(len(order), dtype=np.int64)
    out[order[1:]] = order[:-1]
    return out


def heap_parents(order, heap_size: int) -> np.ndarray:
    """Parent pointers of the binary heap held in `order[:heap_size]`; nodes outside the heap point to themselves."""
    order = np.asarray(order, dtype=np.int64)
    out = np.arange(len(order), dtype=np.int64)
    t = np.arange(1, heap_size)
    out[order[t]] = order[(t - 1) // 2]
    return out


def node_positions(n: int) -> np.ndarray:
    """The `pos` input every algorithm has: node i at i/n."""
    return np.arange(n, dtype=np.float32) / n


def uniform_keys(n: int, rng: np.random.Generator) -> np.ndarray:
    """The benchmark's sorting input: n keys from U[0, 1)."""
    return rng.uniform(0.0, 1.0, size=n)


_SORT_SPEC = {
    "pos": (_IN, _NODE, Type.SCALAR),
    "key": (_IN, _NODE, Type.SCALAR),
    "pred": (_OUT, _NODE, Type.SHOULD_BE_PERMUTATION),
    "pred_h": (_H, _NODE, Type.POINTER),
}


def _start(name: str, key: np.ndarray) -> Probes:
    n = len(key)
    pr = Probes(name, n)
    pr.input("pos", node_positions(n))
    pr.input("key", key)
    return pr


@register("insertion_sort", "sorting", {**_SORT_SPEC, "i": (_H, _NODE, Type.MASK_ONE), "j": (_H, _NODE, Type.MASK_ONE)})
def insertion_sort(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """INSERTION-SORT: one step per outer iteration j; `i` marks the node the key landed in front of (itself if none)."""
    return run_insertion_sort(uniform_keys(n, rng))


def run_insertion_sort(key) -> Trajectory:
    key = np.asarray(key, dtype=np.float64)
    n = len(key)
    pr = _start("insertion_sort", key)
    order = list(range(n))
    pr.hint(pred_h=predecessors(order), i=one_hot(0, n), j=one_hot(0, n))
    for j in range(1, n):
        node = order[j]
        t = j
        while t > 0 and key[order[t - 1]] > key[node]:
            order[t] = order[t - 1]
            t -= 1
        order[t] = node
        after = order[t + 1] if t < j else node
        pr.hint(pred_h=predecessors(order), i=one_hot(after, n), j=one_hot(j, n))
    pr.output("pred", predecessors(order))
    return pr.finish()


@register("bubble_sort", "sorting", {**_SORT_SPEC, "i": (_H, _NODE, Type.MASK_ONE), "j": (_H, _NODE, Type.MASK_ONE)})
def bubble_sort(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """BUBBLESORT: one step per comparison of positions j-1, j (j runs down to i+1)."""
    return run_bubble_sort(uniform_keys(n, rng))


def run_bubble_sort(key) -> Trajectory:
    key = np.asarray(key, dtype=np.float64)
    n = len(key)
    pr = _start("bubble_sort", key)
    order = list(range(n))
    pr.hint(pred_h=predecessors(order), i=one_hot(0, n), j=one_hot(0, n))
    for i in range(n - 1):
        for j in range(n - 1, i, -1):
            if key[order[j]] < key[order[j - 1]]:
                order[j], order[j - 1] = order[j - 1], order[j]
            pr.hint(pred_h=predecessors(order), i=one_hot(order[i], n), j=one_hot(order[j], n))
    pr.output("pred", predecessors(order))
    return pr.finish()


@register("heapsort", "sorting", {
    **_SORT_SPEC,
    "parent": (_H, _NODE, Type.POINTER),
    "i": (_H, _NODE, Type.MASK_ONE),
    "j": (_H, _NODE, Type.MASK_ONE),
    "largest": (_H, _NODE, Type.MASK_ONE),
    "heap_size": (_H, _NODE, Type.MASK_ONE),
    "phase": (_H, _GRAPH, Type.CATEGORICAL),
})
def heapsort(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """HEAPSORT with phases 0 = BUILD-MAX-HEAP, 1 = swap the root out, 2 = MAX-HEAPIFY after the swap.

    One step per MAX-HEAPIFY level and per swap; `i` is the outer loop's node, `j` the node being sifted,
    `largest` the node MAX-HEAPIFY picked, `heap_size` the last node inside the heap. On a swap step the
    benchmark writes node 0 as `largest` (whatever node sits at the root); the textbook variant the root.
    """
    return run_heapsort(uniform_keys(n, rng), how.variant)


def run_heapsort(key, variant: str = "benchmark") -> Trajectory:
    key = np.asarray(key, dtype=np.float64)
    n = len(key)
    pr = _start("heapsort", key)
    order = list(range(n))
    a = key.copy()  # keys by array position, kept in step with `order`

    def push(outer: int, cur: int, largest: int, size: int, phase: int) -> None:
        pr.hint(pred_h=predecessors(order), parent=heap_parents(order, size), i=one_hot(outer, n), j=one_hot(cur, n),
                largest=one_hot(largest, n), heap_size=one_hot(order[size - 1], n), phase=one_hot(phase, 3))

    def swap(x: int, y: int) -> None:
        order[x], order[y] = order[y], order[x]
        a[x], a[y] = a[y], a[x]

    def max_heapify(i: int, size: int, outer_pos: int, phase: int) -> None:
        while True:
            left, right = 2 * i + 1, 2 * i + 2
            largest = left if left < size and a[left] > a[i] else i
            if right < size and a[right] > a[largest]:
                largest = right
            if largest != i:
                swap(i, largest)
            push(order[outer_pos], order[i], order[largest], size, phase)
            if largest == i:
                return
            i = largest

    push(n - 1, n - 1, n - 1, n, 0)
    for i in range(n - 1, -1, -1):  # the benchmark's BUILD-MAX-HEAP visits every position, leaves included
        max_heapify(i, n, i, 0)
    size = n
    for i in range(n - 1, 0, -1):
        swap(0, i)
        size -= 1
        push(order[0], order[i], 0 if variant == "benchmark" else order[0], size, 1)
        max_heapify(0, size, i, 2)
    pr.output("pred", predecessors(order))
    return pr.finish()


@register("quicksort", "sorting", {
    **_SORT_SPEC,
    "p": (_H, _NODE, Type.MASK_ONE),
    "r": (_H, _NODE, Type.MASK_ONE),
    "i": (_H, _NODE, Type.MASK_ONE),
    "j": (_H, _NODE, Type.MASK_ONE),
})
def quicksort(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """QUICKSORT with Lomuto's PARTITION: one step per loop iteration j and one after placing the pivot.

    `p`/`r` mark the subarray's ends, `i` the node just past the low side (position i+1), `j` the scanned node.
    The benchmark records no step before the first comparison (so it needs 2 keys); the textbook variant
    starts with the initial state.
    """
    return run_quicksort(uniform_keys(n, rng), how.variant)


def partition_steps(a: np.ndarray, order: list[int], p: int, r: int, push) -> int:
    """Lomuto PARTITION of positions p..r (pivot a[r]), calling `push(p, r, i+1, j)` (positions) after each step."""
    x = a[r]
    i = p - 1
    for j in range(p, r):
        if a[j] <= x:
            i += 1
            a[i], a[j] = a[j], a[i]
            order[i], order[j] = order[j], order[i]
        push(p, r, i + 1, j)
    a[i + 1], a[r] = a[r], a[i + 1]
    order[i + 1], order[r] = order[r], order[i + 1]
    push(p, r, i + 1, r)
    return i + 1


def run_quicksort(key, variant: str = "benchmark") -> Trajectory:
    key = np.asarray(key, dtype=np.float64)
    n = len(key)
    if variant == "benchmark" and n < 2:
        raise ValueError("quicksort needs at least 2 keys: the benchmark records no step for 1 "
                         "(variant='textbook' records the initial state)")
    pr = _start("quicksort", key)
    order = list(range(n))
    a = key.copy()

    def push(p: int, r: int, i: int, j: int) -> None:
        pr.hint(pred_h=predecessors(order), p=one_hot(order[p], n), r=one_hot(order[r], n), i=one_hot(order[i], n),
                j=one_hot(order[j], n))

    if variant != "benchmark":
        push(0, n - 1, 0, 0)  # the initial state
    stack = [(0, n - 1)]
    while stack:  # the recursion, left subarray first
        p, r = stack.pop()
        if p < r:
            q = partition_steps(a, order, p, r, push)
            stack.append((q + 1, r))
            stack.append((p, q - 1))
    pr.output("pred", predecessors(order))
    return pr.finish()
