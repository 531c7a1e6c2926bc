"""sotto.protocol stays pure: no asyncio, socket, sqlite3, time or logging, directly or loaded."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import sotto.crypto
import sotto.protocol

FORBIDDEN = {"asyncio", "socket", "sqlite3", "time", "logging"}
PROTOCOL_DIR = Path(sotto.protocol.__file__).resolve().parent


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_forbidden_import_in_any_protocol_file() -> None:
    files = sorted(PROTOCOL_DIR.rglob("*.py"))
    assert len(files) > 10
    offenders = {str(p.relative_to(PROTOCOL_DIR)): _imported_roots(p) & FORBIDDEN for p in files}
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_ast_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom logging import getLogger\n")
    assert _imported_roots(sample) & FORBIDDEN == {"time", "logging"}


def _all_protocol_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(sotto.protocol.__path__, "sotto.protocol.")]


def test_importing_protocol_loads_no_forbidden_module() -> None:
    """In a fresh interpreter, importing every protocol module adds none of the forbidden ones.

    The baseline already holds the crypto layer and its libraries, so the check is about what
    protocol code itself brings in.
    """
    modules = _all_protocol_modules()
    for name in modules:  # every module imports cleanly here too
        importlib.import_module(name)
    baseline = [m.name for m in pkgutil.walk_packages(sotto.crypto.__path__, "sotto.crypto.")]
    script = (
        "import sys\n"
        f"for name in {baseline!r}:\n"
        "    __import__(name)\n"
        "before = set(sys.modules)\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        f"print(sorted((set(sys.modules) - before) & {FORBIDDEN!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
