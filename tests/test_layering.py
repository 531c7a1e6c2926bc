"""The layering of the architecture, checked from the source's own imports (ast; nothing is run).

``crypto ← protocol ← store ← client ← cli``; ``wire`` is shared by client and server; the server
never sees the protocol or the client; nothing below the faces imports a face; the protocol core
imports no I/O. ``make layering`` runs this file alone; ``make test`` runs it with the rest.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sotto"

FACES = frozenset({"cli", "tui"})
FORBIDDEN: dict[str, frozenset[str]] = {  # layer -> sotto layers it must never import
    "crypto": frozenset({"protocol", "wire", "store", "server", "client", "cli", "tui", "audit"}),
    "protocol": frozenset({"wire", "store", "server", "client", "cli", "tui", "audit"}),
    "wire": frozenset({"protocol", "store", "server", "client", "cli", "tui", "audit"}),
    "store": frozenset({"wire", "server", "client", "cli", "tui", "audit"}),
    "server": frozenset({"protocol", "store", "client", "cli", "tui"}),
    "client": frozenset({"server", "cli", "tui", "audit"}),
    "forwarder": frozenset({"crypto", "protocol", "store", "client", "cli", "tui", "audit"}),
}
FORWARDER_READS = (
    "sotto.errors",
    "sotto.forwarder",
    "sotto.wire.ohttp",
    "sotto.server.config",
    "sotto.server.logging",
    "sotto.server.ratelimit",
)
"""The only sotto modules the forwarder may import: it moves sealed bytes, and none of these can
read a mailbox id, an account id, a frame or a binary HTTP message."""
IMPURE = frozenset(
    {"asyncio", "socket", "sqlite3", "time", "logging", "psycopg", "asyncpg", "httpx", "redis", "nats"}
)
PURE_LAYERS = frozenset({"protocol"})


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved against its package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = path.relative_to(root.parent).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def layering_breaks(root: Path) -> list[str]:
    """One line per broken rule in the package tree at ``root`` (``src/sotto``)."""
    broken: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        layer = rel.parts[0].removesuffix(".py")
        for module in imported_modules(path, root):
            parts = module.split(".")
            if parts[0] == root.name and len(parts) > 1:
                target = parts[1]
                if target in FORBIDDEN.get(layer, frozenset()):
                    broken.add(f"{rel}: {layer} imports sotto.{target}")
                if target in FACES and layer not in FACES:
                    broken.add(f"{rel}: {layer} imports the face sotto.{target}")
                if layer == "forwarder" and not any(
                    module == m or module.startswith(m + ".") for m in FORWARDER_READS
                ):
                    broken.add(f"{rel}: forwarder imports {module}")
            elif layer in PURE_LAYERS and parts[0] in IMPURE:
                broken.add(f"{rel}: pure layer {layer} imports {parts[0]}")
    return sorted(broken)


def test_the_source_tree_keeps_its_layering() -> None:
    modules = list(SRC.rglob("*.py"))
    assert len(modules) > 100, f"expected the sotto package at {SRC}"
    assert layering_breaks(SRC) == []


@pytest.mark.parametrize(
    ("layer_file", "source", "expected"),
    [
        ("server/x.py", "from sotto.protocol import session\n", "server/x.py: server imports sotto.protocol"),
        ("server/x.py", "from ..client import sdk\n", "server/x.py: server imports sotto.client"),
        ("protocol/x.py", "import time\n", "protocol/x.py: pure layer protocol imports time"),
        ("protocol/x.py", "from sotto.store import memory\n", "protocol/x.py: protocol imports sotto.store"),
        ("client/x.py", "import sotto.cli.app\n", "client/x.py: client imports sotto.cli"),
        ("store/x.py", "from sotto.client import sdk\n", "store/x.py: store imports sotto.client"),
        ("wire/x.py", "from sotto.protocol import messages\n", "wire/x.py: wire imports sotto.protocol"),
        ("forwarder/x.py", "from sotto.wire import api\n", "forwarder/x.py: forwarder imports sotto.wire"),
        ("forwarder/x.py", "import sotto.wire.bhttp\n", "forwarder/x.py: forwarder imports sotto.wire.bhttp"),
        ("forwarder/x.py", "import sotto.client.sdk\n", "forwarder/x.py: forwarder imports sotto.client"),
    ],
)
def test_each_rule_can_fail(tmp_path: Path, layer_file: str, source: str, expected: str) -> None:
    root = tmp_path / "sotto"
    target = root / layer_file
    target.parent.mkdir(parents=True)
    target.write_text(source)
    (root / "cli").mkdir()
    (root / "cli" / "ok.py").write_text("from sotto.client import sdk\nimport asyncio\n")
    breaks = layering_breaks(root)
    assert expected in breaks
    assert all(line.startswith(f"{layer_file}:") for line in breaks), breaks
