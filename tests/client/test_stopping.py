"""Stopping background tasks: a task that loses a cancellation (as a loop that called Python
3.11's ``asyncio.wait_for`` can) still ends, where cancelling once and awaiting would wait
forever; results and failures are collected silently."""

from __future__ import annotations

import asyncio

import pytest

from sotto.client.stopping import stop_tasks

GUARD_S = 10.0
"""Only so that a regression fails instead of hanging the run."""


async def _loses_cancellations(lost: int, ended: list[int]) -> None:
    """Goes round again after each of the first ``lost`` cancellations, as a loop whose
    ``wait_for`` swallowed them does."""
    swallowed = 0
    try:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed == lost:
                    raise
                swallowed += 1
                current = asyncio.current_task()
                assert current is not None
                current.uncancel()
    finally:
        ended.append(swallowed)


def test_a_task_that_loses_cancellations_is_stopped_all_the_same() -> None:
    async def main() -> list[int]:
        ended: list[int] = []
        tasks = [asyncio.create_task(_loses_cancellations(n, ended)) for n in (0, 1, 3)]
        await asyncio.sleep(0)
        await asyncio.wait_for(stop_tasks(tasks), GUARD_S)
        assert all(t.done() for t in tasks)
        return sorted(ended)

    assert asyncio.run(main()) == [0, 1, 3]


def test_cancelling_once_and_awaiting_does_not_stop_such_a_task() -> None:
    """The pattern :func:`stop_tasks` replaces: the task is still running after its one cancel."""

    async def main() -> None:
        ended: list[int] = []
        task = asyncio.create_task(_loses_cancellations(1, ended))
        await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.5)
        assert not done and ended == []
        await asyncio.wait_for(stop_tasks([task]), GUARD_S)
        assert ended == [1]

    asyncio.run(main())


def test_finished_and_failed_tasks_are_collected_quietly(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("in a background loop")

    async def main() -> None:
        failed = asyncio.create_task(fails())
        finished = asyncio.create_task(asyncio.sleep(0))
        await asyncio.sleep(0.01)
        await stop_tasks([failed, finished])
        await stop_tasks([])

    asyncio.run(main())
    assert "never retrieved" not in caplog.text
