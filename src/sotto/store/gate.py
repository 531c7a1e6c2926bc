"""One transaction at a time per store, and a clear error instead of a self-deadlock."""

from __future__ import annotations

import threading

from sotto.errors import StoreError


class TransactionGate:
    """A lock that knows its holder: a second ``transaction()`` on the same thread is a bug
    (typically an ``await`` inside a transaction letting another task in), so it raises."""

    __slots__ = ("_closed", "_lock", "_owner")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._closed = False

    def enter(self) -> None:
        if self._owner == threading.get_ident():
            raise StoreError("a transaction is already open on this thread (no nesting, no await inside)")
        self._lock.acquire()
        if self._closed:
            self._lock.release()
            raise StoreError("the store is closed")
        self._owner = threading.get_ident()

    def leave(self) -> None:
        self._owner = None
        self._lock.release()

    def close(self) -> bool:
        """Mark closed; False if it already was. Raises if a transaction is open on this thread."""
        if self._owner == threading.get_ident():
            raise StoreError("close the transaction before the store")
        with self._lock:
            was_open = not self._closed
            self._closed = True
        return was_open

    @property
    def closed(self) -> bool:
        return self._closed
