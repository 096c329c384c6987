"""CLRS-30 computational geometry: segment intersection, Graham scan and Jarvis's march (CLRS3 ch. 33)."""

from __future__ import annotations

import math

import numpy as np

from generators.clrs import register
from generators.clrs.probing import Probes, Trajectory, one_hot
from generators.clrs.sampling import Sampling
from generators.clrs.sorting import node_positions, predecessors
from generators.clrs.specs import Location, Stage, Type

_IN, _OUT, _H = Stage.INPUT, Stage.OUTPUT, Stage.HINT
_NODE, _GRAPH = Location.NODE, Location.GRAPH


def cross(xs, ys, i: int, j: int, k: int) -> float:
    """(p_j - p_i) x (p_k - p_i): positive when i → j → k turns left."""
    return float((xs[j] - xs[i]) * (ys[k] - ys[i]) - (ys[j] - ys[i]) * (xs[k] - xs[i]))


def _start(name: str, xs: np.ndarray, ys: np.ndarray) -> Probes:
    n = len(xs)
    pr = Probes(name, n)
    pr.input("pos", node_positions(n))
    pr.input("x", xs)
    pr.input("y", ys)
    return pr


@register("segments_intersect", "geometry", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "x": (_IN, _NODE, Type.SCALAR),
    "y": (_IN, _NODE, Type.SCALAR),
    "intersect": (_OUT, _GRAPH, Type.MASK),
    "i": (_H, _NODE, Type.MASK_ONE),
    "j": (_H, _NODE, Type.MASK_ONE),
    "k": (_H, _NODE, Type.MASK_ONE),
    "dir": (_H, _NODE, Type.SCALAR),
    "on_seg": (_H, _NODE, Type.MASK),
})
def segments_intersect(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """SEGMENTS-INTERSECT of p0p1 and p2p3, endpoints from U[0, 1)^2; always 4 nodes, whatever n (as in the benchmark).

    A fair coin picks whether the segments cross and the endpoints are redrawn until they agree, so both
    answers are equally likely. One step per DIRECTION/ON-SEGMENT evaluation (`k` against segment `i`-`j`).
    """
    del n
    want = bool(rng.integers(0, 2))
    while True:
        xs, ys = rng.uniform(0.0, 1.0, size=4), rng.uniform(0.0, 1.0, size=4)
        d = [cross(xs, ys, 2, 3, 0), cross(xs, ys, 2, 3, 1), cross(xs, ys, 0, 1, 2), cross(xs, ys, 0, 1, 3)]
        if ((d[0] > 0) != (d[1] > 0) and (d[2] > 0) != (d[3] > 0)) == want:
            return run_segments_intersect(xs, ys)


def _on_segment(xs, ys, i: int, j: int, k: int) -> bool:
    return min(xs[i], xs[j]) <= xs[k] <= max(xs[i], xs[j]) and min(ys[i], ys[j]) <= ys[k] <= max(ys[i], ys[j])


def run_segments_intersect(xs, ys) -> Trajectory:
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if xs.shape != (4,) or ys.shape != (4,):
        raise ValueError("segments_intersect takes exactly 4 endpoints")
    pr = _start("segments_intersect", xs, ys)
    dirs = np.zeros(4)
    on_seg = np.zeros(4)
    pr.hint(i=one_hot(0, 4), j=one_hot(0, 4), k=one_hot(0, 4), dir=dirs, on_seg=on_seg)
    for i, j, k in ((2, 3, 0), (2, 3, 1), (0, 1, 2), (0, 1, 3)):
        dirs[k] = -cross(xs, ys, i, j, k)  # the book's DIRECTION(p_i, p_j, p_k) = (p_k - p_i) x (p_j - p_i)
        on_seg[k] = float(_on_segment(xs, ys, i, j, k))
        pr.hint(i=one_hot(i, 4), j=one_hot(j, 4), k=one_hot(k, 4), dir=dirs, on_seg=on_seg)
    straddle = ((dirs[0] > 0 and dirs[1] < 0) or (dirs[0] < 0 and dirs[1] > 0)) and (
        (dirs[2] > 0 and dirs[3] < 0) or (dirs[2] < 0 and dirs[3] > 0))
    touch = any(dirs[k] == 0 and on_seg[k] for k in range(4))
    pr.output("intersect", float(straddle or touch))
    return pr.finish()


def hull_points(n: int, rng: np.random.Generator, radius: float = 2.0, eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform on a disk of radius 2 at the origin, redrawn while any three are (near) collinear."""
    for _ in range(1000):
        theta = rng.uniform(0.0, 2.0 * math.pi, size=n)
        r = radius * np.sqrt(rng.uniform(0.0, 1.0, size=n))
        xs, ys = r * np.cos(theta), r * np.sin(theta)
        if not _has_collinear(xs, ys, eps):
            return xs, ys
    raise RuntimeError(f"could not draw {n} points without collinear triples")


def _has_collinear(xs: np.ndarray, ys: np.ndarray, eps: float) -> bool:
    n = len(xs)
    for i in range(n - 2):
        dx, dy = xs[i + 1:] - xs[i], ys[i + 1:] - ys[i]
        c = dx[:, None] * dy[None, :] - dy[:, None] * dx[None, :]
        if (np.abs(np.triu(c, 1)[np.triu_indices(len(dx), 1)]) < eps).any():
            return True
    return False


@register("graham_scan", "geometry", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "x": (_IN, _NODE, Type.SCALAR),
    "y": (_IN, _NODE, Type.SCALAR),
    "in_hull": (_OUT, _NODE, Type.MASK),
    "best": (_H, _NODE, Type.MASK_ONE),
    "atans": (_H, _NODE, Type.SCALAR),
    "in_hull_h": (_H, _NODE, Type.MASK),
    "stack_prev": (_H, _NODE, Type.POINTER),
    "last_stack": (_H, _NODE, Type.MASK_ONE),
    "i": (_H, _NODE, Type.MASK_ONE),
    "phase": (_H, _GRAPH, Type.CATEGORICAL),
})
def graham_scan(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """GRAHAM-SCAN. Phases: 0 start, 1 anchor p0 found, 2 polar angles computed, 3 pop, 4 push.

    The stack is a linked list (`stack_prev`, top `last_stack`; nodes off the stack point to themselves).
    """
    return run_graham_scan(*hull_points(n, rng))


def run_graham_scan(xs, ys) -> Trajectory:
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    n = len(xs)
    pr = _start("graham_scan", xs, ys)
    in_hull = np.zeros(n)
    below = np.arange(n)
    atans = np.zeros(n)

    def push(best: int, top: int, i: int, phase: int) -> None:
        pr.hint(best=one_hot(best, n), atans=atans, in_hull_h=in_hull, stack_prev=below, last_stack=one_hot(top, n),
                i=one_hot(i, n), phase=one_hot(phase, 5))

    push(0, 0, 0, 0)
    best = min(range(n), key=lambda v: (ys[v], xs[v]))
    in_hull[best] = 1
    top = best
    push(best, top, best, 1)
    for v in range(n):
        if v != best:
            atans[v] = math.atan2(ys[v] - ys[best], xs[v] - xs[best])
    rest = sorted((v for v in range(n) if v != best), key=lambda v: atans[v])
    push(best, top, best, 2)
    for t, v in enumerate(rest, start=1):
        if t >= 3:
            while cross(xs, ys, int(below[top]), top, v) <= 0:  # not a left turn: pop
                popped, top = top, int(below[top])
                below[popped] = popped
                in_hull[popped] = 0
                push(best, top, v, 3)
        in_hull[v] = 1
        below[v] = top
        top = v
        push(best, top, v, 4)
    pr.output("in_hull", in_hull)
    return pr.finish()


@register("jarvis_march", "geometry", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "x": (_IN, _NODE, Type.SCALAR),
    "y": (_IN, _NODE, Type.SCALAR),
    "in_hull": (_OUT, _NODE, Type.MASK),
    "pred_h": (_H, _NODE, Type.POINTER),
    "in_hull_h": (_H, _NODE, Type.MASK),
    "best": (_H, _NODE, Type.MASK_ONE),
    "last_point": (_H, _NODE, Type.MASK_ONE),
    "endpoint": (_H, _NODE, Type.MASK_ONE),
    "i": (_H, _NODE, Type.MASK_ONE),
    "phase": (_H, _GRAPH, Type.CATEGORICAL),
})
def jarvis_march(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Jarvis's march (gift wrapping) from the lowest point. Phases: 0 start, 1 wrapping.

    Each wrap scans every node `i`, keeping as `endpoint` the candidate with no node to its right as seen from
    `last_point`; one step per node scanned and one per hull vertex added.
    """
    return run_jarvis_march(*hull_points(n, rng))


def run_jarvis_march(xs, ys) -> Trajectory:
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    n = len(xs)
    pr = _start("jarvis_march", xs, ys)
    chain = predecessors(np.arange(n))
    in_hull = np.zeros(n)

    def push(best: int, last: int, end: int, i: int, phase: int) -> None:
        pr.hint(pred_h=chain, in_hull_h=in_hull, best=one_hot(best, n), last_point=one_hot(last, n),
                endpoint=one_hot(end, n), i=one_hot(i, n), phase=one_hot(phase, 2))

    push(0, 0, 0, 0, 0)
    best = min(range(n), key=lambda v: (ys[v], xs[v]))
    in_hull[best] = 1
    last, end = best, 0
    push(best, last, end, 0, 1)
    while True:
        for i in range(n):
            if end == last or (i not in (last, end) and cross(xs, ys, last, end, i) <= 0):
                end = i
            push(best, last, end, i, 1)
        if in_hull[end]:
            break
        in_hull[end] = 1
        last, end = end, 0
        push(best, last, end, 0, 1)
    pr.output("in_hull", in_hull)
    return pr.finish()
