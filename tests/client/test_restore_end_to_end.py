"""After a restore, the restored profile writes first, through the real relay: Bob backs up,
restores into a new profile (no sessions, no sender keys), and writes to Alice before anyone
has written to him; Alice receives it and they chat both ways. The same in a group."""

from __future__ import annotations

from pathlib import Path

from sotto.client import events as ev
from sotto.client.backup import create_backup, restore_backup
from sotto.client.backup_format import RecoveryKey
from sotto.client.sdk import STORE_FILE, Client
from sotto.crypto.passphrase import Argon2Params
from sotto.crypto.random import system_rng
from sotto.store.model import MessageState
from tests.client.test_end_to_end import PASSPHRASE, befriend, collect, new_client, run, texts


async def restored(bob: Client, directory: Path, tmp_path: Path) -> Client:
    """Back Bob up, close him for good (the old machine is retired), restore into a new profile."""
    await bob.close()
    key = RecoveryKey.generate(system_rng)
    file = tmp_path / "bob.sottobackup"
    create_backup(directory / "Bob" / STORE_FILE, PASSPHRASE, file, key, kdf=Argon2Params.TESTING)
    restore_backup(file, key, tmp_path / "Bob-restored" / STORE_FILE, PASSPHRASE, kdf=Argon2Params.TESTING)
    return await Client.open(tmp_path / "Bob-restored", PASSPHRASE, receipt_delay=0.1)


def _rejections(events: list[ev.Event]) -> list[ev.Event]:
    return [e for e in events if isinstance(e, ev.EnvelopeRejected)]


def test_the_restored_profile_writes_first_and_both_directions_work(server_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        alice = await new_client(server_url, tmp_path, "Alice")
        bob = await new_client(server_url, tmp_path, "Bob")
        async with alice:
            await befriend(alice, bob)
            await alice.send_text("Bob", "before the backup")
            await collect([alice, bob], lambda s: texts(s[bob]) == ["before the backup"])
            new_bob = await restored(bob, tmp_path, tmp_path)
            async with new_bob:
                assert new_bob.waits_for_session("Alice") and not alice.waits_for_session("Bob")
                sent = await new_bob.send_text("Alice", "the restored Bob writes first")
                await new_bob.flush()
                # Not sent: kept in the history while Alice is asked for a session.
                assert new_bob.waits_for_session("Alice")
                held = next(m for m in new_bob.history("Alice") if m.message_id == sent)
                assert held.state is MessageState.QUEUED
                seen = await collect(
                    [alice, new_bob], lambda s: texts(s[alice]) == ["the restored Bob writes first"]
                )
                assert [e.requested for e in seen[new_bob] if isinstance(e, ev.SessionRepaired)] == [True]
                assert not new_bob.waits_for_session("Alice")
                await alice.send_text("Bob", "welcome back")
                await new_bob.send_text("Alice", "thanks")
                seen = await collect(
                    [alice, new_bob],
                    lambda s: texts(s[new_bob]) == ["welcome back"] and texts(s[alice]) == ["thanks"],
                )
                assert _rejections(seen[alice]) == _rejections(seen[new_bob]) == []

    run(main)


def test_in_a_group_the_restored_member_and_the_others_read_each_other(
    server_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        alice, bob, carol = [await new_client(server_url, tmp_path, n) for n in ("Alice", "Bob", "Carol")]
        async with alice, carol:
            await befriend(alice, bob)
            await befriend(alice, carol)
            await befriend(bob, carol)
            group = await alice.create_group("Lunch", ["Bob", "Carol"])
            await collect([bob, carol], lambda _: bool(bob.groups()) and bool(carol.groups()))
            await bob.send_group_text("Lunch", "before the backup")
            await collect(
                [alice, carol], lambda s: texts(s[alice]) == texts(s[carol]) == ["before the backup"]
            )
            new_bob = await restored(bob, tmp_path, tmp_path)
            async with new_bob:
                await new_bob.send_group_text("Lunch", "Bob is back")
                everyone = [alice, carol, new_bob]
                await collect(everyone, lambda s: texts(s[alice]) == texts(s[carol]) == ["Bob is back"])
                await alice.send_group_text(group, "welcome back")
                await carol.send_group_text("Lunch", "hi Bob")
                await new_bob.send_group_text("Lunch", "thanks both")
                seen = await collect(
                    everyone,
                    lambda s: (
                        sorted(texts(s[new_bob])) == ["hi Bob", "welcome back"]
                        and "thanks both" in texts(s[alice])
                        and "thanks both" in texts(s[carol])
                    ),
                )
                assert _rejections(seen[new_bob]) == []

    run(main)
