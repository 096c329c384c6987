"""CLRS-30 graph algorithms (CLRS3 ch. 22-25): traversals, cuts, components, spanning trees, shortest paths.

Every node of the graph is one node of the trajectory. Inputs are the benchmark's: `pos` (i/n), the weight
matrix `A` (`A[u, v]` = weight of edge u→v, 0 = no edge; 1 for unweighted graphs), `adj` (`A != 0` plus
self-loops, as the benchmark's `probing.graph`) and, for single-source algorithms, the one-hot source `s`.

The hints follow the benchmark's step granularity. The depth-first family (dfs, topological_sort,
articulation_points, bridges, strongly_connected_components, the first phase of dag_shortest_paths) runs
the benchmark's stack-based DFS: the stack is a linked list (`s_prev[v]` = the node below v, `s_last` = the
top), neighbours are scanned in index order from 0 each time a node is on top, and a hint is recorded at each
root, each discovery, each tree edge (push) and each finish (plus, for cut vertices and bridges, each
non-tree edge that lowers `low`). Discovery and finish times advance by 0.01 per event, as in the benchmark.
The benchmark's quirks are kept on purpose: e.g. `v` still names the last scanned node after a scan that
found nothing, and the second SCC pass does not re-time nodes that were pushed (only its roots).

Input distributions are the benchmark's Erdős–Rényi ones: a 0/1 matrix with entries ~ Bernoulli(p), p = 0.5
(0.2 for articulation_points, bridges and mst_kruskal), the reference samplers' defaults that the CLRS-30
test sets use; with `inputs="training"` p is drawn per graph from 0.1..0.9 (halved for those three), as the
reference training script does. Undirected graphs keep `M * M.T` (so an edge has probability p², self-loops p),
DAGs keep the strict upper triangle under a random node permutation, weights are U[0, 1) (undirected:
sqrt(w * w.T + 1e-3), symmetric). SCC uses the benchmark's 4-community graph. Graphs are not forced to be
connected (neither are the benchmark's): unreached nodes keep `pi[v] = v`.

`is_bridge` marks non-edges -1 ("masked": not scored), as the benchmark; `variant="textbook"` writes 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from generators.clrs import register
from generators.clrs.probing import Probes, Trajectory, categorical, one_hot
from generators.clrs.sampling import P_CHOICES, Sampling, edge_probability  # noqa: F401
from generators.clrs.specs import Location, Stage, Type

_IN, _OUT, _H = Stage.INPUT, Stage.OUTPUT, Stage.HINT
_NODE, _EDGE, _GRAPH = Location.NODE, Location.EDGE, Location.GRAPH

_TICK = 0.01  # the benchmark's time step for discovery / finish times


# --------------------------------------------------------------------------------------------------------------
# Input distributions (the edge probability: generators/clrs/sampling.py)


def er_graph(n: int, p: float, rng: np.random.Generator, *, directed: bool, acyclic: bool = False,
             weighted: bool = False) -> np.ndarray:
    """The benchmark's Erdős–Rényi graph as a float64 weight matrix (weights rounded to float32 values)."""
    mat = rng.binomial(1, p, size=(n, n)).astype(np.float64)
    if not directed:
        mat = mat * mat.T
    elif acyclic:
        perm = rng.permutation(n)
        mat = np.triu(mat, k=1)[perm][:, perm]
    if weighted:
        w = rng.uniform(0.0, 1.0, size=(n, n))
        if not directed:
            w = np.sqrt(w * w.T + 1e-3)
        mat = mat * w
    # Stored inputs are float32: run the algorithm on exactly the values a consumer will see.
    return mat.astype(np.float32).astype(np.float64)


def community_graph(n: int, p: float, rng: np.random.Generator, k: int = 4, eps: float = 0.01) -> np.ndarray:
    """The benchmark's SCC input: k directed ER(p) communities, eps-noise edges only "forward" between them."""
    k = max(1, min(k, n))
    mat = np.zeros((n, n))
    bounds = [(i * (n // k), n if i == k - 1 else (i + 1) * (n // k)) for i in range(k)]
    for lo, hi in bounds:
        mat[lo:hi, lo:hi] = er_graph(hi - lo, p, rng, directed=True)
    toggle = er_graph(n, eps, rng, directed=True)
    for i, (lo_i, hi_i) in enumerate(bounds):  # no noise edge from a later community to an earlier one
        for lo_j, hi_j in bounds[:i]:
            toggle[lo_i:hi_i, lo_j:hi_j] = 0.0
    mat = np.where(toggle > 0, 1.0 - (mat > 0), mat)
    perm = rng.permutation(n)
    return mat[perm][:, perm]


def adjacency(A: np.ndarray) -> np.ndarray:
    """The `adj` input: edges of A plus every self-loop (the benchmark's `probing.graph`)."""
    return ((A != 0) | np.eye(len(A), dtype=bool)).astype(np.float32)


def _start(name: str, A: np.ndarray, s: int | None = None) -> Probes:
    n = len(A)
    pr = Probes(name, n)
    pr.input("pos", np.arange(n, dtype=np.float32) / n)
    if s is not None:
        pr.input("s", one_hot(s, n))
    pr.input("A", A)
    pr.input("adj", adjacency(A))
    return pr


def _graph_in(source: bool = False) -> dict[str, tuple[str, str, str]]:
    spec = {"pos": (_IN, _NODE, Type.SCALAR)}
    if source:
        spec["s"] = (_IN, _NODE, Type.MASK_ONE)
    spec["A"] = (_IN, _EDGE, Type.SCALAR)
    spec["adj"] = (_IN, _EDGE, Type.MASK)
    return spec


_STACK_HINTS = {
    "s_prev": (_H, _NODE, Type.POINTER),
    "s": (_H, _NODE, Type.MASK_ONE),
    "u": (_H, _NODE, Type.MASK_ONE),
    "v": (_H, _NODE, Type.MASK_ONE),
    "s_last": (_H, _NODE, Type.MASK_ONE),
}


# --------------------------------------------------------------------------------------------------------------
# The benchmark's stack-based depth-first search, shared by the DFS family


@dataclass
class _Walk:
    """State of one stack-based DFS: colours (0 white, 1 grey, 2 black), times, tree and stack links."""

    n: int
    color: np.ndarray = field(init=False)
    d: np.ndarray = field(init=False)
    f: np.ndarray = field(init=False)
    pi: np.ndarray = field(init=False)
    s_prev: np.ndarray = field(init=False)
    time: float = 0.0
    s: int = 0
    u: int = 0
    v: int = 0
    s_last: int = 0

    def __post_init__(self) -> None:
        self.color = np.zeros(self.n, np.int64)
        self.d = np.zeros(self.n)
        self.f = np.zeros(self.n)
        self.pi = np.arange(self.n, dtype=np.int64)
        self.s_prev = np.arange(self.n, dtype=np.int64)

    def reset_stack(self) -> None:
        """Start a new pass: all white, empty stack (times and tree links carry over)."""
        self.color[:] = 0
        self.s_prev = np.arange(self.n, dtype=np.int64)

    def stack_hints(self) -> dict[str, np.ndarray]:
        n = self.n
        return {"s_prev": self.s_prev, "s": one_hot(self.s, n), "u": one_hot(self.u, n), "v": one_hot(self.v, n),
                "s_last": one_hot(self.s_last, n)}

    def run(self, A: np.ndarray, roots: Iterable[int], emit: Callable[[], None], *, timed: bool,
            on_top: Callable[[int], None] | None = None,
            on_discover: Callable[[int], None] | None = None,
            on_tree: Callable[[int, int], None] | None = None,
            on_back: Callable[[int, int], None] | None = None,
            on_finish: Callable[[int], None] | None = None) -> None:
        """DFS from each still-white root in `roots` over the edges of A, calling `emit` at every hint step.

        `timed`: record discovery/finish times; a pushed (grey) node is then discovered when it first
        reaches the top of the stack (d still 0), else only roots get a discovery step (topological sort).
        `on_back(u, v)`: a non-white neighbour v of u other than u's parent (cuts and bridges): one step each.
        """
        n = self.n
        nbrs = [np.flatnonzero(A[u] != 0).tolist() for u in range(n)]
        for root in roots:
            root = int(root)
            if self.color[root] != 0:
                continue
            self.s = self.u = self.v = self.s_last = root
            emit()
            while True:
                u = self.u
                if on_top is not None:
                    on_top(u)
                if self.color[u] == 0 or (timed and self.d[u] == 0.0):
                    if timed:
                        self.time += _TICK
                        self.d[u] = self.time
                    self.color[u] = 1
                    if on_discover is not None:
                        on_discover(u)
                    emit()
                pushed = False
                for v in nbrs[u]:
                    self.v = v
                    if self.color[v] == 0:  # tree edge: push v
                        self.pi[v] = u
                        self.color[v] = 1
                        self.s_prev[v] = self.s_last
                        self.s_last = v
                        if on_tree is not None:
                            on_tree(u, v)
                        emit()
                        pushed = True
                        break
                    if on_back is not None and v != self.pi[u]:
                        on_back(u, v)
                        emit()
                if not pushed:
                    self.v = n - 1  # the benchmark's scan variable after a full scan over 0..n-1
                if self.s_last == u:  # nothing left to explore from u: finish it and pop
                    self.color[u] = 2
                    if timed:
                        self.time += _TICK
                        self.f[u] = self.time
                    if on_finish is not None:
                        on_finish(u)
                    emit()
                    if self.s_prev[u] == u:
                        break
                    below = self.s_prev[u]
                    self.s_prev[u] = u
                    self.s_last = int(below)
                self.u = self.s_last


# --------------------------------------------------------------------------------------------------------------
# Depth-first search family

_DFS_SPEC = {
    **_graph_in(),
    "pi": (_OUT, _NODE, Type.POINTER),
    "pi_h": (_H, _NODE, Type.POINTER),
    "color": (_H, _NODE, Type.CATEGORICAL),
    "d": (_H, _NODE, Type.SCALAR),
    "f": (_H, _NODE, Type.SCALAR),
    **_STACK_HINTS,
    "time": (_H, _GRAPH, Type.SCALAR),
}


def dfs(A: np.ndarray) -> Trajectory:
    """Depth-first search over all roots in index order (CLRS3 22.3); output: the DFS forest `pi`."""
    n = len(A)
    pr = _start("dfs", A)
    w = _Walk(n)

    def emit() -> None:
        pr.hint(pi_h=w.pi, color=categorical(w.color, 3), d=w.d, f=w.f, time=w.time, **w.stack_hints())

    w.run(A, range(n), emit, timed=True)
    pr.output("pi", w.pi)
    return pr.finish()


@register("dfs", "graphs", _DFS_SPEC)
def sample_dfs(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Directed ER(p) graph."""
    p = edge_probability("dfs", rng, how.inputs)
    return _with_meta(dfs(er_graph(n, p, rng, directed=True)), p=p)


_TOPO_SPEC = {
    **_graph_in(),
    "topo": (_OUT, _NODE, Type.POINTER),
    "topo_head": (_OUT, _NODE, Type.MASK_ONE),
    "topo_h": (_H, _NODE, Type.POINTER),
    "topo_head_h": (_H, _NODE, Type.MASK_ONE),
    "color": (_H, _NODE, Type.CATEGORICAL),
    **_STACK_HINTS,
}


class _TopoList:
    """The topological order as a linked list built at finish times: `nxt[u]` = node after u, head first."""

    def __init__(self, n: int) -> None:
        self.nxt = np.arange(n, dtype=np.int64)
        self.head = 0

    def prepend(self, u: int, color: np.ndarray) -> None:
        if color[self.head] == 2:  # the benchmark's test: an empty list still "heads" at node 0
            self.nxt[u] = self.head
        self.head = u


def topological_sort(A: np.ndarray) -> Trajectory:
    """Topological sort by DFS finish times (CLRS3 22.4); output: successor pointers `topo` from `topo_head`."""
    n = len(A)
    pr = _start("topological_sort", A)
    w, topo = _Walk(n), _TopoList(n)

    def emit() -> None:
        pr.hint(topo_h=topo.nxt, topo_head_h=one_hot(topo.head, n), color=categorical(w.color, 3),
                **w.stack_hints())

    w.run(A, range(n), emit, timed=False, on_finish=lambda u: topo.prepend(u, w.color))
    pr.output("topo", topo.nxt)
    pr.output("topo_head", one_hot(topo.head, n))
    return pr.finish()


@register("topological_sort", "graphs", _TOPO_SPEC)
def sample_topological_sort(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Random DAG (ER(p) upper triangle, nodes permuted)."""
    p = edge_probability("topological_sort", rng, how.inputs)
    return _with_meta(topological_sort(er_graph(n, p, rng, directed=True, acyclic=True)), p=p)


_AP_SPEC = {
    **_graph_in(),
    "is_cut": (_OUT, _NODE, Type.MASK),
    "is_cut_h": (_H, _NODE, Type.MASK),
    "pi_h": (_H, _NODE, Type.POINTER),
    "color": (_H, _NODE, Type.CATEGORICAL),
    "d": (_H, _NODE, Type.SCALAR),
    "f": (_H, _NODE, Type.SCALAR),
    "low": (_H, _NODE, Type.SCALAR),
    "child_cnt": (_H, _NODE, Type.SCALAR),
    **_STACK_HINTS,
    "time": (_H, _GRAPH, Type.SCALAR),
}


def articulation_points(A: np.ndarray) -> Trajectory:
    """Cut vertices of an undirected graph by DFS low-points (CLRS3 problem 22-2); output: `is_cut` mask."""
    n = len(A)
    pr = _start("articulation_points", A)
    w = _Walk(n)
    low, child_cnt, is_cut = np.zeros(n), np.zeros(n), np.zeros(n)

    def emit() -> None:
        pr.hint(is_cut_h=is_cut, pi_h=w.pi, color=categorical(w.color, 3), d=w.d, f=w.f, low=low,
                child_cnt=child_cnt, time=w.time, **w.stack_hints())

    def discover(u: int) -> None:
        low[u] = w.d[u]

    def tree(u: int, v: int) -> None:
        child_cnt[u] += _TICK  # children counted in ticks, as in the benchmark

    def back(u: int, v: int) -> None:
        low[u] = min(low[u], w.d[v])

    def finish(u: int) -> None:
        root = w.pi[u] == u
        for c in np.flatnonzero(w.pi == u):  # u's tree children (and u itself when u is a root)
            low[u] = min(low[u], low[c])
            if not root and low[c] >= w.d[u]:
                is_cut[u] = 1
        if root and child_cnt[u] > _TICK:  # a root with two or more tree children
            is_cut[u] = 1

    w.run(A, range(n), emit, timed=True, on_discover=discover, on_tree=tree, on_back=back, on_finish=finish)
    pr.output("is_cut", is_cut)
    return pr.finish()


@register("articulation_points", "graphs", _AP_SPEC)
def sample_articulation_points(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Undirected ER(p) graph, the sparser p."""
    p = edge_probability("articulation_points", rng, how.inputs)
    return _with_meta(articulation_points(er_graph(n, p, rng, directed=False)), p=p)


_BRIDGES_SPEC = {
    **_graph_in(),
    "is_bridge": (_OUT, _EDGE, Type.MASK),
    "is_bridge_h": (_H, _EDGE, Type.MASK),
    "pi_h": (_H, _NODE, Type.POINTER),
    "color": (_H, _NODE, Type.CATEGORICAL),
    "d": (_H, _NODE, Type.SCALAR),
    "f": (_H, _NODE, Type.SCALAR),
    "low": (_H, _NODE, Type.SCALAR),
    **_STACK_HINTS,
    "time": (_H, _GRAPH, Type.SCALAR),
}


def bridges(A: np.ndarray, variant: str = "benchmark") -> Trajectory:
    """Bridges of an undirected graph by DFS low-points (CLRS3 problem 22-2); output: symmetric `is_bridge`,
    -1 on non-edges (the benchmark's "masked") or, in the textbook variant, 0."""
    n = len(A)
    pr = _start("bridges", A)
    w = _Walk(n)
    low = np.zeros(n)
    is_bridge = adjacency(A).astype(np.float64) - 1.0 if variant == "benchmark" else np.zeros((n, n))

    def emit() -> None:
        pr.hint(is_bridge_h=is_bridge, pi_h=w.pi, color=categorical(w.color, 3), d=w.d, f=w.f, low=low,
                time=w.time, **w.stack_hints())

    def discover(u: int) -> None:
        low[u] = w.d[u]

    def back(u: int, v: int) -> None:
        low[u] = min(low[u], w.d[v])

    def finish(u: int) -> None:
        for c in np.flatnonzero(w.pi == u):
            low[u] = min(low[u], low[c])
            if low[c] > w.d[u]:  # never true for c == u
                is_bridge[u, c] = is_bridge[c, u] = 1

    w.run(A, range(n), emit, timed=True, on_discover=discover, on_back=back, on_finish=finish)
    pr.output("is_bridge", is_bridge)
    return pr.finish()


@register("bridges", "graphs", _BRIDGES_SPEC)
def sample_bridges(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Undirected ER(p) graph, the sparser p."""
    p = edge_probability("bridges", rng, how.inputs)
    return _with_meta(bridges(er_graph(n, p, rng, directed=False), how.variant), p=p)


_SCC_SPEC = {
    **_graph_in(),
    "scc_id": (_OUT, _NODE, Type.POINTER),
    "scc_id_h": (_H, _NODE, Type.POINTER),
    "A_t": (_H, _EDGE, Type.MASK),
    "color": (_H, _NODE, Type.CATEGORICAL),
    "d": (_H, _NODE, Type.SCALAR),
    "f": (_H, _NODE, Type.SCALAR),
    **_STACK_HINTS,
    "time": (_H, _GRAPH, Type.SCALAR),
    "phase": (_H, _GRAPH, Type.MASK),
}


def strongly_connected_components(A: np.ndarray) -> Trajectory:
    """Kosaraju (CLRS3 22.5): DFS on A, then DFS on Aᵀ by decreasing finish time; `scc_id` = each SCC's root."""
    n = len(A)
    pr = _start("strongly_connected_components", A)
    w = _Walk(n)
    scc_id = np.arange(n, dtype=np.int64)
    A_t = A.T.copy()
    adj_t = adjacency(A_t)
    phase = 0

    def emit() -> None:
        pr.hint(scc_id_h=scc_id, A_t=adj_t, color=categorical(w.color, 3), d=w.d, f=w.f, time=w.time,
                phase=float(phase), **w.stack_hints())

    w.run(A, range(n), emit, timed=True)
    order = np.argsort(-w.f, kind="stable")
    w.reset_stack()
    phase = 1

    def top(u: int) -> None:
        scc_id[u] = w.s

    w.run(A_t, order, emit, timed=True, on_top=top)
    pr.output("scc_id", scc_id)
    return pr.finish()


@register("strongly_connected_components", "graphs", _SCC_SPEC)
def sample_strongly_connected_components(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """The benchmark's 4-community directed graph (communities ER(p), eps = 0.01 forward noise)."""
    p = edge_probability("strongly_connected_components", rng, how.inputs)
    return _with_meta(strongly_connected_components(community_graph(n, p, rng)), p=p)


# --------------------------------------------------------------------------------------------------------------
# Breadth-first search

_BFS_SPEC = {
    **_graph_in(source=True),
    "pi": (_OUT, _NODE, Type.POINTER),
    "reach_h": (_H, _NODE, Type.MASK),
    "pi_h": (_H, _NODE, Type.POINTER),
}


def bfs(A: np.ndarray, s: int) -> Trajectory:
    """Breadth-first search, one hint per frontier expansion (all reached nodes relax their edges at once)."""
    n = len(A)
    pr = _start("bfs", A, s)
    idx = np.arange(n)
    reach = np.zeros(n)
    pi = idx.copy()
    reach[s] = 1
    edges = A > 0
    while True:
        prev = reach.copy()
        pr.hint(reach_h=prev, pi_h=pi)
        cand = edges & (prev[:, None] == 1)  # cand[i, j]: reached i has an edge to j
        hit = cand.any(axis=0)
        new = hit & (pi == idx) & (idx != s)
        pi[new] = cand.argmax(axis=0)[new]  # the lowest-index reached neighbour becomes the parent
        reach[hit] = 1
        if (reach == prev).all():
            break
    pr.output("pi", pi)
    return pr.finish()


@register("bfs", "graphs", _BFS_SPEC)
def sample_bfs(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Undirected ER(p) graph, uniform source."""
    p = edge_probability("bfs", rng, how.inputs)
    A = er_graph(n, p, rng, directed=False)
    return _with_meta(bfs(A, int(rng.integers(n))), p=p)


# --------------------------------------------------------------------------------------------------------------
# Minimum spanning trees

_KRUSKAL_SPEC = {
    **_graph_in(),
    "in_mst": (_OUT, _EDGE, Type.MASK),
    "in_mst_h": (_H, _EDGE, Type.MASK),
    "pi": (_H, _NODE, Type.POINTER),
    "u": (_H, _NODE, Type.MASK_ONE),
    "v": (_H, _NODE, Type.MASK_ONE),
    "root_u": (_H, _NODE, Type.MASK_ONE),
    "root_v": (_H, _NODE, Type.MASK_ONE),
    "mask_u": (_H, _NODE, Type.MASK),
    "mask_v": (_H, _NODE, Type.MASK),
    "phase": (_H, _GRAPH, Type.CATEGORICAL),
}


def mst_kruskal(A: np.ndarray) -> Trajectory:
    """Kruskal (CLRS3 23.2) with a disjoint-set forest `pi`: find with path compression, union by larger root.

    phase: 1 while finding u's root, 2 while finding v's root, 0 after the union (and at the start).
    """
    n = len(A)
    pr = _start("mst_kruskal", A)
    pi = np.arange(n, dtype=np.int64)
    in_mst = np.zeros((n, n))
    st = {"u": 0, "v": 0, "ru": 0, "rv": 0, "mu": np.zeros(n), "mv": np.zeros(n)}

    def emit(phase: int) -> None:
        pr.hint(in_mst_h=in_mst, pi=pi, u=one_hot(st["u"], n), v=one_hot(st["v"], n), root_u=one_hot(st["ru"], n),
                root_v=one_hot(st["rv"], n), mask_u=st["mu"], mask_v=st["mv"], phase=categorical(phase, 3))

    emit(0)
    iu, iv = np.nonzero(np.triu(A, k=1) > 0)  # row-major: the benchmark's edge list
    for e in np.argsort(A[iu, iv], kind="stable"):
        u, v = int(iu[e]), int(iv[e])
        mu, mv = one_hot(u, n), one_hot(v, n)
        st.update(u=u, v=v, ru=u, rv=v, mu=mu, mv=mv)
        emit(1)
        for root, mask, phase in (("ru", mu, 1), ("rv", mv, 2)):
            while pi[st[root]] != st[root]:  # climb one link, compressing the path walked so far
                st[root] = int(pi[st[root]])
                pi[mask == 1] = st[root]
                mask[st[root]] = 1
                emit(phase)
        ru, rv = st["ru"], st["rv"]
        if ru != rv:
            in_mst[u, v] = in_mst[v, u] = 1
            pi[min(ru, rv)] = max(ru, rv)
        emit(0)
    pr.output("in_mst", in_mst)
    return pr.finish()


@register("mst_kruskal", "graphs", _KRUSKAL_SPEC)
def sample_mst_kruskal(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Undirected weighted ER(p) graph, p halved."""
    p = edge_probability("mst_kruskal", rng, how.inputs)
    return _with_meta(mst_kruskal(er_graph(n, p, rng, directed=False, weighted=True)), p=p)


_PRIM_SPEC = {
    **_graph_in(source=True),
    "pi": (_OUT, _NODE, Type.POINTER),
    "pi_h": (_H, _NODE, Type.POINTER),
    "key": (_H, _NODE, Type.SCALAR),
    "mark": (_H, _NODE, Type.MASK),
    "in_queue": (_H, _NODE, Type.MASK),
    "u": (_H, _NODE, Type.MASK_ONE),
}


def _extract_min(value: np.ndarray, in_queue: np.ndarray) -> int:
    """The queued node of least value (lowest index on ties); a non-queued node if the queue is empty."""
    return int(np.argmin(value + (1.0 - in_queue) * 1e9))


def mst_prim(A: np.ndarray, s: int) -> Trajectory:
    """Prim from s (CLRS3 23.2), one hint per extract-min; output: tree pointers `pi` of s's component."""
    n = len(A)
    pr = _start("mst_prim", A, s)
    key, mark, in_queue = np.zeros(n), np.zeros(n), np.zeros(n)
    pi = np.arange(n, dtype=np.int64)
    in_queue[s] = 1
    pr.hint(pi_h=pi, key=key, mark=mark, in_queue=in_queue, u=one_hot(s, n))
    for _ in range(n):
        u = _extract_min(key, in_queue)
        if in_queue[u] == 0:
            break
        mark[u], in_queue[u] = 1, 0
        upd = (A[u] != 0) & (mark == 0) & ((in_queue == 0) | (A[u] < key))
        pi[upd], key[upd], in_queue[upd] = u, A[u][upd], 1
        pr.hint(pi_h=pi, key=key, mark=mark, in_queue=in_queue, u=one_hot(u, n))
    pr.output("pi", pi)
    return pr.finish()


@register("mst_prim", "graphs", _PRIM_SPEC)
def sample_mst_prim(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Undirected weighted ER(p) graph, uniform source."""
    p = edge_probability("mst_prim", rng, how.inputs)
    A = er_graph(n, p, rng, directed=False, weighted=True)
    return _with_meta(mst_prim(A, int(rng.integers(n))), p=p)


# --------------------------------------------------------------------------------------------------------------
# Shortest paths

_BF_SPEC = {
    **_graph_in(source=True),
    "pi": (_OUT, _NODE, Type.POINTER),
    "pi_h": (_H, _NODE, Type.POINTER),
    "d": (_H, _NODE, Type.SCALAR),
    "msk": (_H, _NODE, Type.MASK),
}


def bellman_ford(A: np.ndarray, s: int) -> Trajectory:
    """Bellman-Ford (CLRS3 24.1): every round relaxes all edges out of reached nodes, until d stops changing."""
    n = len(A)
    pr = _start("bellman_ford", A, s)
    d, msk = np.zeros(n), np.zeros(n)
    pi = np.arange(n, dtype=np.int64)
    msk[s] = 1
    while True:
        prev_d, prev_msk = d.copy(), msk.copy()
        pr.hint(pi_h=pi, d=prev_d, msk=prev_msk)
        cand = (prev_msk[:, None] == 1) & (A != 0)
        cost = np.where(cand, prev_d[:, None] + A, np.inf)
        best_u, best = cost.argmin(axis=0), cost.min(axis=0)  # first u of least cost, per target v
        hit = cand.any(axis=0)
        upd = hit & ((msk == 0) | (best < d))
        d[upd], pi[upd] = best[upd], best_u[upd]
        msk[hit] = 1
        if (d == prev_d).all():
            break
    pr.output("pi", pi)
    return pr.finish()


@register("bellman_ford", "graphs", _BF_SPEC)
def sample_bellman_ford(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Undirected weighted ER(p) graph, uniform source."""
    p = edge_probability("bellman_ford", rng, how.inputs)
    A = er_graph(n, p, rng, directed=False, weighted=True)
    return _with_meta(bellman_ford(A, int(rng.integers(n))), p=p)


_DIJKSTRA_SPEC = {
    **_graph_in(source=True),
    "pi": (_OUT, _NODE, Type.POINTER),
    "pi_h": (_H, _NODE, Type.POINTER),
    "d": (_H, _NODE, Type.SCALAR),
    "mark": (_H, _NODE, Type.MASK),
    "in_queue": (_H, _NODE, Type.MASK),
    "u": (_H, _NODE, Type.MASK_ONE),
}


def dijkstra(A: np.ndarray, s: int) -> Trajectory:
    """Dijkstra (CLRS3 24.3), one hint per extract-min; output: shortest-path tree `pi`."""
    n = len(A)
    pr = _start("dijkstra", A, s)
    d, mark, in_queue = np.zeros(n), np.zeros(n), np.zeros(n)
    pi = np.arange(n, dtype=np.int64)
    in_queue[s] = 1
    pr.hint(pi_h=pi, d=d, mark=mark, in_queue=in_queue, u=one_hot(s, n))
    for _ in range(n):
        u = _extract_min(d, in_queue)
        if in_queue[u] == 0:
            break
        mark[u], in_queue[u] = 1, 0
        via = d[u] + A[u]
        upd = (A[u] != 0) & (mark == 0) & ((in_queue == 0) | (via < d))
        pi[upd], d[upd], in_queue[upd] = u, via[upd], 1
        pr.hint(pi_h=pi, d=d, mark=mark, in_queue=in_queue, u=one_hot(u, n))
    pr.output("pi", pi)
    return pr.finish()


@register("dijkstra", "graphs", _DIJKSTRA_SPEC)
def sample_dijkstra(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Undirected weighted ER(p) graph, uniform source."""
    p = edge_probability("dijkstra", rng, how.inputs)
    A = er_graph(n, p, rng, directed=False, weighted=True)
    return _with_meta(dijkstra(A, int(rng.integers(n))), p=p)


_DAG_SPEC = {
    **_graph_in(source=True),
    "pi": (_OUT, _NODE, Type.POINTER),
    "pi_h": (_H, _NODE, Type.POINTER),
    "d": (_H, _NODE, Type.SCALAR),
    "mark": (_H, _NODE, Type.MASK),
    "topo_h": (_H, _NODE, Type.POINTER),
    "topo_head_h": (_H, _NODE, Type.MASK_ONE),
    "color": (_H, _NODE, Type.CATEGORICAL),
    "s_prev": (_H, _NODE, Type.POINTER),
    "u": (_H, _NODE, Type.MASK_ONE),
    "v": (_H, _NODE, Type.MASK_ONE),
    "s_last": (_H, _NODE, Type.MASK_ONE),
    "phase": (_H, _GRAPH, Type.MASK),
}


def dag_shortest_paths(A: np.ndarray, s: int) -> Trajectory:
    """DAG shortest paths (CLRS3 24.2): phase 0 topologically sorts what s reaches (DFS from s), phase 1
    relaxes the edges out of each node in that order, one hint per node."""
    n = len(A)
    pr = _start("dag_shortest_paths", A, s)
    w, topo = _Walk(n), _TopoList(n)
    d, mark = np.zeros(n), np.zeros(n)
    pi = np.arange(n, dtype=np.int64)
    phase = 0

    def emit() -> None:
        hints = w.stack_hints()
        del hints["s"]  # `s` is an input here
        pr.hint(pi_h=pi, d=d, mark=mark, topo_h=topo.nxt, topo_head_h=one_hot(topo.head, n),
                color=categorical(w.color, 3), phase=float(phase), **hints)

    w.run(A, [s], emit, timed=False, on_finish=lambda u: topo.prepend(u, w.color))
    phase = 1  # s finished last, so the list starts at s
    mark[s] = 1
    while topo.nxt[topo.head] != topo.head:
        i = topo.head
        mark[i] = 1
        emit()
        via = d[i] + A[i]
        upd = (A[i] != 0) & ((mark == 0) | (via < d))
        d[upd], pi[upd], mark[upd] = via[upd], i, 1
        topo.head = int(topo.nxt[i])
    emit()
    pr.output("pi", pi)
    return pr.finish()


@register("dag_shortest_paths", "graphs", _DAG_SPEC)
def sample_dag_shortest_paths(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Random weighted DAG, uniform source."""
    p = edge_probability("dag_shortest_paths", rng, how.inputs)
    A = er_graph(n, p, rng, directed=True, acyclic=True, weighted=True)
    return _with_meta(dag_shortest_paths(A, int(rng.integers(n))), p=p)


_FW_SPEC = {
    **_graph_in(),
    "Pi": (_OUT, _EDGE, Type.POINTER),
    "Pi_h": (_H, _EDGE, Type.POINTER),
    "D": (_H, _EDGE, Type.SCALAR),
    "msk": (_H, _EDGE, Type.MASK),
    "k": (_H, _NODE, Type.MASK_ONE),
}


def floyd_warshall(A: np.ndarray) -> Trajectory:
    """Floyd-Warshall (CLRS3 25.2), one hint per intermediate node k; `Pi[i, j]` = j's predecessor on i→j."""
    n = len(A)
    pr = _start("floyd_warshall", A)
    D = A.copy()
    msk = adjacency(A).astype(np.float64)
    Pi = np.repeat(np.arange(n, dtype=np.int64)[:, None], n, axis=1)
    for k in range(n):
        pr.hint(Pi_h=Pi, D=D, msk=msk, k=one_hot(k, n))
        cond = (msk[:, k, None] > 0) & (msk[None, k, :] > 0)
        via = D[:, k, None] + D[None, k, :]
        upd = cond & ((msk == 0) | (via < D))
        # Row k cannot improve through k itself (D >= 0), so the old Pi[k] is also the benchmark's in-loop Pi[k].
        D = np.where(upd, via, D)
        Pi = np.where(upd, Pi[k][None, :], Pi)
        msk = np.where(cond, 1.0, msk)
    pr.output("Pi", Pi)
    return pr.finish()


@register("floyd_warshall", "graphs", _FW_SPEC)
def sample_floyd_warshall(n: int, rng: np.random.Generator, how: Sampling) -> Trajectory:
    """Undirected weighted ER(p) graph."""
    p = edge_probability("floyd_warshall", rng, how.inputs)
    return _with_meta(floyd_warshall(er_graph(n, p, rng, directed=False, weighted=True)), p=p)


def _with_meta(traj: Trajectory, **meta: float) -> Trajectory:
    """Record sampling parameters (the edge probability) in the trajectory's meta."""
    traj.meta.update(meta)
    return traj
