"""A pytest plugin that fails any test touching a path outside the clone.

People clone Sotto anywhere, so a test may read only the repository, the Python installation it
runs on (the virtual environment, the interpreter's standard library), temporary directories and
the operating system's own files. An audit hook (PEP 578) sees every ``open``, directory listing,
``sqlite3.connect`` and file move or removal made in the test process; a path elsewhere (a folder
beside the clone, the user's home) fails the test that touched it, with the path and the event.
Child processes are not watched: what they read is given on their command lines, which the tests
build from the same allowed places.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

WATCHED = frozenset(
    {
        "open",
        "os.listdir",
        "os.scandir",
        "os.mkdir",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "shutil.copyfile",
        "shutil.copytree",
        "shutil.rmtree",
        "sqlite3.connect",
    }
)
SYSTEM = ("/dev", "/proc", "/sys", "/etc", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/run", "/var/lib/dpkg")


def allowed_roots() -> tuple[str, ...]:
    roots = {str(REPO), tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir()), *SYSTEM}
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        roots.add(prefix)
        roots.add(os.path.realpath(prefix))
    for path in sysconfig.get_paths().values():
        roots.add(path)
        roots.add(os.path.realpath(path))
    for path in [*site.getsitepackages(), *sys.path]:
        if path and os.path.isabs(path):
            roots.add(path)
            roots.add(os.path.realpath(path))
    return tuple(sorted(r.rstrip("/") or "/" for r in roots if r not in ("", "/")))


def beside_the_clone(repo: Path = REPO) -> tuple[str, ...]:
    """The folder holding the clone, whose other entries a test must never touch.

    A clone is often made inside a temporary folder (CI's ``mktemp -d``), where the temporary
    roots alone would let a test read its neighbours. Only a clone placed directly in the system's
    temporary directory cannot be told from its neighbours; there, temporary files win.
    """
    parent = os.path.realpath(repo.parent)
    if parent in (os.path.realpath(tempfile.gettempdir()), "/"):
        return ()
    return (parent,)


def _under(full: str, root: str) -> bool:
    return full == root or full.startswith(root + os.sep)


def is_allowed(path: str, roots: tuple[str, ...], forbidden: tuple[str, ...] = (), repo: Path = REPO) -> bool:
    if path in (":memory:", "") or path.startswith("file::memory:"):
        return True
    full = os.path.normpath(os.path.join(os.getcwd(), path))
    if any(_under(full, f) for f in forbidden) and not _under(full, str(repo)):
        return False
    return any(_under(full, root) for root in roots)


class Confinement:
    """Records the paths outside the allowed roots that the current test touched."""

    def __init__(self) -> None:
        self.roots = allowed_roots()
        self.forbidden = beside_the_clone()
        self.seen: list[str] = []
        self.active = False

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        if not self.active or event not in WATCHED or not args:
            return
        target = args[0]
        if isinstance(target, int):  # an open file descriptor, not a path
            return
        if isinstance(target, bytes):
            target = os.fsdecode(target)
        elif isinstance(target, os.PathLike):
            target = os.fspath(target)
        if not isinstance(target, str):
            return
        self.active = False  # the checks below open nothing, but stay safe from recursion
        try:
            if not is_allowed(target, self.roots, self.forbidden):
                self.seen.append(f"{event} {target}")
        finally:
            self.active = True


CONFINEMENT = Confinement()
sys.addaudithook(CONFINEMENT.hook)


def _check(phase: str) -> None:
    if CONFINEMENT.seen:
        touched = sorted(set(CONFINEMENT.seen))
        CONFINEMENT.seen.clear()
        pytest.fail(
            f"this test's {phase} touched paths outside the clone (a clone elsewhere does not have them):\n  "
            + "\n  ".join(touched[:20]),
            pytrace=False,
        )


def _watched(phase: str) -> Iterator[None]:
    CONFINEMENT.seen.clear()
    CONFINEMENT.active = True
    try:
        yield
    finally:
        CONFINEMENT.active = False
    _check(phase)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _watched("setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _watched("call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    return (yield from _watched("teardown"))
