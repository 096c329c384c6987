"""CLRS-30 graph samplers: outputs against networkx, hint series against hand-worked runs, spec and determinism."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from generators.clrs import FAMILIES, algorithms, sample
from generators.clrs import graphs as g
from generators.clrs.probing import Trajectory
from generators.clrs.specs import SPECS

GRAPH_ALGORITHMS = ("dfs", "bfs", "topological_sort", "articulation_points", "bridges", "strongly_connected_components",
                    "mst_kruskal", "mst_prim", "bellman_ford", "dijkstra", "dag_shortest_paths", "floyd_warshall")
# (num_nodes, graphs): long traces (one hint per scanned edge or per union-find step) get fewer big graphs.
_SIZES = {a: ((16, 50), (64, 12)) for a in GRAPH_ALGORITHMS}
_SIZES.update({a: ((16, 44), (64, 6)) for a in ("articulation_points", "bridges", "mst_kruskal")})
_SIZES["floyd_warshall"] = ((16, 50), (64, 4))
_CASES = [(a, n, k) for a in GRAPH_ALGORITHMS for n, k in _SIZES[a]]


def _nx(A: np.ndarray, directed: bool) -> nx.Graph:
    G = nx.DiGraph() if directed else nx.Graph()
    G.add_nodes_from(range(len(A)))
    for u, v in zip(*np.nonzero(A)):
        if u != v:  # self-loops change none of the answers checked here
            G.add_edge(int(u), int(v), weight=float(A[u, v]))
    return G


def _pointer_costs(pi: np.ndarray, A: np.ndarray, s: int) -> dict[int, float]:
    """Cost to each node reached by the pointers (pi[v] != v, or v == s), walking the pointers back to s."""
    out = {s: 0.0}
    for v in range(len(pi)):
        if v == s or pi[v] == v:
            continue
        cost, x = 0.0, v
        for _ in range(len(pi)):
            assert A[pi[x], x] != 0, f"pointer {pi[x]}->{x} is not an edge"
            cost += A[pi[x], x]
            x = int(pi[x])
            if x == s:
                break
        assert x == s, f"pointers from {v} do not lead to the source {s}"
        out[v] = cost
    return out


def _check_shortest(pi: np.ndarray, A: np.ndarray, s: int, directed: bool) -> None:
    want = nx.single_source_dijkstra_path_length(_nx(A, directed), s)
    got = _pointer_costs(pi, A, s)
    assert set(got) == set(want)
    for v, c in want.items():
        assert got[v] == pytest.approx(c, rel=1e-9, abs=1e-9)


def _mst_weight(G: nx.Graph) -> float:
    return nx.minimum_spanning_tree(G).size(weight="weight")


def _check(algorithm: str, t: Trajectory) -> None:
    A = t.inputs["A"].astype(np.float64)
    n = len(A)
    out = t.outputs
    s = int(np.argmax(t.inputs["s"])) if "s" in t.inputs else None
    if algorithm == "bfs":
        G = _nx(A, directed=False)
        dist = nx.single_source_shortest_path_length(G, s)
        pi = out["pi"]
        assert set(_pointer_costs(pi, A, s)) == set(dist)
        for v in dist:
            if v != s:  # a BFS tree, parent = the lowest-index neighbour one layer closer
                closer = [u for u in sorted(G.adj[v]) if dist.get(u) == dist[v] - 1]
                assert pi[v] == closer[0]
    elif algorithm == "dfs":
        want = np.arange(n)
        for u, v in nx.dfs_edges(_nx(A, directed=True)):  # all roots in node order, neighbours ascending
            want[v] = u
        np.testing.assert_array_equal(out["pi"], want)
        d, f = t.hints["d"][-1], t.hints["f"][-1]
        assert (t.hints["color"][-1][:, 2] == 1).all() and (0 < d).all() and (d < f).all()
        for v in np.flatnonzero(out["pi"] != np.arange(n)):  # parenthesis theorem on tree edges
            u = out["pi"][v]
            assert d[u] < d[v] < f[v] < f[u]
    elif algorithm == "topological_sort":
        order = [int(np.argmax(out["topo_head"]))]
        while out["topo"][order[-1]] != order[-1]:
            order.append(int(out["topo"][order[-1]]))
        assert sorted(order) == list(range(n))
        rank = np.argsort(order)
        G = _nx(A, directed=True)
        assert nx.is_directed_acyclic_graph(G)
        assert all(rank[u] < rank[v] for u, v in G.edges)
    elif algorithm == "articulation_points":
        assert set(np.flatnonzero(out["is_cut"]).tolist()) == set(nx.articulation_points(_nx(A, directed=False)))
    elif algorithm == "bridges":
        b = out["is_bridge"]
        np.testing.assert_array_equal(b, b.T)
        # the benchmark's -1 ("masked") on every non-edge, 0/1 on edges and self-loops
        np.testing.assert_array_equal(b == -1, (A == 0) & ~np.eye(n, dtype=bool))
        got = {tuple(e) for e in np.argwhere(np.triu(b) > 0).tolist()}
        assert got == {tuple(sorted(e)) for e in nx.bridges(_nx(A, directed=False))}
    elif algorithm == "strongly_connected_components":
        ids = out["scc_id"]
        got = {frozenset(np.flatnonzero(ids == r).tolist()) for r in set(ids.tolist())}
        assert got == {frozenset(c) for c in nx.strongly_connected_components(_nx(A, directed=True))}
        np.testing.assert_array_equal(ids[ids], ids)  # each id is a member of its own component
    elif algorithm == "mst_kruskal":
        m = out["in_mst"]
        np.testing.assert_array_equal(m, m.T)
        assert not (m.astype(bool) & (A == 0)).any()
        G = _nx(A, directed=False)
        T = nx.Graph()
        T.add_nodes_from(range(n))
        T.add_edges_from((int(u), int(v), {"weight": A[u, v]}) for u, v in np.argwhere(np.triu(m) > 0))
        assert nx.is_forest(T) and T.number_of_edges() == n - nx.number_connected_components(G)
        assert T.size(weight="weight") == pytest.approx(_mst_weight(G), rel=1e-9)
    elif algorithm == "mst_prim":
        G = _nx(A, directed=False)
        comp = nx.node_connected_component(G, s)
        pi = out["pi"]
        _pointer_costs(pi, A, s)  # every tree pointer is an edge and leads back to s
        assert {v for v in range(n) if pi[v] != v} | {s} == comp
        tree_weight = sum(A[pi[v], v] for v in range(n) if pi[v] != v)
        assert tree_weight == pytest.approx(_mst_weight(G.subgraph(comp)), rel=1e-9)
    elif algorithm in ("bellman_ford", "dijkstra"):
        _check_shortest(out["pi"], A, s, directed=False)
    elif algorithm == "dag_shortest_paths":
        assert nx.is_directed_acyclic_graph(_nx(A, directed=True))
        _check_shortest(out["pi"], A, s, directed=True)
    elif algorithm == "floyd_warshall":
        G = _nx(A, directed=False)
        Pi = out["Pi"]
        for i, dist in nx.all_pairs_dijkstra_path_length(G):
            for j in range(n):
                if j == i:
                    continue
                if j not in dist:
                    assert Pi[i, j] == i
                    continue
                cost, x = 0.0, j
                for _ in range(n):
                    assert A[Pi[i, x], x] != 0
                    cost += A[Pi[i, x], x]
                    x = int(Pi[i, x])
                    if x == i:
                        break
                assert x == i and cost == pytest.approx(dist[j], rel=1e-9, abs=1e-9)
    else:
        raise AssertionError(algorithm)


@pytest.mark.parametrize(("algorithm", "n", "count"), _CASES)
def test_outputs_match_networkx(algorithm: str, n: int, count: int) -> None:
    rng = np.random.default_rng([n, GRAPH_ALGORITHMS.index(algorithm)])
    for i in range(count):  # the benchmark's fixed density and the training inputs' sparse to dense graphs
        t = sample(algorithm, n, rng, inputs=("benchmark", "training")[i % 2])
        assert t.num_nodes == n and t.length >= 1
        _check(algorithm, t)


# The hint that ends as the output (the last step records the finished state); Floyd-Warshall records D, Pi
# before each intermediate node, so its last hint precedes the last update.
_LAST_HINT = {"bfs": ("pi_h", "pi"), "dfs": ("pi_h", "pi"), "mst_prim": ("pi_h", "pi"), "dijkstra": ("pi_h", "pi"),
              "bellman_ford": ("pi_h", "pi"), "dag_shortest_paths": ("pi_h", "pi"), "topological_sort": ("topo_h", "topo"),
              "articulation_points": ("is_cut_h", "is_cut"), "bridges": ("is_bridge_h", "is_bridge"),
              "strongly_connected_components": ("scc_id_h", "scc_id"), "mst_kruskal": ("in_mst_h", "in_mst")}


@pytest.mark.parametrize("algorithm", sorted(_LAST_HINT))
def test_last_hint_is_the_output(algorithm: str) -> None:
    h, o = _LAST_HINT[algorithm]
    for seed in range(5):
        t = sample(algorithm, 12, seed)
        np.testing.assert_array_equal(t.hints[h][-1], t.outputs[o])


# The benchmark's feature names by stage: inputs | outputs | hints.
_NAMES = {
    "dfs": "pos A adj | pi | pi_h color d f s_prev s u v s_last time",
    "bfs": "pos s A adj | pi | reach_h pi_h",
    "topological_sort": "pos A adj | topo topo_head | topo_h topo_head_h color s_prev s u v s_last",
    "articulation_points": "pos A adj | is_cut | is_cut_h pi_h color d f low child_cnt s_prev s u v s_last time",
    "bridges": "pos A adj | is_bridge | is_bridge_h pi_h color d f low s_prev s u v s_last time",
    "strongly_connected_components": "pos A adj | scc_id | scc_id_h A_t color d f s_prev s u v s_last time phase",
    "mst_kruskal": "pos A adj | in_mst | in_mst_h pi u v root_u root_v mask_u mask_v phase",
    "mst_prim": "pos s A adj | pi | pi_h key mark in_queue u",
    "bellman_ford": "pos s A adj | pi | pi_h d msk",
    "dijkstra": "pos s A adj | pi | pi_h d mark in_queue u",
    "dag_shortest_paths": "pos s A adj | pi | pi_h d mark topo_h topo_head_h color s_prev u v s_last phase",
    "floyd_warshall": "pos A adj | Pi | Pi_h D msk k",
}


def test_registered_with_the_benchmark_spec() -> None:
    assert set(GRAPH_ALGORITHMS) <= set(algorithms())
    for a in GRAPH_ALGORITHMS:
        assert FAMILIES[a] == "graphs"
        want = [set(part.split()) for part in _NAMES[a].split("|")]
        got = [{k for k, v in SPECS[a].items() if v[0] == stage} for stage in ("input", "output", "hint")]
        assert got == want, a
    assert SPECS["bfs"]["s"] == ("input", "node", "mask_one")
    assert SPECS["dfs"]["color"] == ("hint", "node", "categorical")
    assert SPECS["floyd_warshall"]["Pi"] == ("output", "edge", "pointer")
    assert SPECS["bridges"]["is_bridge"] == ("output", "edge", "mask")
    assert SPECS["strongly_connected_components"]["phase"] == ("hint", "graph", "mask")
    assert SPECS["mst_kruskal"]["phase"] == ("hint", "graph", "categorical")


@pytest.mark.parametrize("algorithm", GRAPH_ALGORITHMS)
def test_same_seed_same_arrays(algorithm: str) -> None:
    a, b, c = sample(algorithm, 16, 7), sample(algorithm, 16, 7), sample(algorithm, 16, 8)
    for stage in ("input", "output", "hint"):
        fa, fb = a.features(stage), b.features(stage)
        assert fa.keys() == fb.keys()
        for k in fa:
            assert fa[k].dtype == fb[k].dtype
            np.testing.assert_array_equal(fa[k], fb[k])
    assert a.length == b.length and a.meta == b.meta
    assert not np.array_equal(a.inputs["A"], c.inputs["A"])


_LOW_P = ("articulation_points", "bridges", "mst_kruskal")


def test_input_distributions() -> None:
    rng = np.random.default_rng(0)
    for a in GRAPH_ALGORITHMS:
        t = sample(a, 16, rng)
        A, adj = t.inputs["A"], t.inputs["adj"]
        np.testing.assert_array_equal(adj, ((A != 0) | np.eye(16, dtype=bool)).astype(np.float32))
        np.testing.assert_allclose(t.inputs["pos"], np.arange(16) / 16)
        # the benchmark's fixed edge probability: 0.5, and 0.2 for the three sparser ones
        assert t.meta["p"] == (0.2 if a in _LOW_P else 0.5), a
        tr = sample(a, 16, rng, inputs="training")  # the training script's p per graph, halved for those three
        assert tr.meta["p"] in (tuple(p / 2 for p in g.P_CHOICES) if a in _LOW_P else g.P_CHOICES), a
        assert tr.meta["inputs"] == "training" and t.meta["inputs"] == "benchmark"
        if a in ("bfs", "articulation_points", "bridges", "mst_kruskal", "mst_prim", "bellman_ford", "dijkstra",
                 "floyd_warshall"):
            np.testing.assert_array_equal(A, A.T)
        if a in ("topological_sort", "dag_shortest_paths"):
            assert nx.is_directed_acyclic_graph(_nx(A, directed=True)) and not np.diag(A).any()
        weighted = a in ("mst_kruskal", "mst_prim", "bellman_ford", "dijkstra", "dag_shortest_paths", "floyd_warshall")
        assert set(np.unique(A)) <= {0.0, 1.0} or weighted
        assert ((A >= 0) & (A <= 1.001)).all()
    # undirected ER keeps M * M.T: about p² of the pairs are edges
    A = g.er_graph(400, 0.5, np.random.default_rng(1), directed=False)
    assert abs(np.triu(A, 1).sum() / (400 * 399 / 2) - 0.25) < 0.01


def test_benchmark_densities_are_fixed_and_training_densities_spread() -> None:
    # Undirected pairs are edges with probability p²: 0.25 for bfs, 0.04 for bridges, the same in every graph
    # of the benchmark's inputs; the training inputs draw p per graph, so their densities spread.
    def density(a: str, inputs: str) -> np.ndarray:
        out = []
        for seed in range(30):
            A = sample(a, 16, seed, inputs=inputs).inputs["A"]
            out.append(np.triu(A != 0, 1).sum() / (16 * 15 / 2))
        return np.array(out)

    bfs, br = density("bfs", "benchmark"), density("bridges", "benchmark")
    assert abs(bfs.mean() - 0.25) < 0.02 and abs(br.mean() - 0.04) < 0.01
    spread = density("bfs", "training")
    assert spread.std() > 3 * bfs.std() and spread.min() < 0.1 < 0.5 < spread.max()


# ---------------------------------------------------------------------------------------------------------------
# Hint series worked by hand from the pseudocode


def _adj(n: int, edges, *, directed: bool) -> np.ndarray:
    A = np.zeros((n, n))
    for e in edges:
        u, v, w = e if len(e) == 3 else (*e, 1.0)
        A[u, v] = w
        if not directed:
            A[v, u] = w
    return A


def _one_hots(idx, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[idx]


def _masks(rows: str) -> np.ndarray:
    """'1000 1100' -> [[1,0,0,0],[1,1,0,0]]"""
    return np.array([[int(c) for c in r] for r in rows.split()], dtype=np.float32)


def test_bfs_hints_by_hand() -> None:
    # 0-1, 1-2, 0-3, 3-2, 2-4 from 0: node 2 is reached from 1 and 3 in the same round; 1 (lower index) wins.
    t = g.bfs(_adj(5, [(0, 1), (1, 2), (0, 3), (3, 2), (2, 4)], directed=False), 0)
    np.testing.assert_array_equal(t.hints["reach_h"], _masks("10000 11010 11110 11111"))
    np.testing.assert_array_equal(t.hints["pi_h"], [[0, 1, 2, 3, 4], [0, 0, 2, 0, 4], [0, 0, 1, 0, 4], [0, 0, 1, 0, 2]])
    np.testing.assert_array_equal(t.outputs["pi"], [0, 0, 1, 0, 2])
    np.testing.assert_array_equal(t.inputs["s"], [1, 0, 0, 0, 0])
    assert t.length == 4


def test_dfs_hints_by_hand() -> None:
    # 0→1, 0→2, 1→2, 2→0, 3→2: the tree 0→1→2 from root 0, then root 3 alone (its edge leads to a black node).
    t = g.dfs(_adj(4, [(0, 1), (0, 2), (1, 2), (2, 0), (3, 2)], directed=True))
    h = t.hints
    assert t.length == 12
    # steps: root 0, discover 0, push 1, discover 1, push 2, discover 2, finish 2, finish 1, finish 0,
    #        root 3, discover 3, finish 3
    np.testing.assert_array_equal(h["u"], _one_hots([0, 0, 0, 1, 1, 2, 2, 1, 0, 3, 3, 3], 4))
    np.testing.assert_array_equal(h["v"], _one_hots([0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3], 4))
    np.testing.assert_array_equal(h["s_last"], _one_hots([0, 0, 1, 1, 2, 2, 2, 1, 0, 3, 3, 3], 4))
    np.testing.assert_array_equal(h["s"], _one_hots([0] * 9 + [3] * 3, 4))
    colors = "0000 1000 1100 1100 1110 1110 1120 1220 2220 2220 2221 2222".split()
    np.testing.assert_array_equal(h["color"].argmax(-1), [[int(c) for c in r] for r in colors])
    np.testing.assert_allclose(h["time"], 0.01 * np.array([0, 1, 1, 2, 2, 3, 4, 5, 6, 6, 7, 8]), atol=1e-6)
    d = [[0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 2, 0, 0], [1, 2, 0, 0]] + [[1, 2, 3, 0]] * 5 + [[1, 2, 3, 7]] * 2
    f = [[0, 0, 0, 0]] * 6 + [[0, 0, 4, 0], [0, 5, 4, 0]] + [[6, 5, 4, 0]] * 3 + [[6, 5, 4, 8]]
    np.testing.assert_allclose(h["d"], 0.01 * np.array(d), atol=1e-6)
    np.testing.assert_allclose(h["f"], 0.01 * np.array(f), atol=1e-6)
    np.testing.assert_array_equal(h["pi_h"], [[0, 1, 2, 3]] * 2 + [[0, 0, 2, 3]] * 2 + [[0, 0, 1, 3]] * 8)
    np.testing.assert_array_equal(h["s_prev"], [[0, 1, 2, 3]] * 2 + [[0, 0, 2, 3]] * 2 + [[0, 0, 1, 3]] * 3
                                  + [[0, 0, 2, 3]] + [[0, 1, 2, 3]] * 4)
    np.testing.assert_array_equal(t.outputs["pi"], [0, 0, 1, 3])


def test_dijkstra_hints_by_hand() -> None:
    # 0-1:4, 0-2:1, 2-1:2, 1-3:5, 2-3:8 from 0: node 1 improves 4→3 via 2, node 3 improves 9→8 via 1.
    t = g.dijkstra(_adj(4, [(0, 1, 4), (0, 2, 1), (2, 1, 2), (1, 3, 5), (2, 3, 8)], directed=False), 0)
    h = t.hints
    assert t.length == 5
    np.testing.assert_array_equal(h["u"], _one_hots([0, 0, 2, 1, 3], 4))
    np.testing.assert_array_equal(h["d"], [[0, 0, 0, 0], [0, 4, 1, 0], [0, 3, 1, 9], [0, 3, 1, 8], [0, 3, 1, 8]])
    np.testing.assert_array_equal(h["mark"], _masks("0000 1000 1010 1110 1111"))
    np.testing.assert_array_equal(h["in_queue"], _masks("1000 0110 0101 0001 0000"))
    np.testing.assert_array_equal(h["pi_h"], [[0, 1, 2, 3], [0, 0, 0, 3], [0, 2, 0, 2], [0, 2, 0, 1], [0, 2, 0, 1]])
    np.testing.assert_array_equal(t.outputs["pi"], [0, 2, 0, 1])


_MST_EDGES = [(0, 1, 0.5), (1, 2, 0.1), (0, 2, 0.3), (2, 3, 0.4)]


def test_mst_kruskal_hints_by_hand() -> None:
    # Edges by weight: 1-2, 0-2, 2-3 join trees; 0-1 then finds both roots = 3 (compressing paths) and is skipped.
    t = g.mst_kruskal(_adj(4, _MST_EDGES, directed=False))
    h = t.hints
    assert t.length == 13
    # start | 1-2: begin, union | 0-2: begin, union | 2-3: begin, union | 0-1: begin, u-climb x2, v-climb x2, skip
    np.testing.assert_array_equal(h["phase"].argmax(-1), [0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 2, 2, 0])
    np.testing.assert_array_equal(h["u"], _one_hots([0, 1, 1, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0], 4))
    np.testing.assert_array_equal(h["v"], _one_hots([0, 2, 2, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1], 4))
    np.testing.assert_array_equal(h["root_u"], _one_hots([0, 1, 1, 0, 0, 2, 2, 0, 2, 3, 3, 3, 3], 4))
    np.testing.assert_array_equal(h["root_v"], _one_hots([0, 2, 2, 2, 2, 3, 3, 1, 1, 1, 2, 3, 3], 4))
    np.testing.assert_array_equal(h["pi"], [[0, 1, 2, 3], [0, 1, 2, 3], [0, 2, 2, 3], [0, 2, 2, 3], [2, 2, 2, 3],
                                            [2, 2, 2, 3], [2, 2, 3, 3], [2, 2, 3, 3], [2, 2, 3, 3], [3, 2, 3, 3],
                                            [3, 2, 3, 3], [3, 3, 3, 3], [3, 3, 3, 3]])
    np.testing.assert_array_equal(h["mask_u"], _masks("0000 0100 0100 1000 1000 0010 0010 1000 1010 1011 1011 1011 1011"))
    np.testing.assert_array_equal(h["mask_v"], _masks("0000 0010 0010 0010 0010 0001 0001 0100 0100 0100 0110 0111 0111"))
    in_mst = h["in_mst_h"]
    assert [int(m.sum()) // 2 for m in in_mst] == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3]
    want = _adj(4, [(1, 2), (0, 2), (2, 3)], directed=False)
    np.testing.assert_array_equal(t.outputs["in_mst"], want)


def test_mst_prim_hints_by_hand() -> None:
    # From 0: take 0 (keys 1:.5, 2:.3), take 2 (1 improves to .1, 3 gets .4), take 1, take 3.
    t = g.mst_prim(_adj(4, _MST_EDGES, directed=False), 0)
    h = t.hints
    assert t.length == 5
    np.testing.assert_array_equal(h["u"], _one_hots([0, 0, 2, 1, 3], 4))
    np.testing.assert_allclose(h["key"], [[0, 0, 0, 0], [0, 0.5, 0.3, 0], [0, 0.1, 0.3, 0.4], [0, 0.1, 0.3, 0.4],
                                          [0, 0.1, 0.3, 0.4]], atol=1e-6)
    np.testing.assert_array_equal(h["mark"], _masks("0000 1000 1010 1110 1111"))
    np.testing.assert_array_equal(h["in_queue"], _masks("1000 0110 0101 0001 0000"))
    np.testing.assert_array_equal(h["pi_h"], [[0, 1, 2, 3], [0, 0, 0, 3], [0, 2, 0, 2], [0, 2, 0, 2], [0, 2, 0, 2]])
    np.testing.assert_array_equal(t.outputs["pi"], [0, 2, 0, 2])


def test_topological_sort_hints_by_hand() -> None:
    # 0→1, 2→0: root 0 (push 1, finish 1, finish 0), then root 2 (finish 2): order 2, 0, 1.
    t = g.topological_sort(_adj(3, [(0, 1), (2, 0)], directed=True))
    h = t.hints
    # steps: root 0, discover 0, push 1, finish 1, finish 0, root 2, discover 2, finish 2
    # (a pushed node is grey already, so topological sort records no separate discovery for it)
    assert t.length == 8
    np.testing.assert_array_equal(h["u"], _one_hots([0, 0, 0, 1, 0, 2, 2, 2], 3))
    np.testing.assert_array_equal(h["color"].argmax(-1), [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 2, 0], [2, 2, 0],
                                                          [2, 2, 0], [2, 2, 1], [2, 2, 2]])
    np.testing.assert_array_equal(h["topo_head_h"], _one_hots([0, 0, 0, 1, 0, 0, 0, 2], 3))
    np.testing.assert_array_equal(h["topo_h"], [[0, 1, 2]] * 4 + [[1, 1, 2]] * 3 + [[1, 1, 0]])
    np.testing.assert_array_equal(t.outputs["topo"], [1, 1, 0])
    np.testing.assert_array_equal(t.outputs["topo_head"], [0, 0, 1])


def test_articulation_points_and_bridges_by_hand() -> None:
    # A triangle 0-1-2 with a tail 2-3: 2 is the only cut vertex, 2-3 the only bridge.
    A = _adj(4, [(0, 1), (1, 2), (2, 0), (2, 3)], directed=False)
    ap, br = g.articulation_points(A), g.bridges(A)
    np.testing.assert_array_equal(ap.outputs["is_cut"], [0, 0, 1, 0])
    # the benchmark: 1 on the bridge, 0 on the other edges and the self-loops, -1 (masked) on the non-edges 0-3, 1-3
    np.testing.assert_array_equal(br.outputs["is_bridge"], [[0, 0, 0, -1], [0, 0, 0, -1], [0, 0, 0, 1], [-1, -1, 1, 0]])
    np.testing.assert_array_equal(br.hints["is_bridge_h"][0], [[0, 0, 0, -1], [0, 0, 0, -1], [0, 0, 0, 0], [-1, -1, 0, 0]])
    textbook = g.bridges(A, "textbook")
    np.testing.assert_array_equal(textbook.outputs["is_bridge"], _adj(4, [(2, 3)], directed=False))
    for k in br.hints:
        if k != "is_bridge_h":
            np.testing.assert_array_equal(textbook.hints[k], br.hints[k])
    # DFS 0→1→2→3; finishing 3 leaves low = d; 2 sees back edge 2-0 (low[2] = d[0]), so 1-2 and 0-1 are no bridges.
    np.testing.assert_allclose(ap.hints["low"][-1], [0.01, 0.01, 0.01, 0.04], atol=1e-6)
    np.testing.assert_allclose(ap.hints["child_cnt"][-1], [0.01, 0.01, 0.01, 0.0], atol=1e-6)


def test_bellman_ford_hints_by_hand() -> None:
    # 0-1:4, 0-2:1, 2-1:2 from 0: round 1 reaches 1 (4) and 2 (1), round 2 improves 1 to 3 via 2, round 3 is quiet.
    t = g.bellman_ford(_adj(3, [(0, 1, 4), (0, 2, 1), (2, 1, 2)], directed=False), 0)
    h = t.hints
    assert t.length == 3
    np.testing.assert_array_equal(h["d"], [[0, 0, 0], [0, 4, 1], [0, 3, 1]])
    np.testing.assert_array_equal(h["msk"], _masks("100 111 111"))
    np.testing.assert_array_equal(h["pi_h"], [[0, 1, 2], [0, 0, 0], [0, 2, 0]])
    np.testing.assert_array_equal(t.outputs["pi"], [0, 2, 0])


def test_floyd_warshall_hints_by_hand() -> None:
    # The path 0-1-2: only k = 1 adds the pair (0, 2) in both directions, with predecessor 1.
    t = g.floyd_warshall(_adj(3, [(0, 1, 1), (1, 2, 1)], directed=False))
    h = t.hints
    A = [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    np.testing.assert_array_equal(h["k"], _one_hots([0, 1, 2], 3))
    np.testing.assert_array_equal(h["D"], [A, A, [[0, 1, 2], [1, 0, 1], [2, 1, 0]]])
    start = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]])
    np.testing.assert_array_equal(h["msk"], [start, start, np.ones((3, 3))])
    pi0 = [[0, 0, 0], [1, 1, 1], [2, 2, 2]]
    np.testing.assert_array_equal(h["Pi_h"], [pi0, pi0, [[0, 0, 1], [1, 1, 1], [1, 2, 2]]])
    np.testing.assert_array_equal(t.outputs["Pi"], [[0, 0, 1], [1, 1, 1], [1, 2, 2]])


def test_dag_shortest_paths_hints_by_hand() -> None:
    # 0→1:1, 0→2:4, 1→2:2, 2→3:1 from 0. Phase 0: DFS 0→1→2→3 (pushed nodes get no discovery step), finishing
    # 3, 2, 1, 0 builds the list 0, 1, 2, 3. Phase 1 relaxes out of 0, 1, 2 (2 improves 4→3 via 1), then a last step.
    t = g.dag_shortest_paths(_adj(4, [(0, 1, 1), (0, 2, 4), (1, 2, 2), (2, 3, 1)], directed=True), 0)
    h = t.hints
    assert t.length == 13
    np.testing.assert_array_equal(h["phase"], [0] * 9 + [1] * 4)
    np.testing.assert_array_equal(h["u"], _one_hots([0, 0, 0, 1, 2, 3, 2, 1, 0, 0, 0, 0, 0], 4))
    np.testing.assert_array_equal(h["v"], _one_hots([0, 0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3], 4))
    np.testing.assert_array_equal(h["topo_head_h"], _one_hots([0, 0, 0, 0, 0, 3, 2, 1, 0, 0, 1, 2, 3], 4))
    np.testing.assert_array_equal(h["topo_h"][-1], [1, 2, 3, 3])
    np.testing.assert_array_equal(h["d"][8:], [[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 4, 0], [0, 1, 3, 0], [0, 1, 3, 4]])
    np.testing.assert_array_equal(h["mark"][8:], _masks("0000 1000 1110 1110 1111"))
    np.testing.assert_array_equal(h["pi_h"][8:], [[0, 1, 2, 3], [0, 1, 2, 3], [0, 0, 0, 3], [0, 0, 1, 3], [0, 0, 1, 2]])
    np.testing.assert_array_equal(t.outputs["pi"], [0, 0, 1, 2])


def test_strongly_connected_components_hints_by_hand() -> None:
    # 0→1, 1→0, 1→2. Pass 1 (on A) finishes 2, 1, 0; pass 2 (on Aᵀ, by decreasing finish) grows {0, 1} from 0,
    # then {2} from 2. Only pass-2 roots are re-timed: node 1 keeps its pass-1 discovery time.
    t = g.strongly_connected_components(_adj(3, [(0, 1), (1, 0), (1, 2)], directed=True))
    h = t.hints
    assert t.length == 17
    np.testing.assert_array_equal(h["phase"], [0] * 9 + [1] * 8)
    np.testing.assert_array_equal(h["s"], _one_hots([0] * 14 + [2] * 3, 3))
    np.testing.assert_array_equal(h["u"], _one_hots([0, 0, 0, 1, 1, 2, 2, 1, 0, 0, 0, 0, 1, 0, 2, 2, 2], 3))
    np.testing.assert_allclose(h["time"], 0.01 * np.array([0, 1, 1, 2, 2, 3, 4, 5, 6, 6, 7, 7, 8, 9, 9, 10, 11]),
                               atol=1e-6)
    np.testing.assert_array_equal(h["scc_id_h"], [[0, 1, 2]] * 12 + [[0, 0, 2]] * 5)
    np.testing.assert_array_equal(h["color"][9].argmax(-1), [0, 0, 0])  # pass 2 starts all white
    np.testing.assert_allclose(h["d"][-1], [0.07, 0.02, 0.10], atol=1e-6)
    np.testing.assert_allclose(h["f"][-1], [0.09, 0.08, 0.11], atol=1e-6)
    np.testing.assert_array_equal(h["A_t"][0], _masks("110 110 011"))  # Aᵀ edges 1→0, 0→1, 2→1 plus self-loops
    np.testing.assert_array_equal(t.outputs["scc_id"], [0, 0, 2])
