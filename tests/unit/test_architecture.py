"""The package's shape, checked from its source: the wings import only downwards, no module
imports itself round a circle, no class grows past 200 lines (docstrings not counted), and only
the cluster wing calls Ray actors (docs/architecture.md)."""

import ast
from pathlib import Path

import hetsync

PACKAGE = Path(hetsync.__file__).parent
# Each module's layer; a module may import only from its own layer or lower ones.
LAYERS = {
    "errors": 0, "models": 0, "data": 0, "emulation": 0,
    "core": 1,
    "config": 2,
    "cluster": 3,
    "run": 4,
    "plots": 5, "compare": 5, "bench": 5,
    "cli": 6,
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield ".".join(["hetsync", *parts]), path


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hetsync"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("hetsync")}
    return found


def test_every_module_has_a_layer_and_imports_only_downwards():
    upward = []
    for module, path in _modules():
        if module == "hetsync":
            continue
        assert _layer(module) is not None, f"{module} has no layer in this test"
        for target in _imports(path):
            if target != "hetsync" and _layer(target) > _layer(module):
                upward.append(f"{module} -> {target}")
    assert not upward


def test_no_import_circles():
    graph = {m: {t for t in _imports(p) if t != "hetsync"} for m, p in _modules()}
    state: dict[str, int] = {}

    def visit(m, trail):
        if state.get(m) == 1:
            raise AssertionError("circle: " + " -> ".join([*trail, m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for t in graph.get(m, ()):
            visit(t, [*trail, m])
        state[m] = 2

    for m in graph:
        visit(m, [])


def _docstring_lines(cls: ast.ClassDef) -> int:
    """Lines of the docstrings in `cls`, its own and its methods': the limit is on code, and
    test_docstrings requires a docstring on every public method, so they must not count."""
    docs = [n.body[0] for n in ast.walk(cls)
            if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and ast.get_docstring(n) is not None]
    return sum(d.end_lineno - d.lineno + 1 for d in docs)


def test_no_class_over_200_lines():
    sizes = [(path.name, node.name, node.end_lineno - node.lineno + 1 - _docstring_lines(node))
             for _, path in _modules()
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.ClassDef)]
    assert not [f"{file}:{name} ({n} lines besides docstrings)" for file, name, n in sizes
                if n > 200]


def test_only_the_cluster_wing_calls_ray_actors_and_the_core_and_run_import_no_ray():
    callers = [str(path.relative_to(PACKAGE)) for _, path in _modules()
               if ".remote(" in path.read_text() and path.parent.name != "cluster"]
    assert not callers
    importers = [str(path.relative_to(PACKAGE)) for _, path in _modules()
                 if path.parent.name in ("core", "run")
                 and any(isinstance(n, (ast.Import, ast.ImportFrom)) and "ray" in (
                     [a.name.split(".")[0] for a in n.names] if isinstance(n, ast.Import)
                     else [(n.module or "").split(".")[0]])
                     for n in ast.walk(ast.parse(path.read_text())))]
    assert not importers
