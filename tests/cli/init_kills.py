"""Run ``sotto init`` many times, each stopped by a signal at a chosen point of its progress.

``python -m tests.cli.init_kills SERVER ROOT`` (used by ``test_init_atomic.py``). This process
imports the CLI once, then forks one child per run, so every run starts from the same state and
costs no interpreter start. In a child, a profile hook counts the steps of the run: every call of
a function in ``sotto``, every SQLite call and every file-system call of ``os``. The first child
only counts and lists them; then, for each chosen step, a child sends itself SIGINT (Ctrl-C) or
SIGKILL (in turn) when it reaches that step, in a profile of its own. The point is
chosen by progress, never by time: a run is stopped at the same step however fast the machine is.

Prints one JSON object: the steps of a whole run, and per run the step, what it was, the signal,
the exit status (negative: killed by that signal) and the profile directory.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import sotto
from sotto.cli.app import app
from sotto.client.sdk import Client
from sotto.crypto.passphrase import Argon2Params

PASSPHRASE = "an init kill passphrase"
SOURCE = str(Path(sotto.__file__).resolve().parent)
EVEN_POINTS = 4
"""Steps spread evenly over a run, besides the first step in each module and every file-system step."""
FILE_STEPS = {"rename", "replace", "unlink", "mkdir", "rmdir", "fsync", "open", "link"}
CHILD_TIMEOUT_S = 120.0
"""A child still running after this long is reported as hung (status None)."""


def step_name(frame: FrameType, event: str, arg: Any) -> str | None:
    """The step a profile event is, or None for events that are not counted."""
    if event == "call":
        filename = frame.f_code.co_filename
        if not filename.startswith(SOURCE):
            return None
        return f"{filename[len(SOURCE) + 1 :]}:{frame.f_code.co_qualname}"
    if event == "c_call":
        owner = getattr(arg, "__self__", None)
        if isinstance(owner, sqlite3.Connection | sqlite3.Cursor):
            return f"sqlite3.{type(owner).__name__}.{arg.__name__}"
        if getattr(arg, "__module__", None) == "posix" and arg.__name__ in FILE_STEPS:
            return f"os.{arg.__name__}"
    return None


def child(args: list[str], point: int, signum: int, record: Path) -> None:
    """Run ``sotto ARGS`` in this (forked) process; at step ``point`` send ourselves ``signum``.
    ``point`` 0: run to the end and write every step to ``record``."""
    counter = itertools.count(1)
    steps: list[str] = []
    fired = threading.Event()
    main = threading.get_ident()

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if fired.is_set():
            sys.setprofile(None)  # each thread drops the hook at its next step after the signal
            return
        name = step_name(frame, event, arg)
        if name is None:
            return
        n = next(counter)
        if point == 0:
            steps.append(name)
        elif n == point:
            fired.set()
            record.write_text(name)
            sys.setprofile(None)
            if signum == signal.SIGINT and threading.get_ident() == main:
                # What Python's SIGINT handler does on the main thread, at this very step (a
                # signal sent to ourselves is handled at the next check, which can be later).
                raise KeyboardInterrupt
            if signum == signal.SIGINT:
                # As a terminal's Ctrl-C arrives: at the main thread, whichever thread is at the step.
                signal.pthread_kill(main, signum)
            else:
                os.kill(os.getpid(), signum)

    # A terminal's process takes Ctrl-C as KeyboardInterrupt; a process started by a test runner
    # may have inherited SIGINT ignored (Python then installs no handler), so set it as a shell would.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with open(record.with_suffix(".out"), "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    os.environ["SOTTO_PASSPHRASE"] = PASSPHRASE
    threading.setprofile(hook)
    sys.setprofile(hook)
    code: int = 0
    try:
        app(args=args, prog_name="sotto")
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:
        code = 99
    sys.setprofile(None)
    threading.setprofile(None)
    if point == 0:
        record.write_text(json.dumps(steps))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_child(args: list[str], point: int, signum: int, record: Path) -> int | None:
    pid = os.fork()
    if pid == 0:
        try:
            child(args, point, signum, record)
        finally:
            os._exit(98)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)


def choose(steps: list[str]) -> list[int]:
    """Steps (1-based) to stop at: the first step in each module (so every phase: arguments,
    store, key derivation, schema, registration on the relay, keys, upload, closing, moving into
    place), every file-system step, and steps spread evenly over the run."""
    total = len(steps)
    chosen = {max(1, round(total * i / (EVEN_POINTS + 1))) for i in range(1, EVEN_POINTS + 1)}
    first: dict[str, int] = {}
    for n, name in enumerate(steps, 1):
        first.setdefault(name.split(":")[0], n)
        if name.startswith("os.") or name == "sqlite3.Connection.close":
            chosen.add(n)
    return sorted(chosen | set(first.values()))


def fast_stores() -> None:
    """New stores get the test Argon2 setting, as in the other CLI tests."""
    create: Callable[..., Any] = Client.create.__func__  # type: ignore[attr-defined]

    async def fast(cls: type[Client], *args: Any, **kwargs: Any) -> Client:
        kwargs.setdefault("kdf", Argon2Params.TESTING)
        client: Client = await create(cls, *args, **kwargs)
        return client

    Client.create = classmethod(fast)  # type: ignore[method-assign,assignment]


def main() -> None:
    server, root = sys.argv[1], Path(sys.argv[2])
    fast_stores()

    def init_args(profile: Path) -> list[str]:
        return ["init", "--server", server, "--name", "Killed", "--profile", str(profile)]

    whole = root / "whole"
    whole.mkdir(parents=True)
    status = run_child(init_args(whole / "profile"), 0, 0, whole / "steps")
    if status != 0:
        raise SystemExit(f"a whole run failed with {status}: {(whole / 'steps.out').read_text()}")
    steps: list[str] = json.loads((whole / "steps").read_text())
    runs = []
    for i, point in enumerate(choose(steps)):
        signum = (signal.SIGINT, signal.SIGKILL)[i % 2]  # each signal at every other point
        place = root / f"{point}-{signum.name}"
        place.mkdir()
        status = run_child(init_args(place / "profile"), point, signum, place / "step")
        at = (place / "step").read_text() if (place / "step").exists() else None
        runs.append(
            {
                "point": point,
                "at": at,
                "signal": signum.name,
                "status": status,
                "profile": str(place / "profile"),
                "output": (place / "step.out").read_text(errors="replace"),
            }
        )
    json.dump({"steps": steps, "runs": runs}, sys.stdout)


if __name__ == "__main__":
    main()
