"""The package's import graph has no new circle.

The graph is read from the source with `ast` (every ``import`` statement, lazy ones inside
functions included; imports under ``if TYPE_CHECKING:`` are not edges, they never run), over the
four folders the package is installed from. A submodule importing an
ancestor package is not an edge: Python initialises the parent first, and the parents reach their
submodules only lazily. The one circle left is in the core and lazy on purpose: `meta` asks the
decoder registry for a family's defaults, and the decoders read `meta` (`edgedet/meta.py` says so
where it imports them). Any other circle fails this test; the wings (train, calibration,
benchmarks) have none.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FOLDERS = {
    "edgedet": REPO / "edgedet",
    "edgedet.runtimes": REPO / "runtimes",
    "edgedet.calibration": REPO / "calibration",
    "edgedet.benchmarks": REPO / "benchmarks",
}
#: The core's lazy decoder <-> meta loop (see the module docstring).
KNOWN_CORE_LOOP = {
    "edgedet.decoders",
    "edgedet.decoders.base",
    "edgedet.decoders.detr",
    "edgedet.decoders.edgedet_family",
    "edgedet.decoders.end2end",
    "edgedet.decoders.nanodet",
    "edgedet.decoders.yolov5",
    "edgedet.decoders.yolov8",
    "edgedet.decoders.yolox",
    "edgedet.meta",
    "edgedet.protocol",
    "edgedet.runtimes.trt_file",
}


def modules() -> dict[str, tuple[Path, bool]]:
    out: dict[str, tuple[Path, bool]] = {}
    for pkg, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = (path, path.name == "__init__.py")
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body:
                continue
            todo.append(child)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        base = name if is_pkg else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    mod = ".".join(parts + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            deps |= {
                t for t in targets if t in mods and t != name and not name.startswith(t + ".")
            }
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(comp)
    return found


def test_cycle_finder_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_relative_and_lazy_imports() -> None:
    graph = import_graph()
    # relative, at module level
    assert "edgedet.train.channels" in graph["edgedet.train.prune"]
    # lazy, inside a function
    assert "edgedet.train.allocate" in graph["edgedet.train.prune"]


def test_no_import_circle_besides_the_core_decoder_loop() -> None:
    found = cycles(import_graph())
    extra = [sorted(c) for c in found if not c <= KNOWN_CORE_LOOP]
    assert extra == [], f"import circles: {extra}"


def test_pruning_modules_import_only_channels() -> None:
    graph = import_graph()
    for name in ("edgedet.train.allocate", "edgedet.train.reconstruct", "edgedet.train.channels"):
        assert "edgedet.train.prune" not in graph[name], name
