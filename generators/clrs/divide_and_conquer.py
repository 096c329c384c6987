"""CLRS-30 divide and conquer: the maximum subarray, by Kadane's linear scan (CLRS3 exercise 4.1-5)."""

from __future__ import annotations

import numpy as np

from generators.clrs import register
from generators.clrs.probing import Probes, Trajectory, one_hot
from generators.clrs.sampling import Sampling
from generators.clrs.sorting import node_positions, predecessors
from generators.clrs.specs import Location, Stage, Type

_IN, _OUT, _H = Stage.INPUT, Stage.OUTPUT, Stage.HINT
_NODE, _GRAPH = Location.NODE, Location.GRAPH


@register("find_maximum_subarray_kadane", "divide_and_conquer", {
    "pos": (_IN, _NODE, Type.SCALAR),
    "key": (_IN, _NODE, Type.SCALAR),
    "start": (_OUT, _NODE, Type.MASK_ONE),
    "end": (_OUT, _NODE, Type.MASK_ONE),
    "pred_h": (_H, _NODE, Type.POINTER),
    "best_low": (_H, _NODE, Type.MASK_ONE),
    "best_high": (_H, _NODE, Type.MASK_ONE),
    "best_sum": (_H, _GRAPH, Type.SCALAR),
    "i": (_H, _NODE, Type.MASK_ONE),
    "j": (_H, _NODE, Type.MASK_ONE),
    "sum": (_H, _GRAPH, Type.SCALAR),
})
def find_maximum_subarray_kadane(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Kadane's scan over keys from U[-1, 1) (the benchmark's input): one step per element j.

    `i..j` is the best subarray ending at j (sum `sum`), `best_low..best_high` the best so far (`best_sum`).
    """
    return run_kadane(rng.uniform(-1.0, 1.0, size=n))


def run_kadane(key) -> Trajectory:
    key = np.asarray(key, dtype=np.float64)
    n = len(key)
    pr = Probes("find_maximum_subarray_kadane", n)
    pr.input("pos", node_positions(n))
    pr.input("key", key)
    chain = predecessors(np.arange(n))
    lo = hi = i = 0
    best = run = float(key[0])

    def push(j: int) -> None:
        pr.hint(pred_h=chain, best_low=one_hot(lo, n), best_high=one_hot(hi, n), best_sum=best, i=one_hot(i, n),
                j=one_hot(j, n), sum=run)

    push(0)
    for j in range(1, n):
        x = float(key[j])
        if run + x >= x:  # extending the run beats restarting at j
            run += x
        else:
            i, run = j, x
        if run > best:
            lo, hi, best = i, j, run
        push(j)
    pr.output("start", one_hot(lo, n))
    pr.output("end", one_hot(hi, n))
    return pr.finish()
