"""CLRS-30 greedy algorithms: activity selection and unit-task scheduling (CLRS3 ch. 16)."""

from __future__ import annotations

import numpy as np

from generators.clrs import register
from generators.clrs.probing import Probes, Trajectory, one_hot
from generators.clrs.sampling import Sampling
from generators.clrs.sorting import node_positions, predecessors
from generators.clrs.specs import Location, Stage, Type

_IN, _OUT, _H = Stage.INPUT, Stage.OUTPUT, Stage.HINT
_NODE, _GRAPH = Location.NODE, Location.GRAPH


@register("activity_selector", "greedy", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "s": (_IN, _NODE, Type.SCALAR),
    "f": (_IN, _NODE, Type.SCALAR),
    "selected": (_OUT, _NODE, Type.MASK),
    "pred_h": (_H, _NODE, Type.POINTER),
    "selected_h": (_H, _NODE, Type.MASK),
    "m": (_H, _NODE, Type.MASK_ONE),
    "k": (_H, _NODE, Type.MASK_ONE),
})
def activity_selector(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """GREEDY-ACTIVITY-SELECTOR over activities taken by finish time; start/finish = min/max of two U[0, 1) draws.

    One step per activity considered: `m` the candidate, `k` the last one selected.
    """
    a, b = rng.uniform(0.0, 1.0, size=n), rng.uniform(0.0, 1.0, size=n)
    return run_activity_selector(np.minimum(a, b), np.maximum(a, b))


def run_activity_selector(s, f) -> Trajectory:
    s, f = np.asarray(s, dtype=np.float64), np.asarray(f, dtype=np.float64)
    n = len(s)
    pr = Probes("activity_selector", n)
    pr.input("pos", node_positions(n))
    pr.input("s", s)
    pr.input("f", f)
    chain = predecessors(np.arange(n))
    chosen = np.zeros(n, np.float32)
    pr.hint(pred_h=chain, selected_h=chosen, m=one_hot(0, n), k=one_hot(0, n))
    by_finish = np.argsort(f, kind="stable")
    k = int(by_finish[0])
    chosen[k] = 1
    pr.hint(pred_h=chain, selected_h=chosen, m=one_hot(k, n), k=one_hot(k, n))
    for m in by_finish[1:]:
        if s[m] >= f[k]:
            k = int(m)
            chosen[k] = 1
        pr.hint(pred_h=chain, selected_h=chosen, m=one_hot(int(m), n), k=one_hot(k, n))
    pr.output("selected", chosen)
    return pr.finish()


@register("task_scheduling", "greedy", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "d": (_IN, _NODE, Type.SCALAR),
    "w": (_IN, _NODE, Type.SCALAR),
    "selected": (_OUT, _NODE, Type.MASK),
    "pred_h": (_H, _NODE, Type.POINTER),
    "selected_h": (_H, _NODE, Type.MASK),
    "i": (_H, _NODE, Type.MASK_ONE),
    "t": (_H, _GRAPH, Type.SCALAR),
})
def task_scheduling(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Unit-time tasks with deadlines (integers 1..n) and penalties (U[0, 1)): the greedy matroid algorithm.

    Tasks are taken by decreasing penalty; one step per task considered (`i`), `t` the number kept so far.
    The benchmark keeps a task when `t < d` (its deadline is after the count kept so far), which can reject
    a task that still fits; the textbook variant keeps it when the kept set stays independent (CLRS Lemma
    16.12: for every t, at most t kept tasks have deadline <= t), the matroid greedy's optimum.
    """
    d = rng.integers(0, n, size=n) + 1
    w = rng.uniform(0.0, 1.0, size=n)
    return run_task_scheduling(d, w, how.variant)


def run_task_scheduling(d, w, variant: str = "benchmark") -> Trajectory:
    d, w = np.asarray(d, dtype=np.float64), np.asarray(w, dtype=np.float64)
    n = len(d)
    pr = Probes("task_scheduling", n)
    pr.input("pos", node_positions(n))
    pr.input("d", d)
    pr.input("w", w)
    chain = predecessors(np.arange(n))
    chosen = np.zeros(n, np.float32)
    pr.hint(pred_h=chain, selected_h=chosen, i=one_hot(0, n), t=0.0)
    t = 0
    per_deadline = np.zeros(n + 2, np.int64)  # kept tasks by deadline, deadlines clipped to n
    slots = np.arange(n + 2)
    for i in np.argsort(-w, kind="stable"):
        if variant == "benchmark":
            keep = t < d[i]
        else:
            trial = per_deadline.copy()
            trial[int(min(d[i], n))] += 1
            keep = bool((np.cumsum(trial) <= slots).all())
            if keep:
                per_deadline = trial
        if keep:
            chosen[i] = 1
            t += 1
        pr.hint(pred_h=chain, selected_h=chosen, i=one_hot(int(i), n), t=float(t))
    pr.output("selected", chosen)
    return pr.finish()
