"""The confinement plugin fails a test that reads beside the clone, and lets the allowed places be."""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from pathlib import Path

import pytest

from tests import confinement
from tests.confinement import CONFINEMENT, REPO, beside_the_clone, is_allowed


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


OUTSIDE = Path.home() / ".sotto-confinement-probe"
"""Read at import: pytester points HOME at a temporary folder while its tests run."""


def test_reading_outside_is_seen() -> None:
    home = OUTSIDE / "sotto.db"
    assert not is_allowed(str(home), CONFINEMENT.roots, CONFINEMENT.forbidden)
    assert _touched(lambda: sqlite3.connect(f"{home}").close()) == [f"sqlite3.connect {home}"]
    assert _touched(lambda: open(home, "rb").close()) == [f"open {home}"]
    assert _touched(lambda: os.listdir(home.parent)) == [f"os.listdir {home.parent}"]


def test_a_folder_beside_the_clone_is_outside_even_inside_a_temporary_folder(tmp_path: Path) -> None:
    clone = tmp_path / "x"
    shared = tmp_path / "shared" / "wycheproof" / "x25519_test.json"
    forbidden = beside_the_clone(clone)
    assert forbidden == (os.path.realpath(tmp_path),)
    roots = (tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir()))
    assert not is_allowed(str(shared), roots, forbidden, repo=clone)
    assert not is_allowed(str(tmp_path), roots, forbidden, repo=clone)
    assert is_allowed(str(clone / "tests" / "vectors"), roots, forbidden, repo=clone)
    elsewhere = Path(tempfile.gettempdir()) / "pytest-of-someone" / "t0" / "store.db"
    assert is_allowed(str(elsewhere), roots, forbidden, repo=clone)
    # This clone: what sits beside it is outside, whichever folder holds it.
    for folder in CONFINEMENT.forbidden:
        assert not is_allowed(os.path.join(folder, "shared"), CONFINEMENT.roots, CONFINEMENT.forbidden)


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
    outside = OUTSIDE
    pytester.makepyfile(
        test_outside=f"""
import os
def test_reads_outside_the_clone():
    try:
        os.listdir({str(outside)!r})
    except OSError:
        pass
def test_stays_inside():
    os.listdir({str(REPO)!r})
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--rootdir={pytester.path}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*touched paths outside the clone*"])
