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
  the messages and for a small one, alternately (target ≤ 100 ms);
- **keystroke**: from a key reaching the app to the first frame drawn after the composer took
  it (the frame's terminal output rendered too, which the test driver would skip), for
  ``--keys`` keys typed into the open conversation, once while messages arrive at
  ``--rate`` a second in other conversations (stored, then handed to the app as the client
  would: counted unread, listed first, notified) and once with nothing arriving, the
  baseline; p95 per run (target ≤ 16 ms at 50 a second);
- **search**: from ``/TERM`` to the screen showing the match, in the big conversation freshly
  opened: a term in a recent message, one only in its oldest message, and one in none (each
  asks the store's word index; the oldest match is shown in a page around it) (target ≤ 200 ms
  over 100,000 messages).

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
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.tui.seed

from tests.tui.seed import NOW_MS, PASSPHRASE, big_world
from textual import events
from textual._compositor import CompositorUpdate
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen

from sotto.client import events as ev
from sotto.client.sdk import STORE_FILE, Client
from sotto.client.transport import HttpNetwork
from sotto.crypto.random import system_rng
from sotto.store.model import Contact, Conversation, Direction, MessageId, MessageState
from sotto.tui.app import ChatApp, Composer, StatusLine
from sotto.tui.conversations import ConversationList
from sotto.tui.log import MessageLog
from sotto.tui.model import TimeFormat
from sotto.tui.notify import Style

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
    keys: list[float] = field(default_factory=list)
    keys_base: list[float] = field(default_factory=list)
    arrived: int = 0
    arrival_s: float = 0.0
    search: dict[str, list[float]] = field(default_factory=dict)
    load: float = 0.0


def searches(big: int) -> dict[str, str]:
    """What is searched in the big conversation of ``big`` messages (``message N of COUNT``)."""
    return {
        "recent": f"message {big - 20} of {big}",
        "oldest": f"message 0 of {big}",
        "none": "nobody wrote this",
    }


class Frames:
    """When the app draws a frame: its terminal output is rendered (as a real terminal's driver
    would) and the time kept."""

    def __init__(self, app: ChatApp) -> None:
        self.times: list[float] = []
        self.app = app
        self._display = app._display
        app._display = self._record  # type: ignore[method-assign]

    def _record(self, screen: Screen[object], renderable: object) -> None:
        if isinstance(renderable, CompositorUpdate):
            renderable.render_segments(self.app.console)
            self.times.append(time.perf_counter())
        self._display(screen, renderable)  # type: ignore[arg-type]

    async def after(self, moment: float, timeout: float = 10.0) -> float:
        """The first frame drawn after ``moment`` (waiting for it)."""
        deadline = time.perf_counter() + timeout
        while True:
            later = [t for t in self.times[-8:] if t > moment]
            if later:
                return later[0]
            if time.perf_counter() > deadline:
                raise AssertionError("no frame was drawn")
            await asyncio.sleep(0.0005)


async def type_keys(app: ChatApp, frames: Frames, count: int) -> list[float]:
    """Type ``count`` letters into the composer; each one's time from the key to its frame."""
    changed: list[float] = []
    app.watch(app.composer, "value", lambda _: changed.append(time.perf_counter()), init=False)
    driver = app._driver
    assert driver is not None
    latencies = []
    for n in range(count):
        char = "abcdefghij"[n % 10]
        changed.clear()
        start = time.perf_counter()
        key = events.Key(char, char)
        key.set_sender(app)
        driver.send_message(key)
        while not changed:
            if time.perf_counter() - start > 10:
                raise AssertionError("the composer did not take the key")
            await asyncio.sleep(0.0005)
        drawn = await frames.after(changed[0])
        latencies.append(drawn - start)
        await asyncio.sleep(0.03)  # a fast typist: about 30 keys a second
        if len(app.composer.value) > 60:
            app.composer.value = ""
            await asyncio.sleep(0.03)
    return latencies


async def arrivals(
    client: Client, app: ChatApp, others: list[Contact], rate: float, stop: asyncio.Event
) -> int:
    """Messages arriving at ``rate`` a second in ``others``' conversations, as the client hands
    them to the app: stored first, then the event. How many arrived."""
    count = 0
    start = time.perf_counter()
    while not stop.is_set():
        contact = others[count % len(others)]
        text = f"arrival {count}"
        message_id = MessageId(system_rng(16))

        row = {
            "message_id": message_id,
            "conversation": Conversation.direct(contact.contact_id),
            "direction": Direction.INCOMING,
            "sender": contact.contact_id,
            "text": text,
            "sent_ms": NOW_MS,
            "stored_ms": NOW_MS + count,
            "state": MessageState.RECEIVED,
        }
        client.engine.read(lambda tx, row=row: tx.messages.add(**row))  # type: ignore[misc]
        await app.handle(ev.MessageReceived(contact, message_id, text, NOW_MS))
        count += 1
        delay = start + count / rate - time.perf_counter()
        await asyncio.sleep(max(0.0, delay))
    return count


async def one_run(directory: Path, opens: int, keys: int, rate: float, big_count: int) -> Run:
    start = time.perf_counter()
    client = await Client.open(directory, PASSPHRASE, network=HttpNetwork())
    unlock = time.perf_counter() - start
    async with client:
        base = await baseline()
        start, cpu = time.perf_counter(), time.process_time()
        app = ChatApp(client, live=False, environ={}, notify=Style.OFF)
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
            # Keystrokes into the small conversation, with and without messages arriving elsewhere.
            frames = Frames(app)
            app.open_conversation(small.target)
            app.focus_now(app.composer)
            await pilot.pause()
            keys_base = await type_keys(app, frames, keys)
            others = [s.target for s in summaries if isinstance(s.target, Contact) and s.key != small.key][
                :50
            ]
            stop = asyncio.Event()
            start = time.perf_counter()
            feeding = asyncio.create_task(arrivals(client, app, others, rate, stop))
            await asyncio.sleep(0.5)  # arrivals under way
            keys_loaded = await type_keys(app, frames, keys)
            stop.set()
            arrived = await feeding
            arrival_s = time.perf_counter() - start
            app.composer.value = ""
            await pilot.pause()
            # Searches in the big conversation, each from a fresh open.
            search: dict[str, list[float]] = {name: [] for name in searches(big_count)}
            for name, term in searches(big_count).items():
                app.open_conversation(big.target)
                await pilot.pause()
                start = time.perf_counter()
                app.search_term = term
                app._find(older=True)
                await pilot.pause()
                search[name].append(time.perf_counter() - start)
                found = app.log_view.highlight is not None
                assert found == (name != "none"), (name, found)
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
            keys_loaded,
            keys_base,
            arrived,
            arrival_s,
            search,
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--opens", type=int, default=5, help="opens of each conversation per run")
    parser.add_argument("--keys", type=int, default=200, help="keystrokes timed per run, each way")
    parser.add_argument("--rate", type=float, default=50.0, help="messages arriving a second while typing")
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
            run = asyncio.run(one_run(directory, args.opens, args.keys, args.rate, args.messages // 2))
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

    p95 = [percentile(r.keys, 95) for r in runs]
    p95_base = [percentile(r.keys_base, 95) for r in runs]
    rates = ", ".join(f"{r.arrived / r.arrival_s:.1f}" for r in runs)
    print(
        f"keystroke to its frame while messages arrive ({args.rate:g}/s asked; per run: {rates}/s): "
        f"p95 median {median(p95)}, slowest {ms(max(p95))} (target ≤ 16 ms); "
        f"median keystroke {median([t for r in runs for t in r.keys])}"
    )
    print(
        f"  baseline, nothing arriving (same runs): p95 median {median(p95_base)}, "
        f"median keystroke {median([t for r in runs for t in r.keys_base])}"
    )
    for name, term in searches(args.messages // 2).items():
        times = [t for r in runs for t in r.search[name]]
        print(
            f"search the {args.messages // 2:,}-message conversation for {term!r} ({name}): "
            f"median {median(times)}, slowest {ms(max(times))} (target ≤ 200 ms)"
        )


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


if __name__ == "__main__":
    main()
