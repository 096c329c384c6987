"""CLRS-30 non-graph samplers: outputs against independent computations, hand-worked hints, shapes, determinism."""

from __future__ import annotations

import bisect
import itertools
import math
from functools import cache

import numpy as np
import pytest

from generators.clrs import FAMILIES, SAMPLERS, VARIANTS, algorithms, benchmark_split, sample
from generators.clrs.divide_and_conquer import run_kadane
from generators.clrs.dynamic_programming import run_lcs_length, run_matrix_chain_order, run_optimal_bst
from generators.clrs.geometry import run_graham_scan, run_segments_intersect
from generators.clrs.greedy import run_activity_selector, run_task_scheduling
from generators.clrs.searching import run_binary_search, run_quickselect
from generators.clrs.sorting import run_heapsort, run_insertion_sort, run_quicksort
from generators.clrs.specs import SPECS, Location, Stage, Type
from generators.clrs.strings import run_kmp_matcher, run_naive_string_matcher

CORE = {
    "sorting": ["insertion_sort", "bubble_sort", "heapsort", "quicksort"],
    "searching": ["minimum", "binary_search", "quickselect"],
    "divide_and_conquer": ["find_maximum_subarray_kadane"],
    "greedy": ["activity_selector", "task_scheduling"],
    "dynamic_programming": ["matrix_chain_order", "lcs_length", "optimal_bst"],
    "strings": ["naive_string_matcher", "kmp_matcher"],
    "geometry": ["segments_intersect", "graham_scan", "jarvis_march"],
}
ALL_CORE = [a for names in CORE.values() for a in names]
N_CASES = 100


def _seeds(alg: str, sizes: tuple[int, ...]):
    """N_CASES (seed, n) pairs spread over `sizes`."""
    return [(1000 * k + 7, sizes[k % len(sizes)]) for k in range(N_CASES)]


def _onehot_index(x: np.ndarray) -> int:
    assert x.sum() == 1
    return int(np.argmax(x))


def _order_from_pred(pred: np.ndarray) -> list[int]:
    """Predecessor pointers of a linear order → the nodes in that order (and checks it is one)."""
    n = len(pred)
    heads = [v for v in range(n) if pred[v] == v]
    assert len(heads) == 1
    nxt = {int(pred[v]): v for v in range(n) if pred[v] != v}
    assert len(nxt) == n - 1
    order = [heads[0]]
    while order[-1] in nxt:
        order.append(nxt[order[-1]])
    assert sorted(order) == list(range(n))
    return order


def test_registered_and_families():
    names = algorithms()
    for family, algs in CORE.items():
        for a in algs:
            assert a in names and FAMILIES[a] == family
            assert SPECS[a]["pos"] == (Stage.INPUT, Location.NODE, Type.SCALAR)


# ---------------------------------------------------------------- outputs against independent computations


@pytest.mark.parametrize("alg", CORE["sorting"])
def test_sorting_outputs(alg):
    for k, (seed, n) in enumerate(_seeds(alg, (1, 2, 5, 9, 16))):
        variant = VARIANTS[k % 2]
        if alg == "quicksort" and n == 1:  # the benchmark records no step for a single key
            with pytest.raises(ValueError, match="2 keys"):
                sample(alg, n, seed)
            variant = "textbook"
        tr = sample(alg, n, seed, variant=variant)
        key = tr.inputs["key"]
        order = _order_from_pred(tr.outputs["pred"])
        assert [float(key[v]) for v in order] == sorted(float(k) for k in key)
        assert list(order) == list(np.argsort(key, kind="stable"))
        # the last hint is the sorted array too
        assert np.array_equal(tr.hints["pred_h"][-1], tr.outputs["pred"])


def test_minimum_binary_search_quickselect_outputs():
    for seed, n in _seeds("searching", (1, 2, 5, 9, 16)):
        tr = sample("minimum", n, seed)
        assert _onehot_index(tr.outputs["min"]) == int(np.argmin(tr.inputs["key"]))

        tr = sample("binary_search", n, seed)
        key, target = tr.inputs["key"].tolist(), float(tr.inputs["target"])
        assert key == sorted(key)
        assert _onehot_index(tr.outputs["return"]) == min(bisect.bisect_left(key, target), n - 1)

        tr = sample("quickselect", n, seed)
        key = tr.inputs["key"]
        assert key[_onehot_index(tr.outputs["median"])] == np.sort(key)[n // 2]
        assert _onehot_index(tr.hints["pivot"][-1]) == _onehot_index(tr.outputs["median"])  # the last pivot placed


def test_kadane_outputs():
    for seed, n in _seeds("kadane", (1, 2, 5, 9, 16)):
        tr = sample("find_maximum_subarray_kadane", n, seed)
        key = tr.inputs["key"].astype(np.float64)
        assert key.min() >= -1 and key.max() <= 1
        best = max(key[i:j + 1].sum() for i in range(n) for j in range(i, n))
        lo, hi = _onehot_index(tr.outputs["start"]), _onehot_index(tr.outputs["end"])
        assert lo <= hi
        assert math.isclose(key[lo:hi + 1].sum(), best, rel_tol=1e-9, abs_tol=1e-9)


def _check_activity_selector(tr) -> None:
    n = tr.num_nodes
    s, f = tr.inputs["s"], tr.inputs["f"]
    assert (s <= f).all()

    def compatible(sub) -> bool:
        sub = sorted(sub, key=lambda v: s[v])
        return all(s[b] >= f[a] for a, b in itertools.pairwise(sub))

    chosen = [v for v in range(n) if tr.outputs["selected"][v]]
    assert compatible(chosen)
    most = max(len(c) for r in range(n + 1) for c in itertools.combinations(range(n), r) if compatible(c))
    assert len(chosen) == most


def test_activity_selector_outputs():
    for seed, n in _seeds("activity", (1, 3, 5, 8)):
        _check_activity_selector(sample("activity_selector", n, seed))


def _check_task_scheduling(tr, variant: str) -> None:
    n = tr.num_nodes
    d, w = tr.inputs["d"].astype(int), tr.inputs["w"].astype(np.float64)
    assert d.min() >= 1 and d.max() <= n

    def independent(sub) -> bool:  # schedulable on time: the k-th earliest deadline is at least k
        return all(dl >= k for k, dl in enumerate(sorted(d[list(sub)]), start=1))

    chosen = [v for v in range(n) if tr.outputs["selected"][v]]
    assert independent(chosen)  # t < d keeps the k-th kept task only if its deadline exceeds k - 1: on time too
    assert tr.hints["t"][-1] == len(chosen)
    if variant == "textbook":  # the matroid greedy is optimal
        best = max(w[list(c)].sum() for r in range(n + 1) for c in itertools.combinations(range(n), r)
                   if independent(c))
        assert math.isclose(w[chosen].sum(), best, rel_tol=1e-9, abs_tol=1e-12)
    else:  # the benchmark's rule: by decreasing penalty, keep while the count kept so far is below the deadline
        kept = []
        for v in sorted(range(n), key=lambda v: -w[v]):
            if len(kept) < d[v]:
                kept.append(v)
        assert sorted(kept) == chosen


def test_task_scheduling_outputs():
    for k, (seed, n) in enumerate(_seeds("tasks", (1, 3, 5, 8))):
        variant = VARIANTS[k % 2]
        _check_task_scheduling(sample("task_scheduling", n, seed, variant=variant), variant)


def test_task_scheduling_keep_rule_by_hand():
    # Penalties 0.9 > 0.8 > 0.7 with deadlines 3, 3, 1. The benchmark keeps a task when the count kept so far is
    # below its deadline: 0 < 3 keep, 1 < 3 keep, 2 < 1 drop. The textbook's matroid test keeps the third too
    # (it runs at time 1, the other two at 2 and 3).
    tr = run_task_scheduling([3, 3, 1], [0.9, 0.8, 0.7])
    assert tr.outputs["selected"].tolist() == [1, 1, 0]
    assert tr.hints["t"].tolist() == [0, 1, 2, 2]
    assert tr.hints["selected_h"].tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0]]
    assert _masks(tr.hints["i"]) == [0, 0, 1, 2]
    tb = run_task_scheduling([3, 3, 1], [0.9, 0.8, 0.7], "textbook")
    assert tb.outputs["selected"].tolist() == [1, 1, 1] and tb.hints["t"].tolist() == [0, 1, 2, 3]


def _check_matrix_chain(tr) -> None:
    n = tr.num_nodes
    p = tr.inputs["p"].astype(np.float64)
    s = tr.outputs["s"]

    @cache
    def brute(i: int, j: int) -> float:
        return 0.0 if i == j else min(brute(i, k) + brute(k + 1, j) + p[i - 1] * p[k] * p[j] for k in range(i, j))

    def cost(i: int, j: int) -> float:
        if i == j:
            return 0.0
        k = int(s[i, j])
        assert i <= k < j
        return cost(i, k) + cost(k + 1, j) + p[i - 1] * p[k] * p[j]

    assert math.isclose(cost(1, n - 1), brute(1, n - 1), rel_tol=1e-6)
    assert math.isclose(float(tr.hints["m"][-1][1, n - 1]), brute(1, n - 1), rel_tol=1e-5)
    assert tr.hints["msk"][-1][1:, 1:][np.triu_indices(n - 1)].all()


def test_matrix_chain_outputs():
    for seed, n in _seeds("mco", (2, 3, 5, 8)):
        _check_matrix_chain(sample("matrix_chain_order", n, seed))


def _lcs_len(a, b) -> int:
    @cache
    def go(i: int, j: int) -> int:
        if i == len(a) or j == len(b):
            return 0
        return 1 + go(i + 1, j + 1) if a[i] == b[j] else max(go(i + 1, j), go(i, j + 1))
    return go(0, 0)


def _is_subsequence(sub, seq) -> bool:
    it = iter(seq)
    return all(ch in it for ch in sub)


def test_lcs_outputs():
    for seed, n in _seeds("lcs", (2, 3, 6, 10, 14)):
        tr = sample("lcs_length", n, seed)
        ny = n // 2
        nx = n - ny
        assert tr.inputs["string"].tolist() == [0] * nx + [1] * ny
        sym = tr.inputs["key"].argmax(-1)
        x, y = tuple(sym[:nx].tolist()), tuple(sym[nx:].tolist())
        out = tr.outputs["b"]
        outside = np.ones((n, n), bool)
        outside[:nx, nx:] = False
        # the benchmark's blank cells are masked: -1 in the blank class, 0 elsewhere (not scored)
        assert (out[outside] == [0, 0, 0, -1]).all()
        b = out.argmax(-1)
        block = b[:nx, nx:]
        assert (block < 3).all()
        i, j, got = nx - 1, ny - 1, []
        while i >= 0 and j >= 0:  # PRINT-LCS over the arrows
            if block[i, j] == 0:
                assert x[i] == y[j]
                got.append(x[i])
                i, j = i - 1, j - 1
            elif block[i, j] == 1:
                i -= 1
            else:
                j -= 1
        got.reverse()
        assert _is_subsequence(got, x) and _is_subsequence(got, y)
        assert len(got) == _lcs_len(x, y)
        assert tr.hints["c"][-1][nx - 1, n - 1] == _lcs_len(x, y)


def _bst_trees(i: int, j: int):
    """Every BST over keys i..j-1, as nested (root, left, right); None is the dummy leaf."""
    if i == j:
        yield None
        return
    for r in range(i, j):
        for left in _bst_trees(i, r):
            for right in _bst_trees(r + 1, j):
                yield (r, left, right)


def _bst_cost(tree, p, q, i: int, j: int, depth: int = 0) -> float:
    """Expected search cost: (depth + 1) weighted by p at keys and by q at the dummy leaves."""
    if tree is None:
        return (depth + 1) * q[i]
    r, left, right = tree
    assert i <= r < j
    return (depth + 1) * p[r] + _bst_cost(left, p, q, i, r, depth + 1) + _bst_cost(right, p, q, r + 1, j, depth + 1)


def _check_optimal_bst(tr) -> None:
    n = tr.num_nodes
    p_all, q = tr.inputs["p"].astype(np.float64), tr.inputs["q"].astype(np.float64)
    assert p_all[-1] == 0 and math.isclose(p_all.sum() + q.sum(), 1.0, rel_tol=1e-5)
    p = p_all[:-1]
    root = tr.outputs["root"]

    def decode(i: int, j: int):
        if i == j:
            return None
        r = int(root[i, j])
        return (r, decode(i, r), decode(r + 1, j))

    best = min(_bst_cost(t, p, q, 0, n - 1) for t in _bst_trees(0, n - 1))
    assert math.isclose(_bst_cost(decode(0, n - 1), p, q, 0, n - 1), best, rel_tol=1e-6)
    assert math.isclose(float(tr.hints["e"][-1][0, n - 1]), best, rel_tol=1e-5)


def test_optimal_bst_outputs():
    for k, (seed, n) in enumerate(_seeds("bst", (1, 2, 4, 6))):
        _check_optimal_bst(sample("optimal_bst", n, seed, variant=VARIANTS[k % 2]))


def test_optimal_bst_size_convention():
    # The benchmark's length 3 means 3 keys p_1..p_3 and 4 dummies q_0..q_3: 4 nodes, p padded with a 0 on the last.
    tr = sample("optimal_bst", 3, 0)
    assert tr.num_nodes == 4 and tr.inputs["p"][-1] == 0 and (tr.inputs["p"][:3] > 0).all() and (tr.inputs["q"] > 0).all()
    assert math.isclose(float(tr.inputs["p"].sum() + tr.inputs["q"].sum()), 1.0, rel_tol=1e-6)
    assert tr.length == 4  # the initial step and one per subtree size 1..3
    tb = sample("optimal_bst", 3, 0, variant="textbook")  # the textbook variant: 3 nodes, 2 keys
    assert tb.num_nodes == 3 and tb.length == 3


@pytest.mark.parametrize("alg", CORE["strings"])
def test_string_matcher_outputs(alg):
    for seed, n in _seeds(alg, (2, 4, 5, 9, 16, 23)):
        tr = sample(alg, n, seed)
        m = n // 5 if n >= 5 else 1
        h = n - m
        assert tr.inputs["string"].tolist() == [0] * h + [1] * m
        sym = tr.inputs["key"].argmax(-1)
        hay, needle = "".join(map(str, sym[:h])), "".join(map(str, sym[h:]))
        at = hay.find(needle)
        assert at >= 0  # the sampler plants the needle
        assert _onehot_index(tr.outputs["match"]) == at
    # no occurrence: the needle's head, by convention
    run = run_naive_string_matcher if alg == "naive_string_matcher" else run_kmp_matcher
    assert _onehot_index(run([0, 1, 2, 3], [3, 3]).outputs["match"]) == 4


def test_kmp_matches_naive_on_random_strings():
    rng = np.random.default_rng(3)
    for _ in range(250):
        h, m = int(rng.integers(1, 20)), int(rng.integers(1, 9))
        t, p = rng.integers(0, 2, size=h), rng.integers(0, 2, size=m)
        want = "".join(map(str, t)).find("".join(map(str, p)))
        for run in (run_naive_string_matcher, run_kmp_matcher):
            assert _onehot_index(run(t, p).outputs["match"]) == (want if want >= 0 else h)
        # the prefix function, once computed (any phase-1 step), against brute force
        tr = run_kmp_matcher(t, p)
        last = int(np.flatnonzero(tr.hints["phase"] == 1)[0]) if (tr.hints["phase"] == 1).any() else -1
        pi, reset = tr.hints["pi"][last][h:] - h, tr.hints["is_reset"][last][h:]
        for q in range(m):
            border = max(L for L in range(q + 1) if list(p[:L]) == list(p[q + 1 - L:q + 1]))
            assert (reset[q] == 1) == (border == 0)
            if border:
                assert pi[q] == border - 1


def _segments_cross(xs, ys) -> bool:
    """Independent test: solve p0 + t (p1 - p0) = p2 + u (p3 - p2) and ask for t, u in [0, 1]."""
    a = np.array([[xs[1] - xs[0], -(xs[3] - xs[2])], [ys[1] - ys[0], -(ys[3] - ys[2])]], dtype=np.float64)
    rhs = np.array([xs[2] - xs[0], ys[2] - ys[0]], dtype=np.float64)
    t, u = np.linalg.solve(a, rhs)
    return bool(0 <= t <= 1 and 0 <= u <= 1)


def test_segments_intersect_outputs():
    hits = 0
    for seed, n in _seeds("seg", (4, 16)):
        tr = sample("segments_intersect", n, seed)
        assert tr.num_nodes == 4
        xs, ys = tr.inputs["x"], tr.inputs["y"]
        want = _segments_cross(xs, ys)
        assert bool(tr.outputs["intersect"]) == want
        hits += want
    assert 25 <= hits <= 75  # the sampler's fair coin
    # collinear and touching: p2 lies on p0p1
    assert run_segments_intersect([0, 2, 1, 1], [0, 2, 1, 3]).outputs["intersect"] == 1
    assert run_segments_intersect([0, 1, 2, 3], [0, 0, 0, 0]).outputs["intersect"] == 0


@pytest.mark.parametrize("alg", ["graham_scan", "jarvis_march"])
def test_convex_hull_outputs(alg):
    from scipy.spatial import ConvexHull

    for seed, n in _seeds(alg, (3, 5, 8, 12)):
        tr = sample(alg, n, seed)
        xs, ys = tr.inputs["x"].astype(np.float64), tr.inputs["y"].astype(np.float64)
        assert (xs ** 2 + ys ** 2 <= 4.0 + 1e-5).all()
        hull = set(ConvexHull(np.stack([xs, ys], 1)).vertices.tolist())
        assert set(np.flatnonzero(tr.outputs["in_hull"]).tolist()) == hull


# ---------------------------------------------------------------- hand-worked hint sequences


def _masks(h: np.ndarray) -> list[int]:
    return [_onehot_index(row) for row in h]


def test_insertion_sort_hints_by_hand():
    tr = run_insertion_sort([0.3, 0.1, 0.2])
    # j=1: 0.1 moves in front of node 0; j=2: 0.2 lands between nodes 1 and 0 (in front of node 0)
    assert tr.hints["pred_h"].tolist() == [[0, 0, 1], [1, 1, 0], [2, 1, 1]]
    assert _masks(tr.hints["i"]) == [0, 0, 0]
    assert _masks(tr.hints["j"]) == [0, 1, 2]
    assert tr.outputs["pred"].tolist() == [2, 1, 1]
    tr = run_insertion_sort([0.1, 0.2])  # nothing moves: `i` is the key itself
    assert _masks(tr.hints["i"]) == [0, 1]


def test_binary_search_hints_by_hand():
    tr = run_binary_search([0.1, 0.2, 0.3, 0.4], 0.35)
    assert _masks(tr.hints["low"]) == [0, 2, 3]
    assert _masks(tr.hints["high"]) == [3, 3, 3]
    assert _masks(tr.hints["mid"]) == [1, 2, 3]
    assert _onehot_index(tr.outputs["return"]) == 3
    assert tr.hints["pred_h"][0].tolist() == [0, 0, 1, 2]


def test_kadane_hints_by_hand():
    tr = run_kadane([1.0, -2.0, 3.0])
    assert tr.hints["sum"].tolist() == [1.0, -1.0, 3.0]
    assert tr.hints["best_sum"].tolist() == [1.0, 1.0, 3.0]
    assert _masks(tr.hints["i"]) == [0, 0, 2]
    assert _masks(tr.hints["j"]) == [0, 1, 2]
    assert _masks(tr.hints["best_low"]) == [0, 0, 2] and _masks(tr.hints["best_high"]) == [0, 0, 2]
    assert _onehot_index(tr.outputs["start"]) == 2 and _onehot_index(tr.outputs["end"]) == 2


def test_activity_selector_hints_by_hand():
    tr = run_activity_selector([0.1, 0.3, 0.2], [0.4, 0.5, 0.25])  # by finish time: 2, 0, 1
    assert tr.hints["selected_h"].tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 1], [0, 1, 1]]
    assert _masks(tr.hints["m"]) == [0, 2, 0, 1]
    assert _masks(tr.hints["k"]) == [0, 2, 2, 1]
    assert tr.outputs["selected"].tolist() == [0, 1, 1]


def test_matrix_chain_hints_by_hand():
    tr = run_matrix_chain_order([1.0, 2.0, 3.0, 4.0])  # A1: 1x2, A2: 2x3, A3: 3x4
    assert tr.length == 3  # start, pairs done, full chain done (then a round that changes nothing)
    m = tr.hints["m"]
    assert m[0].sum() == 0
    assert (m[1][1, 2], m[1][2, 3], m[1][1, 3]) == (6.0, 24.0, 0.0)
    assert not tr.hints["msk"][1][1, 3]
    assert m[2][1, 3] == 18.0  # (A1 A2) A3 = 6 + 12 beats A1 (A2 A3) = 24 + 8
    assert tr.outputs["s"][1, 3] == 2 and tr.outputs["s"][1, 2] == 1 and tr.outputs["s"][2, 3] == 2


def test_optimal_bst_hints_by_hand():
    tr = run_optimal_bst([0.5], [0.2, 0.3])
    assert tr.length == 2
    np.testing.assert_allclose(tr.hints["e"][0], [[0.2, 0], [0, 0.3]])
    np.testing.assert_allclose(tr.hints["w"][1], [[0.2, 1.0], [0, 0.3]])
    np.testing.assert_allclose(tr.hints["e"][1], [[0.2, 1.5], [0, 0.3]])
    assert tr.hints["msk"][1].tolist() == [[1, 1], [0, 1]]
    assert tr.outputs["root"][0, 1] == 0
    assert tr.inputs["p"].tolist() == [0.5, 0.0]


def test_naive_string_matcher_hints_by_hand():
    tr = run_naive_string_matcher([0, 1, 0, 1, 1], [1, 1])  # needle nodes 5, 6
    assert _masks(tr.hints["s"]) == [0, 1, 1, 2, 3, 3]
    assert _masks(tr.hints["i"]) == [0, 1, 2, 2, 3, 4]
    assert _masks(tr.hints["j"]) == [5, 5, 6, 5, 5, 6]
    assert _onehot_index(tr.outputs["match"]) == 3
    assert tr.hints["pred_h"][0].tolist() == [0, 0, 1, 2, 3, 5, 5]


def test_kmp_hints_by_hand():
    tr = run_kmp_matcher([0, 0, 0, 1], [0, 0, 1])  # needle nodes 4, 5, 6; prefix function (lengths) 0, 1, 0
    assert tr.hints["phase"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert _masks(tr.hints["k"]) == [4, 4, 4, 4, 4, 4, 4, 4, 4]
    assert tr.hints["k_reset"].tolist() == [1, 0, 1, 1, 1, 1, 1, 1, 1]
    assert _masks(tr.hints["q"]) == [5, 5, 6, 6, 4, 4, 5, 4, 5]
    assert tr.hints["q_reset"].tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert _masks(tr.hints["i"]) == [0, 0, 0, 0, 0, 1, 2, 2, 3]
    assert _masks(tr.hints["s"]) == [0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert tr.hints["pi"][0][4:].tolist() == [4, 5, 6]
    assert tr.hints["pi"][-1][4:].tolist() == [4, 4, 4]
    assert tr.hints["is_reset"][0][4:].tolist() == [1, 0, 0]
    assert tr.hints["is_reset"][-1][4:].tolist() == [1, 0, 1]
    assert _onehot_index(tr.outputs["match"]) == 1


def test_segments_intersect_hints_by_hand():
    tr = run_segments_intersect([0, 1, 0, 1], [0, 1, 1, 0])  # the diagonals of the unit square
    assert tr.hints["dir"].tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [1, -1, 0, 0], [1, -1, -1, 0], [1, -1, -1, 1]]
    assert tr.hints["on_seg"][-1].tolist() == [1, 1, 1, 1]
    assert _masks(tr.hints["k"]) == [0, 0, 1, 2, 3]
    assert _masks(tr.hints["i"]) == [0, 2, 2, 0, 0] and _masks(tr.hints["j"]) == [0, 3, 3, 1, 1]
    assert tr.outputs["intersect"] == 1


def test_graham_scan_hints_by_hand():
    # A square with one inner point (node 4), pushed then popped.
    tr = run_graham_scan([0, 2, 2, 0, 1], [0, 0, 2, 2, 0.5])
    assert tr.hints["phase"].argmax(-1).tolist() == [0, 1, 2, 4, 4, 3, 4, 4]
    assert _masks(tr.hints["last_stack"]) == [0, 0, 0, 1, 4, 1, 2, 3]
    assert _masks(tr.hints["i"]) == [0, 0, 0, 1, 4, 2, 2, 3]
    assert tr.hints["in_hull_h"][4].tolist() == [1, 1, 0, 0, 1]
    assert tr.hints["stack_prev"][-1].tolist() == [0, 0, 1, 2, 4]
    assert tr.outputs["in_hull"].tolist() == [1, 1, 1, 1, 0]


# ---------------------------------------------------------------- shapes and determinism


def _check_shapes(alg: str, tr) -> None:
    n = tr.num_nodes
    for name, (stage, loc, typ) in SPECS[alg].items():
        arr = tr.features(stage)[name]
        lead = {Location.NODE: (n,), Location.EDGE: (n, n), Location.GRAPH: ()}[loc]
        if stage == Stage.HINT:
            assert arr.shape[0] == tr.length
            arr = arr[0]
        assert arr.shape[:len(lead)] == lead, (alg, name, arr.shape)
        if typ == Type.CATEGORICAL:
            assert arr.ndim == len(lead) + 1
        else:
            assert arr.shape == lead, (alg, name, arr.shape)


@pytest.mark.parametrize("alg", ALL_CORE)
def test_shapes_and_determinism(alg):
    assert alg in SAMPLERS
    sizes = (2, 3, 7, 16) if alg in ("lcs_length", "naive_string_matcher", "kmp_matcher", "quicksort") else (1, 2, 3, 7, 16)
    for n in sizes:
        a, b, c = sample(alg, n, 11), sample(alg, n, 11), sample(alg, n, 12)
        _check_shapes(alg, a)
        assert a.num_nodes == {"segments_intersect": 4, "optimal_bst": n + 1}.get(alg, n)
        assert a.length == b.length
        for stage in (Stage.INPUT, Stage.OUTPUT, Stage.HINT):
            fa, fb = a.features(stage), b.features(stage)
            assert fa.keys() == fb.keys()
            for k in fa:
                assert fa[k].dtype == fb[k].dtype and np.array_equal(fa[k], fb[k]), (alg, n, k)
        if n >= 3:
            assert any(not np.array_equal(a.inputs[k], c.inputs[k]) for k in a.inputs), alg
        pos = a.inputs["pos"]
        if alg not in ("lcs_length", "naive_string_matcher", "kmp_matcher"):
            np.testing.assert_allclose(pos, np.arange(a.num_nodes) / a.num_nodes)
        else:
            assert (pos >= 0).all() and (pos < 1).all()


# ---------------------------------------------------------------- benchmark variant vs textbook variant, by hand


def test_heapsort_largest_on_swap_steps_by_hand():
    # keys 0.3, 0.1, 0.2: the heap is already a max-heap; BUILD-MAX-HEAP visits positions 2, 1, 0 (one step
    # each); then swap root <-> position 2 (node 2 to the root), MAX-HEAPIFY of the 2-heap, swap root <->
    # position 1 (node 1 to the root), MAX-HEAPIFY of the 1-heap. On a swap step the benchmark writes node 0
    # as `largest`, the textbook variant the node now at the root (2, then 1).
    tr = run_heapsort([0.3, 0.1, 0.2])
    assert tr.hints["phase"].argmax(-1).tolist() == [0, 0, 0, 0, 1, 2, 1, 2]
    assert _masks(tr.hints["largest"]) == [2, 2, 1, 0, 0, 2, 0, 1]
    assert _masks(tr.hints["i"]) == [2, 2, 1, 0, 2, 0, 1, 2]
    assert _masks(tr.hints["j"]) == [2, 2, 1, 0, 0, 2, 2, 1]
    assert _masks(tr.hints["heap_size"]) == [2, 2, 2, 2, 1, 1, 1, 1]
    assert tr.outputs["pred"].tolist() == [2, 1, 1]  # sorted: 1 (0.1), 2 (0.2), 0 (0.3)
    tb = run_heapsort([0.3, 0.1, 0.2], "textbook")
    assert _masks(tb.hints["largest"]) == [2, 2, 1, 0, 2, 2, 1, 1]
    assert all(np.array_equal(tb.hints[k], tr.hints[k]) for k in tr.hints if k != "largest")


def test_quickselect_pivot_and_i_rank_by_hand():
    # keys 0.4, 0.5, 0.3, 0.2, 0.1 (nodes 0..4), rank 2 sought. PARTITION(0, 4) around 0.1 (node 4) moves nothing
    # and places it first; PARTITION(1, 4) around 0.4 (node 0) keeps 0.3, 0.2 low and places 0.4 at position 3;
    # PARTITION(1, 2) around 0.2 (node 3) places it at 1; PARTITION(2, 2) places 0.3 (node 2): the median.
    tr = run_quickselect([0.4, 0.5, 0.3, 0.2, 0.1])
    assert tr.length == 12 and _onehot_index(tr.outputs["median"]) == 2
    assert _masks(tr.hints["pivot"]) == [4, 4, 4, 4, 4, 0, 0, 0, 0, 3, 3, 2]
    assert _masks(tr.hints["p"]) == [0, 0, 0, 0, 4, 1, 2, 2, 2, 2, 3, 2]
    # loop steps: the low side's end as a whole-array position / 5; placing steps: its rank in the subarray / 5
    np.testing.assert_allclose(tr.hints["i_rank"], np.array([0, 0, 0, 0, 0, 1, 2, 3, 2, 1, 0, 0]) / 5)
    np.testing.assert_allclose(tr.hints["target"], np.array([2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 0]) / 5)
    tb = run_quickselect([0.4, 0.5, 0.3, 0.2, 0.1], "textbook")  # ranks within the subarray throughout
    np.testing.assert_allclose(tb.hints["i_rank"], np.array([0, 0, 0, 0, 0, 0, 1, 2, 2, 0, 0, 0]) / 5)
    assert all(np.array_equal(tb.hints[k], tr.hints[k]) for k in tr.hints if k != "i_rank")


def test_quicksort_initial_step_by_hand():
    # keys 0.2, 0.1: one PARTITION(0, 1) around 0.1 — one loop step (0.2 stays high), one step placing the pivot.
    tr = run_quicksort([0.2, 0.1])
    assert tr.length == 2
    assert tr.hints["pred_h"].tolist() == [[0, 0], [1, 1]]
    assert _masks(tr.hints["p"]) == [0, 1] and _masks(tr.hints["r"]) == [1, 0]
    assert _masks(tr.hints["i"]) == [0, 1] and _masks(tr.hints["j"]) == [0, 0]
    tb = run_quicksort([0.2, 0.1], "textbook")  # the textbook variant records the initial state first
    assert tb.length == 3 and tb.hints["pred_h"].tolist() == [[0, 0], [0, 0], [1, 1]]
    assert all(np.array_equal(tb.hints[k][1:], tr.hints[k]) for k in tr.hints)
    assert run_quicksort([0.5], "textbook").length == 1


def test_lcs_blank_cells_by_hand():
    # x = "01" (nodes 0, 1), y = "1" (node 2): the only decisions are cells (0, 2) "up" and (1, 2) "diagonal".
    tr = run_lcs_length([0, 1], [1])
    b = tr.outputs["b"]
    assert b[0, 2].tolist() == [0, 1, 0, 0] and b[1, 2].tolist() == [1, 0, 0, 0]
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]:
        assert b[i, j].tolist() == [0, 0, 0, -1]  # masked
    tb = run_lcs_length([0, 1], [1], "textbook")
    assert tb.outputs["b"][2, 2].tolist() == [0, 0, 0, 1] and tb.outputs["b"][1, 2].tolist() == [1, 0, 0, 0]


_DIFFERS = ("task_scheduling", "heapsort", "quickselect", "quicksort", "bridges", "lcs_length", "optimal_bst")


def test_textbook_variant_changes_only_the_listed_algorithms():
    for alg in algorithms():
        a, b = sample(alg, 9, 5), sample(alg, 9, 5, variant="textbook")
        same = a.length == b.length and all(
            np.array_equal(x.features(st)[k], y.features(st)[k]) for x, y in [(a, b)]
            for st in (Stage.INPUT, Stage.OUTPUT, Stage.HINT) for k in x.features(st))
        if alg not in _DIFFERS:
            assert same, alg
    # and each listed one differs on some input of 9 (optimal_bst: even its node count)
    for alg in _DIFFERS:
        differs = False
        for seed in range(20):
            a, b = sample(alg, 9, seed), sample(alg, 9, seed, variant="textbook")
            differs = a.num_nodes != b.num_nodes or a.length != b.length or any(
                not np.array_equal(a.features(st)[k], b.features(st)[k]) for st in (Stage.OUTPUT, Stage.HINT)
                for k in a.features(st))
            if differs:
                break
        assert differs, alg


def test_training_inputs_randomise_positions_and_needles():
    tr = sample("insertion_sort", 12, 3, inputs="training")
    pos = tr.inputs["pos"]
    assert (np.diff(pos) > 0).all() and 0 <= pos.min() and pos.max() < 1
    assert not np.allclose(pos, np.arange(12) / 12)
    needles = set()
    for seed in range(60):
        t = sample("kmp_matcher", 20, seed, inputs="training")  # the training script's 20-node strings
        m = int(t.inputs["string"].sum())
        needles.add(m)
        p = t.inputs["pos"]
        assert (np.diff(p[:20 - m]) > 0).all() and (np.diff(p[20 - m:]) > 0).all()  # sorted within each string
    assert needles == set(range(1, 9))
    assert int(sample("kmp_matcher", 20, 0).inputs["string"].sum()) == 4  # the benchmark: 20 // 5
    with pytest.raises(ValueError, match="inputs"):
        sample("bfs", 8, 0, inputs="uniform")
    with pytest.raises(ValueError, match="variant"):
        sample("bfs", 8, 0, variant="book")


def test_benchmark_split_sizes():
    assert benchmark_split("bfs", "train") == (1000, 16) and benchmark_split("bfs", "val") == (32, 16)
    assert benchmark_split("bfs", "test") == (32, 64)
    assert benchmark_split("minimum", "test") == (2048, 64) and benchmark_split("kmp_matcher", "val") == (2048, 16)
    assert benchmark_split("find_maximum_subarray_kadane", "test") == (1024, 64)
    assert benchmark_split("minimum", "train") == (1000, 16)
    with pytest.raises(ValueError):
        benchmark_split("bfs", "dev")
