"""``--cadence`` on the command line: sends are queued for a tick, ``listen`` runs on ticks,
and ``sotto server`` refuses ticks outside its bounds."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from sotto.cli.failures import ExitCode
from sotto.client.sdk import Client
from sotto.demo.relay import RelayProcess
from tests.cli.conftest import PASSPHRASE, Sotto, flat, make_profile


def _queued(profile: str) -> int:
    async def count() -> int:
        async with await Client.open(profile, PASSPHRASE) as client:
            return client.pending_outbox()

    return asyncio.run(count())


def test_send_with_cadence_queues_for_a_tick(sotto: Sotto, relay: RelayProcess, tmp_path: Path) -> None:
    alice = str(make_profile(sotto, relay, tmp_path / "alice", "Alice"))
    bob = str(make_profile(sotto, relay, tmp_path / "bob", "Bob"))
    link = re.search(r"sotto://invite\?[^\s']+", sotto("invite", "--profile", alice).output)
    assert link is not None
    assert sotto("accept", link.group(0), "--name", "Alice", "--profile", bob).exit_code == 0
    assert sotto("listen", "--once", "--profile", alice).exit_code == 0
    assert sotto("listen", "--once", "--profile", bob).exit_code == 0

    before = _queued(bob)
    result = sotto("send", "Alice", "on", "the", "next", "tick", "--cadence", "--profile", bob)
    assert result.exit_code == 0 and "goes out in a tick" in flat(result.output)
    assert _queued(bob) == before + 1  # nothing left outside a tick
    # The relay's tick is 300 s here: one bounded listen polls nothing yet, and keeps it queued.
    quiet = sotto("listen", "--once", "--cadence", "--timeout", "1", "--profile", bob)
    assert quiet.exit_code == 0, quiet.output
    assert _queued(bob) == before + 1


def test_cadence_options_are_listed_and_bounded(sotto: Sotto) -> None:
    assert "--cadence" in sotto("listen", "--help").output
    assert "--cadence" in sotto("send", "--help").output
    assert "--cadence-tick" in sotto("server", "--help").output
    assert sotto("server", "--cadence-tick", "9").exit_code == ExitCode.USAGE
    assert sotto("server", "--cadence-tick", "3601").exit_code == ExitCode.USAGE
