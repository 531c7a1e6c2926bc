"""Stopping background tasks for good.

A close that cancels its tasks once and then awaits them can wait forever: on Python 3.11,
``asyncio.wait_for`` loses a cancellation that arrives just as what it awaits completes
(bpo-42130; ``wait_for`` was rewritten in 3.12), and a loop that called it goes round again
instead of ending. On a loaded machine that race is met: the demo, starved of CPU beside other
work, hung in its clients' close. :func:`stop_tasks` cancels again until every task has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["REPEAT_S", "stop_tasks"]

REPEAT_S: Final = 0.25
"""How long a cancelled task has to end before it is cancelled again."""


async def stop_tasks(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again every
    :data:`REPEAT_S` those that have not (one whose cancellation was lost). Their results and
    exceptions are dropped (collected, so none is reported as never retrieved)."""
    every = list(tasks)
    pending = {task for task in every if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=REPEAT_S)
    for task in every:
        if not task.cancelled():
            task.exception()
