"""The public surface and the layering, enforced by tests rather than convention.

Data flows one way: user code -> service -> stores -> rpc -> runtime -> topics/config ->
schema/broker -> records -> errors. Every module of ``src/ferryman`` stands on a floor of
``FLOORS`` and imports only from lower floors, by absolute import from the module that defines
the name, and no modules or packages import each other. ``python tests/test_layers.py
[PACKAGE_DIR]`` prints every break at once.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = "ferryman"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / ROOT

FLOORS: dict[str, int] = {
    "ferryman.errors": 0,
    "ferryman.clock": 0,
    "ferryman.records": 1,
    "ferryman.broker": 2,
    "ferryman.schema": 2,
    "ferryman.topics": 3,
    "ferryman.config": 3,
    "ferryman.observability": 3,
    "ferryman.runtime": 4,
    "ferryman.rpc": 5,
    "ferryman.stores": 6,
    "ferryman.service": 7,
    # Inside service: the database side, then the Service that composes it.
    "ferryman.service.joins": 0,
    "ferryman.service.running": 0,
    "ferryman.service.data": 1,
    "ferryman.service.observing": 2,
    "ferryman.service.core": 3,
    "ferryman.demo": 8,
    "ferryman.testing": 8,
    "ferryman.system": 8,
    "ferryman.cli": 9,
    # Inside broker: the protocol and the partitioner, then the backends that implement them.
    "ferryman.broker.base": 0,
    "ferryman.broker.partitioner": 0,
    "ferryman.broker.embedded": 1,
    "ferryman.broker.kafka": 1,
    # Inside testing: the clock, matching and the harness, then what finds the running test's.
    "ferryman.testing.clock": 0,
    "ferryman.testing.matching": 0,
    "ferryman.testing.waiting": 0,
    "ferryman.testing.harness": 1,
    "ferryman.testing.active": 2,
    "ferryman.testing.plugin": 3,
    "ferryman.testing.contract": 3,
}
"""Where each module or package stands, lowest floor first; siblings are compared.

A module may import from a sibling on a lower floor, never from a higher one nor from a
different sibling on its own floor (``broker`` and ``schema`` stand side by side: neither knows
the other). Every child of a package listed here must be listed too ("add it to the floor
table"), so a new module is placed deliberately; inside an unlisted package (``runtime``) modules
are free in their order but no two may import each other. A package's ``__init__`` may import its
own modules. The root ``ferryman/__init__.py`` is the facade for users: nothing in the package
imports it. ``stores``, ``service`` and ``testing`` are placed before they exist.
"""


class Module(NamedTuple):
    """One module of the package: its dotted name, its file, and whether it is a package."""

    name: str
    path: Path
    is_package: bool


class Import(NamedTuple):
    """One ``ferryman`` module importing another, where it does it."""

    source: Module
    target: str
    line: int


@dataclass
class Report:
    """Every break of the layering, by kind; each entry is one readable line."""

    unplaced: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    floors: list[str] = field(default_factory=list)
    module_cycles: list[str] = field(default_factory=list)
    package_cycles: list[str] = field(default_factory=list)

    def sections(self) -> Iterator[tuple[str, list[str]]]:
        yield "modules missing from the floor table", self.unplaced
        yield "imports that bypass the defining module", self.imports
        yield "imports that go up a floor or sideways", self.floors
        yield "cycles between modules", self.module_cycles
        yield "cycles between packages", self.package_cycles


def where(module: Module, line: int) -> str:
    path = module.path
    if path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    return f"{path}:{line}"


def modules_of(package_dir: Path) -> dict[str, Module]:
    found: dict[str, Module] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [ROOT, *path.relative_to(package_dir).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path, is_package)
    return found


def parse(module: Module) -> ast.Module:
    return ast.parse(module.path.read_text(), str(module.path))


def absolute(module: Module, node: ast.ImportFrom) -> str:
    """The absolute name ``from ... import`` reads from, for relative imports too."""
    if node.level == 0:
        return node.module or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def reexports(module: Module) -> dict[str, str]:
    """Names a package's ``__init__`` takes from other modules: name -> defining module."""
    names: dict[str, str] = {}
    for node in parse(module).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.asname or alias.name] = absolute(module, node)
    return names


def scan(modules: Mapping[str, Module], report: Report) -> list[Import]:
    """Every import between ``ferryman`` modules (lazy and TYPE_CHECKING ones too, as both
    still tie the modules together); bypassing imports go to ``report.imports``."""
    facades = {name: reexports(m) for name, m in modules.items() if m.is_package}
    edges: list[Import] = []
    for module in modules.values():
        statements = (
            n for n in ast.walk(parse(module)) if isinstance(n, ast.Import | ast.ImportFrom)
        )
        for node in sorted(statements, key=lambda n: n.lineno):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != ROOT:
                        continue
                    edges.append(Import(module, alias.name, node.lineno))
                    at = where(module, node.lineno)
                    if alias.asname:
                        report.imports.append(
                            f"{at}: `import {alias.name} as {alias.asname}` hides a module behind "
                            f"an alias: import the names used with `from {alias.name} import ...`"
                        )
                    else:
                        report.imports.append(
                            f"{at}: `import {alias.name}` binds the facade `ferryman` inside the "
                            f"package: import the names used with `from {alias.name} import ...`"
                        )
            elif isinstance(node, ast.ImportFrom):
                source = absolute(module, node)
                if source.split(".")[0] != ROOT:
                    continue
                at = where(module, node.lineno)
                names = ", ".join(a.name for a in node.names)
                if node.level:
                    report.imports.append(
                        f"{at}: relative import `from {'.' * node.level}{node.module or ''} "
                        f"import {names}`: write `from {source} import {names}`"
                    )
                bypassed: dict[str, list[str]] = {}  # defining module -> names read elsewhere
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in modules:
                        edges.append(Import(module, submodule, node.lineno))
                        if alias.asname:
                            report.imports.append(
                                f"{at}: `from {source} import {alias.name} as {alias.asname}` "
                                f"hides a module behind an alias: import the names used with "
                                f"`from {submodule} import ...`"
                            )
                        continue
                    edges.append(Import(module, source, node.lineno))
                    defining = facades.get(source, {}).get(alias.name, source)
                    if source == ROOT or defining != source:
                        bypassed.setdefault(defining, []).append(alias.name)
                for defining, read in bypassed.items():
                    names = ", ".join(read)
                    facade = "the users' facade" if source == ROOT else "a package's re-exports"
                    report.imports.append(
                        f"{at}: `from {source} import {names}` goes through {facade}: "
                        + (
                            f"write `from {defining} import {names}`"
                            if defining != ROOT
                            else "import from the defining module"
                        )
                    )
    unique = {(e.source.name, e.target, e.line): e for e in edges}
    return [e for e in unique.values() if e.target in modules and e.target != e.source.name]


def has_listed_children(package: str, floors: Mapping[str, int]) -> bool:
    return package == ROOT or any(key.rpartition(".")[0] == package for key in floors)


def place(name: str, floors: Mapping[str, int]) -> str | None:
    """The first ancestor of ``name`` (or itself) missing from a table that lists its siblings."""
    parts = name.split(".")
    for depth in range(2, len(parts) + 1):
        unit = ".".join(parts[:depth])
        if has_listed_children(".".join(parts[: depth - 1]), floors) and unit not in floors:
            return unit
    return None


def check_floor(edge: Import, floors: Mapping[str, int]) -> str | None:
    source, target = edge.source.name.split("."), edge.target.split(".")
    if edge.target == ROOT or len(source) == 1:
        return None  # the facade: reported as an import that bypasses the defining module
    common = 0
    while common < min(len(source), len(target)) and source[common] == target[common]:
        common += 1
    if common in (len(source), len(target)):
        return None  # a package and its own modules: only cycles are forbidden there
    parent = ".".join(source[:common])
    mine, theirs = ".".join(source[: common + 1]), ".".join(target[: common + 1])
    if not has_listed_children(parent, floors) or mine not in floors or theirs not in floors:
        return None  # unlisted package (free order) or unplaced module (reported on its own)
    at = where(edge.source, edge.line)
    if floors[theirs] > floors[mine]:
        return (
            f"{at}: {edge.source.name} imports {edge.target}, but {theirs} (floor "
            f"{floors[theirs]}) stands above {mine} (floor {floors[mine]}): move the shared piece "
            "down, or the importer up"
        )
    if floors[theirs] == floors[mine]:
        return (
            f"{at}: {edge.source.name} imports {edge.target}, but {mine} and {theirs} stand side "
            f"by side on floor {floors[mine]}: neither may know the other"
        )
    return None


def knots(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def shortest_cycle(start: str, graph: Mapping[str, set[str]], within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one component (breadth first)."""
    paths = {nxt: [start, nxt] for nxt in sorted(graph[start]) if nxt in within}
    frontier = list(paths)
    while start not in paths:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt in within and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    return paths[start]


def describe(cycle: list[str], sites: Mapping[tuple[str, str], Import]) -> str:
    hops = [cycle[0]]
    for a, b in pairwise(cycle):
        site = sites[a, b]
        hops.append(f"{b} ({where(site.source, site.line)})")
    return " -> ".join(hops)


def cycles(edges: Iterable[Import], unit_of: Mapping[str, str]) -> list[tuple[list[str], str]]:
    """Knots of the graph whose nodes are ``unit_of[module]``, each with its shortest cycle."""
    graph: dict[str, set[str]] = {}
    sites: dict[tuple[str, str], Import] = {}
    for edge in edges:
        a, b = unit_of.get(edge.source.name), unit_of.get(edge.target)
        if a is None or b is None or a == b:
            continue
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
        sites.setdefault((a, b), edge)
    found = []
    for knot in knots(graph):
        path = shortest_cycle(knot[0], graph, set(knot))
        rest = [unit for unit in knot if unit not in path]
        others = f" (the knot also holds {', '.join(rest)})" if rest else ""
        found.append((knot, describe(path, sites) + others))
    return found


def layer_report(package_dir: Path = PACKAGE_DIR, floors: Mapping[str, int] = FLOORS) -> Report:
    """Check the package at ``package_dir`` against ``floors`` and the import rules."""
    report = Report()
    modules = modules_of(package_dir)
    report.unplaced = sorted(
        {
            f"{unit}: not in the floor table; add it to FLOORS in tests/test_layers.py on the "
            "floor where it belongs"
            for name in modules
            if (unit := place(name, floors)) is not None
        }
    )
    edges = scan(modules, report)
    report.floors = [problem for e in edges if (problem := check_floor(e, floors)) is not None]
    report.module_cycles = [line for _, line in cycles(edges, {name: name for name in modules})]
    packages = {name for name, m in modules.items() if m.is_package}
    for package in sorted(packages):
        depth = package.count(".") + 1
        # Each module inside the package counts as the child of the package that holds it.
        unit_of = {
            name: ".".join(name.split(".")[: depth + 1])
            for name in modules
            if name.startswith(package + ".")
        }
        report.package_cycles += [
            f"in {package}: {line}"
            for knot, line in cycles(edges, unit_of)
            # A knot of plain modules is a cycle between modules, reported as such.
            if packages.intersection(knot)
        ]
    return report


def fail_with(title: str, problems: list[str]) -> None:
    if problems:
        listing = "\n".join(f"  {p}" for p in problems)
        pytest.fail(f"{len(problems)} {title}:\n{listing}", pytrace=False)


@pytest.fixture(scope="module")
def report() -> Report:
    return layer_report()


def test_every_module_stands_on_a_floor(report: Report) -> None:
    fail_with("modules missing from the floor table", report.unplaced)


def test_imports_name_the_defining_module(report: Report) -> None:
    fail_with("imports that bypass the defining module", report.imports)


def test_no_import_goes_up_a_floor_or_sideways(report: Report) -> None:
    fail_with("imports that go up a floor or sideways", report.floors)


def test_no_two_modules_import_each_other(report: Report) -> None:
    fail_with("cycles between modules", report.module_cycles)


def test_no_two_packages_import_each_other(report: Report) -> None:
    fail_with("cycles between packages", report.package_cycles)


def test_public_api_is_exactly_all() -> None:
    import ferryman

    public = {n for n in dir(ferryman) if not n.startswith("_")}
    # Submodules appear as attributes once imported; they are not part of the API.
    modules = {n for n in public if type(getattr(ferryman, n)).__name__ == "module"}
    assert sorted(public - modules) == sorted(ferryman.__all__)
    for name in ferryman.__all__:
        assert getattr(ferryman, name) is not None


def test_errors_share_one_root() -> None:
    from ferryman import errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(classes) > 10
    for cls in classes:
        assert issubclass(cls, errors.FerrymanError), cls
        assert cls.__name__ in (errors.__doc__ or ""), (
            f"{cls.__name__} missing from the tree drawn in errors.py"
        )


# The checker itself, on a small tree shaped like ferryman: each wrong import must be reported.
CLEAN_TREE = {
    "__init__.py": "from ferryman.rpc.requester import Requester\n",
    "errors.py": "",
    "records.py": "from ferryman.errors import FerrymanError\n",
    "broker/__init__.py": "from ferryman.broker.base import Broker\n",
    "broker/base.py": "from ferryman.records import Record\n",
    "broker/embedded/__init__.py": "",
    "broker/embedded/storage.py": "from ferryman.broker.base import Broker\n",
    "schema/__init__.py": "from ferryman.schema.avro import AvroCodec\n",
    "schema/avro.py": "from ferryman.records import Headers\n",
    "runtime/__init__.py": "",
    "runtime/consumer.py": "from ferryman.schema.avro import AvroCodec\n",
    "runtime/serde.py": "from ferryman.runtime.consumer import ConsumerLoop\n",
    "rpc/__init__.py": "",
    "rpc/requester.py": "from ferryman.runtime.consumer import ConsumerLoop\n",
}

WRONG_IMPORTS = {
    "broker imports schema": (
        {"broker/embedded/storage.py": "from ferryman.schema.avro import AvroCodec"},
        "floors",
        "ferryman.broker and ferryman.schema stand side by side on floor 2",
    ),
    "a lower floor imports a higher one": (
        {
            "errors.py": "def later() -> None:\n    from ferryman.runtime.consumer import ConsumerLoop"
        },
        "floors",
        "ferryman.runtime (floor 4) stands above ferryman.errors (floor 0)",
    ),
    "a relative import": (
        {"broker/embedded/storage.py": "from ..base import Broker"},
        "imports",
        "relative import `from ..base import Broker`: write `from ferryman.broker.base import",
    ),
    "a relative upward import": (
        {"broker/base.py": "from ..runtime.consumer import ConsumerLoop"},
        "floors",
        "ferryman.broker.base imports ferryman.runtime.consumer, but ferryman.runtime (floor 4)",
    ),
    "the users' facade": (
        {"runtime/serde.py": "from ferryman import Requester"},
        "imports",
        "goes through the users' facade: write `from ferryman.rpc.requester import Requester`",
    ),
    "a package's re-exports": (
        {"runtime/serde.py": "from ferryman.schema import AvroCodec"},
        "imports",
        "write `from ferryman.schema.avro import AvroCodec`",
    ),
    "a module behind an alias": (
        {"rpc/requester.py": "import ferryman.runtime.consumer as c"},
        "imports",
        "`import ferryman.runtime.consumer as c` hides a module behind an alias",
    ),
    "a from-imported module behind an alias": (
        {"rpc/requester.py": "from ferryman.runtime import consumer as c"},
        "imports",
        "`from ferryman.runtime import consumer as c` hides a module behind an alias",
    ),
    "the facade bound by import": (
        {"records.py": "import ferryman.errors"},
        "imports",
        "`import ferryman.errors` binds the facade `ferryman`",
    ),
    "a cycle between modules, one side lazy": (
        {
            "runtime/consumer.py": "def later() -> None:\n    from ferryman.runtime.serde import Serde"
        },
        "module_cycles",
        "ferryman.runtime.consumer -> ferryman.runtime.serde (",
    ),
    "a cycle through TYPE_CHECKING": (
        {"runtime/consumer.py": "if TYPE_CHECKING:\n    from ferryman.runtime.serde import Serde"},
        "module_cycles",
        "ferryman.runtime.consumer -> ferryman.runtime.serde (",
    ),
    "a cycle between packages only": (
        {"runtime/serde.py": "from ferryman.rpc.requester import Requester"},
        "package_cycles",
        "in ferryman: ferryman.rpc -> ferryman.runtime (",
    ),
    "a new top-level module": (
        {"stuff.py": ""},
        "unplaced",
        "ferryman.stuff: not in the floor table",
    ),
    "a new module in a package whose children are listed": (
        {"broker/extra.py": ""},
        "unplaced",
        "ferryman.broker.extra: not in the floor table",
    ),
}


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    package_dir = root / ROOT
    for name, text in files.items():
        path = package_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package_dir


def problems_of(report: Report) -> list[str]:
    return [problem for _, problems in report.sections() for problem in problems]


def test_the_clean_tree_passes(tmp_path: Path) -> None:
    assert problems_of(layer_report(write_tree(tmp_path, CLEAN_TREE))) == []


@pytest.mark.parametrize(
    ("change", "section", "expected"), WRONG_IMPORTS.values(), ids=list(WRONG_IMPORTS)
)
def test_each_wrong_import_is_reported(
    tmp_path: Path, change: dict[str, str], section: str, expected: str
) -> None:
    tree = dict(CLEAN_TREE)
    for name, text in change.items():
        tree[name] = tree.get(name, "") + text + "\n"
    report = layer_report(write_tree(tmp_path, tree))
    found: list[str] = getattr(report, section)
    assert any(expected in problem for problem in found), "\n".join(problems_of(report))


def test_a_cycle_between_packages_is_not_also_a_module_cycle(tmp_path: Path) -> None:
    tree = dict(CLEAN_TREE)
    tree["runtime/serde.py"] += "from ferryman.rpc.requester import Requester\n"
    report = layer_report(write_tree(tmp_path, tree))
    assert report.module_cycles == []
    assert len(report.package_cycles) == 1


def test_a_new_module_in_an_unlisted_package_is_placed_with_it(tmp_path: Path) -> None:
    tree = {**CLEAN_TREE, "runtime/producing.py": "from ferryman.runtime.serde import Serde\n"}
    assert problems_of(layer_report(write_tree(tmp_path, tree))) == []


def main(argv: list[str]) -> int:
    """Print every break of the layering of the package at argv[0] (default: src/ferryman)."""
    package_dir = Path(argv[0]) if argv else PACKAGE_DIR
    if not (package_dir / "__init__.py").is_file():
        print(f"{package_dir} is not a package: pass the path of a ferryman/ directory")
        return 2
    total = 0
    for title, problems in layer_report(package_dir).sections():
        if problems:
            print(f"{len(problems)} {title}:")
            print("\n".join(f"  {p}" for p in problems))
            total += len(problems)
    print(f"{package_dir}: " + (f"{total} layering problems" if total else "layering clean"))
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
