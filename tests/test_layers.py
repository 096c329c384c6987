"""The import graph runs downward and has no circle (README: "Where things live").

Layers, bottom to top; a module may import its own layer and the ones below, never one above:

    0  contracts                 the shard/manifest contract, storage, the consumer registry
    1  generators                models and samplers (no Ray)
    2  pipeline                  the job spec, stages, executors
    3  vlm, consumers            what reads shards and checkpoints
    4  serve                     the service
    5  synth2                    the command line

Within a layer imports may cross packages, but no set of modules may import each other in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"contracts": 0, "generators": 1, "pipeline": 2, "vlm": 3, "consumers": 3, "serve": 4, "synth2": 5}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in LAYERS if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                # the longest first-party module the name refers to
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def test_every_import_runs_downward():
    upward = sorted(f"{a} -> {b}" for a, deps in _graph().items() for b in deps if _layer(b) > _layer(a))
    assert not upward, "imports that run up a layer (see this file's docstring):\n  " + "\n  ".join(upward)


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(" <-> ".join(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert not cycles, "modules that import each other in a circle:\n  " + "\n  ".join(cycles)


def test_the_graph_is_read():
    graph = _graph()
    assert "pipeline.spec" in graph and "generators.clrs" in graph["pipeline.spec"]
