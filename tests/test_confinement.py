"""The confinement plugin fails a test that reads beside the clone, and lets the allowed places be."""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from pathlib import Path

import pytest

from tests import confinement
from tests.confinement import CONFINEMENT, REPO, is_allowed


def _touched(action: object) -> list[str]:
    CONFINEMENT.seen.clear()
    try:
        if callable(action):
            action()
    except (OSError, sqlite3.Error):
        pass
    seen = list(CONFINEMENT.seen)
    CONFINEMENT.seen.clear()
    return seen


def test_reading_beside_the_clone_is_seen() -> None:
    beside = REPO.parent / "shared" / "wycheproof" / "x25519_test.json"
    seen = _touched(lambda: open(beside, "rb").close())
    assert seen == [f"open {beside}"]
    listing = _touched(lambda: os.listdir(REPO.parent))
    assert listing == [f"os.listdir {REPO.parent}"]
    home = Path.home() / ".sotto" / "sotto.db"
    assert _touched(lambda: sqlite3.connect(f"{home}").close()) == [f"sqlite3.connect {home}"]


def test_the_repository_the_interpreter_and_temporary_files_are_allowed(tmp_path: Path) -> None:
    assert _touched((REPO / "README.md").read_bytes) == []
    assert _touched(lambda: Path(confinement.__file__).read_bytes()) == []
    assert _touched(lambda: Path(os.__file__).read_bytes()) == []
    assert _touched(lambda: (tmp_path / "x").write_bytes(b"x")) == []
    assert _touched(lambda: sqlite3.connect(":memory:").close()) == []
    with tempfile.NamedTemporaryFile() as handle:
        assert is_allowed(handle.name, CONFINEMENT.roots)
    assert is_allowed(sys.executable, CONFINEMENT.roots)


def test_a_test_that_touches_outside_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeconftest('pytest_plugins = ["tests.confinement"]\n')
    pytester.makepyfile(
        test_outside=f"""
import os
def test_reads_beside_the_clone():
    try:
        os.listdir({str(REPO.parent)!r})
    except OSError:
        pass
def test_stays_inside():
    os.listdir({str(REPO)!r})
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--rootdir={pytester.path}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*touched paths outside the clone*"])
