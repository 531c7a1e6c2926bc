"""The protocol tests run on the build they claim: plain Python, or the mypyc-compiled core.

``make test`` runs tests/protocol, tests/crypto and tests/interop twice: on the editable
(plain) install, then with ``bench/compiled.py``'s build first on ``PYTHONPATH`` and
``SOTTO_EXPECT_COMPILED=1``. This checks each run imported what it should, so the second run
cannot quietly test the plain modules again.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _compiled_module_names() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        paths: list[str] = tomllib.load(f)["tool"]["sotto"]["mypyc"]["modules"]
    return [path.removesuffix(".py").replace("/", ".") for path in paths]


def test_the_compiled_list_names_per_message_modules() -> None:
    names = _compiled_module_names()
    assert "sotto.protocol.ratchet.session" in names
    assert "sotto.protocol.messages" in names
    assert all(importlib.import_module(name) for name in names)


def test_the_core_is_the_build_under_test() -> None:
    expect_compiled = os.environ.get("SOTTO_EXPECT_COMPILED") == "1"
    for name in _compiled_module_names():
        module_file = importlib.import_module(name).__file__
        assert module_file is not None
        compiled = not module_file.endswith(".py")
        assert compiled == expect_compiled, f"{name} is {module_file}"
