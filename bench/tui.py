"""``sotto chat`` on a big store: start-up and conversation-open times.

    python bench/tui.py                       # 1,000 conversations, 100,000 messages, 5 runs
    python bench/tui.py --conversations 100 --messages 10000 --runs 3

Builds an encrypted store (SQLite, sealed rows, as a real profile) with ``--conversations``
contacts and ``--messages`` messages, half of them in one conversation and the rest spread over
the others; then, per run, opens the client (the Argon2 unlock is timed apart: it is slow on
purpose) and starts the app headless at 120×40 (Textual's test driver: no terminal I/O):

- **start-up**: from building the app to its first screen with every conversation listed and
  unread counted (target ≤ 500 ms), next to a baseline measured in the same run: the same three
  panes with nothing in them;
- **open**: from asking to open a conversation to the screen showing it, for the one with half
  the messages and for a small one, alternately (target ≤ 100 ms).

Medians (and the slowest) over the runs; the machine's load is printed alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.tui.seed

from tests.tui.seed import NOW_MS, PASSPHRASE, big_world
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical

from sotto.client.sdk import STORE_FILE, Client
from sotto.client.transport import HttpNetwork
from sotto.tui.app import ChatApp, Composer, StatusLine
from sotto.tui.conversations import ConversationList
from sotto.tui.log import MessageLog
from sotto.tui.model import TimeFormat

SIZE = (120, 40)


class Bare(App[None]):
    """The baseline: the app's panes, empty."""

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ConversationList()
            with Vertical():
                yield MessageLog(TimeFormat(lambda: NOW_MS))
                yield Composer()
        yield StatusLine()


async def baseline() -> float:
    start = time.perf_counter()
    app = Bare()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        return time.perf_counter() - start


@dataclass
class Run:
    unlock: float
    baseline: float
    startup: float
    startup_cpu: float
    big: list[float]
    small: list[float]
    big_cpu: list[float]
    small_cpu: list[float]
    handler: list[float]
    repaint: list[float]
    load: float = 0.0


async def one_run(directory: Path, opens: int) -> Run:
    start = time.perf_counter()
    client = await Client.open(directory, PASSPHRASE, network=HttpNetwork())
    unlock = time.perf_counter() - start
    async with client:
        base = await baseline()
        start, cpu = time.perf_counter(), time.process_time()
        app = ChatApp(client, live=False, environ={})
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            startup = time.perf_counter() - start
            startup_cpu = time.process_time() - cpu
            summaries = app.conversations.summaries
            big = next(s for s in summaries if s.title == "Person 0000")
            small = summaries[len(summaries) // 2]
            big_times: list[float] = []
            small_times: list[float] = []
            handler_times: list[float] = []
            big_cpu: list[float] = []
            small_cpu: list[float] = []
            repaint_times: list[float] = []
            for _ in range(opens):
                for summary, times in ((big, big_times), (small, small_times)):
                    start, cpu = time.perf_counter(), time.process_time()
                    app.open_conversation(summary.target)
                    handled = time.perf_counter()
                    await pilot.pause()
                    times.append(time.perf_counter() - start)
                    (big_cpu if summary is big else small_cpu).append(time.process_time() - cpu)
                    handler_times.append(handled - start)
                    assert app.log_view.messages, "the conversation opened empty"
                # The baseline: the same wait for a repaint of the log with nothing changed.
                start = time.perf_counter()
                app.log_view.refresh()
                await pilot.pause()
                repaint_times.append(time.perf_counter() - start)
        return Run(
            unlock,
            base,
            startup,
            startup_cpu,
            big_times,
            small_times,
            big_cpu,
            small_cpu,
            handler_times,
            repaint_times,
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--opens", type=int, default=5, help="opens of each conversation per run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sotto-bench-tui-") as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        big_world(directory / STORE_FILE, conversations=args.conversations, messages=args.messages)
        built = time.perf_counter() - start
        size = (directory / STORE_FILE).stat().st_size
        print(
            f"store: {args.conversations:,} conversations, {args.messages:,} messages "
            f"({args.messages // 2:,} in one), {size / 2**20:,.1f} MiB, built in {built:,.1f} s"
        )
        runs: list[Run] = []
        for _ in range(args.runs):
            load = os.getloadavg()[0]
            run = asyncio.run(one_run(directory, args.opens))
            run.load = load
            runs.append(run)

    def median(values: list[float]) -> str:
        return ms(statistics.median(values))

    startup = [r.startup for r in runs]
    big = [t for r in runs for t in r.big]
    small = [t for r in runs for t in r.small]
    print(f"runs: {args.runs}; load average at each run's start: {', '.join(f'{r.load:.2f}' for r in runs)}")
    print(f"unlock (Argon2id, test setting; not part of start-up): median {median([r.unlock for r in runs])}")
    print(
        f"start-up to the first screen: median {median(startup)}, slowest {ms(max(startup))} "
        f"(target ≤ 500 ms); baseline, the same panes empty: median {median([r.baseline for r in runs])}"
    )
    print(
        f"open the {args.messages // 2:,}-message conversation, to the screen showing it: "
        f"median {median(big)}, slowest {ms(max(big))} (target ≤ 100 ms)"
    )
    print(
        f"open a small conversation, to the screen showing it: median {median(small)}, "
        f"slowest {ms(max(small))}"
    )
    print(
        f"  CPU time of this process (what the load around it does not add): start-up median "
        f"{median([r.startup_cpu for r in runs])}; opening the big one "
        f"{median([t for r in runs for t in r.big_cpu])}, "
        f"a small one {median([t for r in runs for t in r.small_cpu])}"
    )
    print(
        f"  of which the app's own work (read the page, lay it out): median "
        f"{median([t for r in runs for t in r.handler])}; baseline, a repaint of the log with "
        f"nothing changed: median {median([t for r in runs for t in r.repaint])}"
    )


if __name__ == "__main__":
    main()
