"""The README's code is run as a test, so the first thing a user copies keeps working."""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
from pathlib import Path

import pytest
from tests.waiting import eventually

README = Path(__file__).parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_a_service_example() -> None:
    assert any("fm.Service(" in block for block in _python_blocks())


def test_readme_service_handles_an_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("FERRYMAN_BROKER", "FERRYMAN_REGISTRY", "FERRYMAN_DATABASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # the default embedded broker lives under ./.ferryman/
    (tmp_path / "readme_example.py").write_text(_python_blocks()[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    example = importlib.import_module("readme_example")
    try:

        async def main() -> str:
            seen = ""

            def printed() -> bool:
                nonlocal seen
                seen += capsys.readouterr().out
                return "order o-1 for 1250" in seen

            async with example.orders:
                await example.orders.emit(example.order_placed, example.OrderPlaced("o-1", 7, 1250))
                await eventually(printed, 30, lambda: f"the handler's line; printed: {seen!r}")
            return seen

        assert "order o-1 for 1250" in asyncio.run(main())
        assert (tmp_path / ".ferryman" / "broker.db").exists()
    finally:
        sys.modules.pop("readme_example", None)
