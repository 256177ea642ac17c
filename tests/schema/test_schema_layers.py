"""The schema package imports in one direction: no module imports one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import ferryman.schema

PACKAGE = "ferryman.schema"
ROOT = Path(ferryman.schema.__file__).parent


def _name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


MODULES = {_name(path): path for path in sorted(ROOT.glob("*.py"))}


def _edges(name: str, path: Path) -> set[str]:
    """The modules of the package that ``name`` imports, lazily (inside functions) or not."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from .x import y
                base = package.rsplit(".", node.level - 1)[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # from ferryman.schema import avro: the submodule itself
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                chain = [*path, node]
                return [*chain[chain.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt, [*path, node])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_relative_and_package_imports_are_edges(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("from . import avro\nfrom .compat import x\nfrom ferryman.schema import y\n")
    assert _edges(f"{PACKAGE}.probe", source) == {
        f"{PACKAGE}.avro",
        f"{PACKAGE}.compat",
        PACKAGE,
    }


def test_no_module_of_the_schema_package_imports_itself_back() -> None:
    graph = {name: _edges(name, path) for name, path in MODULES.items()}
    cycle = _cycle(graph)
    assert cycle is None, (
        f"import cycle in {PACKAGE}: {' -> '.join(cycle or [])}; move the shared piece down to a "
        "module both can import"
    )


def test_no_module_of_the_schema_package_is_over_500_lines() -> None:
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"split these modules: {long}"
