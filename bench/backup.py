"""What a backup costs: a store of 10,000 messages backed up and restored.

    python bench/backup.py              # 10,000 messages, 3 runs
    python bench/backup.py --messages 100000

The store is a real SQLite store made with the real Argon2id setting (so a backup pays for
unlocking it, as ``sotto backup create`` does) and filled with two contacts, a group and the
messages (texts of 20 to 200 characters, a third each in the two conversations and the group).
Each run writes a backup under a fresh recovery key (``create``), then restores it into a new
store (``restore``: decrypting, installing the key row under the real Argon2id setting and
opening the store to check it). Printed: the median of the runs, in seconds of wall time and of
the process's CPU time, the backup's size, and the ratio of the median ``create`` to the target
(2 s for 10,000 messages; below 1 meets it). Also the baseline measured in the same process: one
Argon2id derivation at the store's setting, the floor of what either step costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sotto.client.backup import create_backup, restore_backup
from sotto.client.backup_format import RecoveryKey
from sotto.crypto.keys import KeyPair
from sotto.crypto.passphrase import Argon2Params, derive_key
from sotto.crypto.random import seeded_rng, system_rng
from sotto.protocol.address import ProtocolAddress
from sotto.store.model import Account, Conversation, Direction, GroupId, MessageId, MessageState
from sotto.store.sqlite import SqliteStore

TARGET_S = 2.0
TARGET_MESSAGES = 10_000
PASSPHRASE = "bench passphrase"
NOW_MS = 1_800_000_000_000


def _fill(path: Path, messages: int) -> None:
    rng = seeded_rng(1)
    store = SqliteStore.create(path, PASSPHRASE)
    try:
        with store.transaction() as tx:
            account_id = rng(16)
            tx.account.put(
                Account(
                    account_id=account_id,
                    device_id=1,
                    device_secret=rng(32),
                    identity=KeyPair.generate(rng),
                    registration_id=1,
                    server_url="http://127.0.0.1:1",
                    display_name="Bench",
                    created_ms=NOW_MS,
                    address=ProtocolAddress(str(uuid.UUID(bytes=account_id)), 1),
                )
            )
            people = []
            for name in ("Bob", "Carol"):
                peer = rng(16)
                people.append(
                    tx.contacts.add(
                        name=name,
                        account_id=peer,
                        address=ProtocolAddress(str(uuid.UUID(bytes=peer)), 1),
                        now_ms=NOW_MS,
                    )
                )
            group = tx.groups.create(
                group_id=GroupId(rng(32)), name="Group", distribution_id=uuid.uuid4(), created_ms=NOW_MS
            )
            for person in people:
                tx.groups.add_member(group.group_id, person.contact_id)
            places = [Conversation.direct(p.contact_id) for p in people] + [
                Conversation.group(group.group_id)
            ]
            words = [
                "lorem",
                "ipsum",
                "dolor",
                "sit",
                "amet",
                "consectetur",
                "adipiscing",
                "elit",
                "sed",
                "do",
                "eiusmod",
                "tempor",
            ]
            for n in range(messages):
                ours = n % 2 == 0
                text = " ".join(words[(n + i) % len(words)] for i in range(4 + n % 30))
                tx.messages.add(
                    message_id=MessageId(rng(16)),
                    conversation=places[n % 3],
                    direction=Direction.OUTGOING if ours else Direction.INCOMING,
                    sender=None if ours else people[n % 2].contact_id,
                    text=text,
                    sent_ms=NOW_MS + n,
                    stored_ms=NOW_MS + n,
                    state=MessageState.SENT if ours else MessageState.RECEIVED,
                )
    finally:
        store.close()


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=TARGET_MESSAGES)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = root / "profile" / "sotto.db"
        store.parent.mkdir()
        started = time.perf_counter()
        _fill(store, args.messages)
        print(f"store of {args.messages:,} messages made in {time.perf_counter() - started:.1f} s")
        kdf = Argon2Params.INTERACTIVE
        t0, c0 = time.perf_counter(), _cpu()
        derive_key(PASSPHRASE, bytes(16), kdf)
        argon_wall, argon_cpu = time.perf_counter() - t0, _cpu() - c0
        print(
            f"baseline: one Argon2id at the store's setting: {argon_wall:.2f} s wall, {argon_cpu:.2f} s CPU"
        )
        created: list[float] = []
        created_cpu: list[float] = []
        restored: list[float] = []
        restored_cpu: list[float] = []
        sizes: list[int] = []
        for run in range(args.runs):
            key = RecoveryKey.generate(system_rng)
            file = root / f"backup-{run}"
            t0, c0 = time.perf_counter(), _cpu()
            summary = create_backup(store, PASSPHRASE, file, key)
            created.append(time.perf_counter() - t0)
            created_cpu.append(_cpu() - c0)
            sizes.append(summary.size)
            assert summary.counts["messages"] == args.messages
            target = root / f"restored-{run}" / "sotto.db"
            t0, c0 = time.perf_counter(), _cpu()
            restore_backup(file, key, target, PASSPHRASE, kdf=kdf)
            restored.append(time.perf_counter() - t0)
            restored_cpu.append(_cpu() - c0)
        print(
            f"store file {store.stat().st_size / 1e6:.1f} MB; backup {statistics.median(sizes) / 1e6:.1f} MB"
        )
        for label, wall, cpu in (("create ", created, created_cpu), ("restore", restored, restored_cpu)):
            runs = ", ".join(f"{t:.2f}" for t in wall)
            print(
                f"{label} median of {args.runs}: {statistics.median(wall):.2f} s wall, "
                f"{statistics.median(cpu):.2f} s CPU   (runs, wall: {runs})"
            )
        budget = TARGET_S * args.messages / TARGET_MESSAGES
        for label, figure in (("wall", statistics.median(created)), ("CPU", statistics.median(created_cpu))):
            ratio = figure / budget
            print(
                f"create / target ({budget:.1f} s for {args.messages:,} messages), {label}: {ratio:.2f} "
                f"({'meets' if ratio <= 1 else 'misses'} the target)"
            )
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
