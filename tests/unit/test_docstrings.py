"""Every public function, method and class in hetsync has a docstring (issue 15), checked
from the source with `ast`, so the list of those that lack one is the failure's message.

Public: the name does not start with `_`, and the definition is at module level or directly
in the body of a public class (a nested class's too). Excluded: dunder methods (`__init__`'s
arguments are the class's business), functions nested in functions (helpers, not API), and a
property's setter or deleter (its getter carries the docstring). Properties are included: to
the caller they are attributes whose meaning and units are not in the name.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "hetsync"


def _is_accessor(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether `node` is a property's setter or deleter (`@name.setter`)."""
    return any(isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter")
               for d in node.decorator_list)


def _public(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.AST]]:
    """The public definitions in `body` and, recursively, in its public classes' bodies."""
    for node in body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if node.name.startswith("_"):
            continue
        if isinstance(node, ast.ClassDef):
            yield prefix + node.name, node
            yield from _public(node.body, f"{prefix}{node.name}.")
        elif not _is_accessor(node):
            yield prefix + node.name, node


def missing_docstrings(package: Path = PACKAGE) -> list[str]:
    """`path:line name` of each public definition under `package` without a docstring."""
    missing = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)
        for name, node in _public(ast.parse(path.read_text()).body, ""):
            if ast.get_docstring(node) is None:
                missing.append(f"{rel}:{node.lineno} {name}")
    return missing


def test_every_public_function_method_and_class_has_a_docstring():
    missing = missing_docstrings()
    assert not missing, f"{len(missing)} without a docstring:\n" + "\n".join(missing)


def test_the_check_sees_what_it_should(tmp_path):
    (tmp_path / "m.py").write_text(
        "def f(): pass\n"
        "def _g(): pass\n"
        "def h():\n    '''Doc.'''\n    def inner(): pass\n"
        "class C:\n"
        "    def __init__(self): pass\n"
        "    def m(self): pass\n"
        "    @property\n    def p(self): return 1\n"
        "    @p.setter\n    def p(self, v): pass\n"
        "    class N:\n        def n(self): pass\n"
        "class _Hidden:\n    def m(self): pass\n")
    assert [line.split(" ")[1] for line in missing_docstrings(tmp_path)] == [
        "f", "C", "C.m", "C.p", "C.N", "C.N.n"]
