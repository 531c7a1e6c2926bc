"""SIGKILL a receiving client between storing a message and reporting it, again and again.

Alice (in the test process) sends texts to Bob on the real relay; Bob runs as a child process
(this module run with ``-m``) that prints each ``MessageReceived`` it is handed and is killed
with SIGKILL at a point chosen by its progress:

* ``commit``: the k-th message of the run is committed, its event not yet queued for the app
  (the child kills itself from ``_emit`` and says which message it dies on);
* ``handed``: ``listen()`` handed the k-th message to the app, which dies before printing it;
* ``printed``: the app printed the k-th message and dies before asking for the next;
* ``outside``: the test kills the child as soon as it has printed k messages, wherever it is.

After every run the next one must report what the killed one missed (the message it died on
first of all), no run reports a message id twice, and at the end every text sent was reported
and nothing is left marked unreported.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from sotto.client import events as ev
from sotto.client.sdk import Client
from tests.integration.harness import PASSPHRASE, RelayProcess, befriend, new_client, reopen, run

MODES = ("commit", "handed", "printed", "outside")
RUNS_PER_MODE = 6
BATCH = 4
"""Texts sent before each run: the run's k is at most this, so it always gets that far."""
REPO = Path(__file__).resolve().parents[2]


class Dying(Client):
    """Bob in the child: in ``commit`` mode, dies right after the k-th message is committed."""

    kill_at = 0
    emitted = 0

    def _emit(self, events: Iterable[ev.Event]) -> None:
        events = list(events)
        for event in events:
            if isinstance(event, ev.MessageReceived) and self.kill_at:
                self.emitted += 1
                if self.emitted == self.kill_at:
                    print("dying", event.message_id.hex(), flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)
        super()._emit(events)


async def child(directory: Path, mode: str, k: int) -> None:
    client = await Dying.open(directory, PASSPHRASE, receipt_delay=0.2)
    assert isinstance(client, Dying)
    if mode == "commit":
        client.kill_at = k
    count = 0
    async with client:
        async for event in client.listen():
            if not isinstance(event, ev.MessageReceived):
                continue
            count += 1
            if mode == "handed" and count == k:
                print("dying", event.message_id.hex(), flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            print("got", event.message_id.hex(), flush=True)
            if mode == "printed" and count == k:
                os.kill(os.getpid(), signal.SIGKILL)


async def run_child(directory: Path, mode: str, k: int) -> tuple[list[bytes], bytes | None, int]:
    """One run of Bob: what it printed, the message it died on (``commit``, ``handed``), its exit
    status."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.test_event_replay",
        str(directory),
        mode,
        str(k),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    got: list[bytes] = []
    dying: bytes | None = None
    try:
        while True:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            if not line:
                break
            word, value = line.decode().split()
            if word == "got":
                got.append(bytes.fromhex(value))
                if mode == "outside" and len(got) == k:
                    process.send_signal(signal.SIGKILL)
            elif word == "dying":
                dying = bytes.fromhex(value)
        return got, dying, await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.slow
def test_sigkilled_receiver_reports_every_message_after_reopen_and_none_twice_per_run(tmp_path: Path) -> None:
    rng = random.Random(0x5077)
    relay = RelayProcess(tmp_path / "relay", tmp_path / "relay.log")
    relay.start()
    report: dict[str, int] = {}

    async def main() -> None:
        alice = await new_client(relay.url, tmp_path, "Alice")
        bob = await new_client(relay.url, tmp_path, "Bob")
        async with alice:
            async with bob:
                await befriend(alice, bob)
            sent: list[bytes] = []
            runs: list[list[bytes]] = []
            plan = [mode for mode in MODES for _ in range(RUNS_PER_MODE)]
            rng.shuffle(plan)
            owed: set[bytes] = set()
            """Messages a run died on (stored, or handed to the app, but never printed)."""
            for number, mode in enumerate(plan):
                for i in range(BATCH):
                    sent.append(await alice.send_text("Bob", f"run {number} text {i}"))
                assert await alice.flush() == 0
                k = rng.randint(1, BATCH)
                got, dying, status = await run_child(tmp_path / "Bob", mode, k)
                assert status == -signal.SIGKILL, (mode, k, status)
                assert len(got) == len(set(got)), f"run {number} ({mode}) reported a message twice"
                owed -= set(got)
                if dying is not None:
                    assert dying not in got
                    owed.add(dying)
                runs.append(got)
                if mode in ("commit", "handed"):
                    assert len(got) == k - 1
            async with await reopen(tmp_path, "Bob") as bob:
                final: list[bytes] = []
                for _ in range(20):
                    events = await bob.sync(timeout=3, idle=0.2)
                    final += [e.message_id for e in events if isinstance(e, ev.MessageReceived)]
                    if set(sent) <= {m for got in [*runs, final] for m in got}:
                        break
                assert len(final) == len(set(final))
                assert owed <= set(final), "a message a run died on was never reported"
                assert bob._read(lambda tx: tx.messages.unreported()) == []
            reported = {m for got in [*runs, final] for m in got}
            assert set(sent) <= reported, f"{len(set(sent) - reported)} of {len(sent)} never reported"
            report.update(
                runs=len(runs),
                sent=len(sent),
                reported_again=sum(len(got) for got in [*runs, final]) - len(sent),
            )

    try:
        run(main, timeout=900)
    finally:
        relay.stop()
    print(f"\nevent replay: {report}")


if __name__ == "__main__":
    asyncio.run(child(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
