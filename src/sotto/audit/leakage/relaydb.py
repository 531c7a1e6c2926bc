"""The relay's SQLite storage run on a simulation's event loop, so a study leaves a real dump.

:class:`~sotto.server.storage.sqlite.SqliteStorage` hands every operation to a writer thread,
which a virtual clock cannot wait for (:mod:`sotto.audit.sim.clock`). :class:`InlineSqliteStorage`
is the same storage, the same SQL, pragmas, per-envelope keys, secure delete and daily rewrite,
with each operation run at once on the loop's thread in a transaction of its own (no group
commit: the one difference in what the files hold is that no two operations share a commit).
The writer's log checkpoint (``wal_checkpoint(TRUNCATE)`` once ``checkpoint_interval_s`` has
passed since the last one, after a commit) keeps the simulation's clock: the next operation
after the interval, or a timer when none comes.

So the files a study leaves in its data directory, and the snapshots its
:class:`~sotto.server.observer.Observer` takes of them, hold what a relay's would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from sotto.errors import RelayStorageError
from sotto.server.storage.sqlite import DB_FILENAME, Operation, SqliteStorage, _Job

T = TypeVar("T")


class _SameThread:
    """The loop as the batch sees it: the writer thread hands results back with
    ``call_soon_threadsafe``, which also wakes the loop through its self-pipe (a write and a
    read per operation); on the loop's own thread ``call_soon`` queues the same callback in the
    same place, without the wake-up."""

    __slots__ = ("call_soon_threadsafe",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.call_soon_threadsafe = loop.call_soon


class InlineSqliteStorage(SqliteStorage):
    """SQLite storage without a writer thread (module docstring); ``now`` is the simulation's
    clock in seconds. Open with :meth:`in_dir_inline` from the loop's thread."""

    def __init__(self, path: Path, *, now: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._now = now
        self._conn: sqlite3.Connection | None = None
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def in_dir_inline(cls, data_dir: Path, *, now: Callable[[], float], **kwargs: Any) -> InlineSqliteStorage:
        storage = cls(data_dir / DB_FILENAME, now=now, **kwargs)
        try:
            storage._conn = storage._connect()
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            raise RelayStorageError(f"cannot open the database: {type(exc).__name__}") from exc
        storage._checkpointed_at = now()
        return storage

    def _submit(
        self, operation: Operation[T], *, savepoint: bool = True, send: bool = False
    ) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._closed or self._conn is None:
            future.set_exception(RelayStorageError("storage is closed"))
            return future
        settle = cast(asyncio.AbstractEventLoop, _SameThread(loop))  # all _run_batch asks of it
        self._run_batch(self._conn, [_Job(operation, settle, future, savepoint, send)])
        self._maintain(self._conn)
        if self._dirty and self._timer is None:
            wait = max(0.0, self._checkpointed_at + self._checkpoint_interval_s - self._now())
            self._timer = loop.call_later(wait, self._checkpoint_when_idle)
        return future

    def _checkpoint_when_idle(self) -> None:
        self._timer = None
        if self._conn is not None and not self._closed:
            self._maintain(self._conn)

    def _maintain(self, conn: sqlite3.Connection) -> None:
        """As the writer thread's, on the simulation's clock (the disk is not checked)."""
        if self._compact_due:
            self._compact(conn)
        now = self._now()
        if self._dirty and now - self._checkpointed_at >= self._checkpoint_interval_s:
            self._checkpointed_at = now
            commits = self.commits
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error:
                busy = 1
            if not busy:
                self._dirty = False
                self.checkpoints += 1
                self.checkpointed_commits = commits

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None


__all__ = ["InlineSqliteStorage"]
