"""The shape of the code (STYLE.md): the protocol core does no I/O; only onionpost.tor uses stem."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "onionpost"
IO_MODULES = {"trio", "stem", "socket", "asyncio", "subprocess", "sqlite3", "time", "os.path"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def test_protocol_core_imports_no_io() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(
            n for n in _imports(path) if _top(n) in IO_MODULES or n in IO_MODULES
        )
        for path in (SRC / "proto").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_tor_package_imports_stem() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if not path.is_relative_to(SRC / "tor") and any(_top(n) == "stem" for n in _imports(path))
    ]
    assert offenders == []


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    # Guard against a checker that can never fail.
    module = tmp_path / "m.py"
    module.write_text("import trio\nfrom stem.control import Controller\nfrom . import x\n")
    assert _imports(module) == {"trio", "stem.control"}
    assert "nacl" in {_top(n) for n in _imports(SRC / "proto" / "_crypto.py")}
