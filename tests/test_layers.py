"""The public surface and the layering, enforced by tests rather than convention.

Data flows one way: user code -> runtime -> schema -> broker. ``broker`` knows nothing of schemas
or services; ``schema`` knows nothing of brokers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ferryman

SRC = Path(ferryman.__file__).parent

# package -> packages it must never import
FORBIDDEN = {
    "ferryman.broker": (
        "ferryman.schema",
        "ferryman.runtime",
        "ferryman.stores",
        "ferryman.rpc",
        "ferryman.topics",
        "ferryman.cli",
    ),
    "ferryman.schema": (
        "ferryman.broker",
        "ferryman.runtime",
        "ferryman.stores",
        "ferryman.rpc",
        "ferryman.topics",
        "ferryman.cli",
    ),
    "ferryman.records": ("ferryman.broker", "ferryman.schema", "ferryman.runtime"),
    "ferryman.errors": ("ferryman.",),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_layering(path: Path) -> None:
    name = _module_name(path)
    for layer, forbidden in FORBIDDEN.items():
        if name == layer or name.startswith(layer + "."):
            bad = {i for i in _imports(path) if i.startswith(forbidden) and not i.startswith(layer)}
            assert not bad, (
                f"{name} imports {sorted(bad)}, which breaks the layering {layer} -/-> {forbidden}"
            )


def test_public_api_is_exactly_all() -> None:
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
