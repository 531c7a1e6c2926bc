"""A dump of the relay pairs no contact's mailboxes better than chance.

Making a contact creates a mailbox on each side, usually the same day, an access token for the
invite and a bundle fetch. A relay runs on a fake clock through weeks in which accounts make
contacts on different days and drain their mailboxes on the days they are online (each its
own, independent of its contacts, as people are); then its whole database is read, as anyone who
seizes it would. For every mailbox, its contact's mailbox is ranked among all the others by each
stored column (equality, or closeness for numbers) and by where the row lies in the file: chance
puts it in the middle on average. A positive control ranks by the true day the contact was made,
to show the ranking finds a column that dates it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import random
import sqlite3
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sotto.server import ServerConfig, create_app
from sotto.server.auth import ReplayGuard
from sotto.server.clock import SECONDS_PER_DAY
from sotto.server.config import WorkPolicy
from sotto.server.storage import SqliteStorage
from sotto.server.storage.base import EXPIRY_STEP_DAYS, MailboxId, MailboxRecord, MessageId
from sotto.server.storage.sqlite import DB_FILENAME, id_tag
from sotto.wire import b64
from tests.server.conftest import (
    DAY,
    GENEROUS,
    Account,
    FakeClock,
    Mailbox,
    Relay,
    create_account,
    create_mailbox,
    kyber_key,
    pre_key,
    signed_pre_key,
)

ACCOUNTS = 100
CONTACTS = 220
SIGNUP_DAYS = 7
FORMATION_DAYS = 49
QUIET_DAYS = 10
"""Days after the last contact is made before the dump."""
ONLINE = 0.5
"""Chance that an account is online (and drains every mailbox it holds) on a given day."""
TOLERANCE = 0.06
"""How far from 0.5 a mean rank may be: about three standard errors at this size."""
FREE = WorkPolicy(free_per_minute=1e9, mailbox_free_per_minute=1e9)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    """A relay on SQLite whose account ids come from a seeded generator, so the file is the same
    on every run."""
    clock, storage = FakeClock(), SqliteStorage.in_dir(tmp_path / "data")
    config = ServerConfig(data_dir=tmp_path / "data", rate_limits=GENEROUS, work=FREE)
    app = create_app(config, storage=storage, clock=clock, rng=random.Random(7).randbytes)
    with TestClient(app, raise_server_exceptions=False) as client:
        relay = Relay(client, clock, storage)
        relay.ctx.replay_guard = ReplayGuard(clock.now() - 3_600)
        yield relay
    storage.close_sync()


@dataclass
class Person:
    account: Account
    mailboxes: list[Mailbox] = field(default_factory=list)


@dataclass(frozen=True)
class Contact:
    day: int
    ours: Mailbox
    theirs: Mailbox


@dataclass
class World:
    people: list[Person]
    contacts: list[Contact]
    made: list[bytes]
    """Mailbox ids in the order the relay created them."""
    signed_up: list[bytes]
    """Account ids in the order the relay created them."""


def _run_relay(relay: Relay, rng: random.Random) -> World:
    client, storage = relay.client, relay.storage
    start = relay.clock.seconds

    def set_day(day: int) -> None:
        relay.clock.seconds = start + (day - DAY) * SECONDS_PER_DAY + rng.uniform(0, 3_600)

    people: list[Person] = []
    for i in range(ACCOUNTS):
        set_day(DAY + i * SIGNUP_DAYS // ACCOUNTS)
        account = create_account(client)
        upload = {
            "signed_pre_key": signed_pre_key(1),
            "kyber_last_resort": kyber_key(1),
            "one_time_pre_keys": [pre_key(k) for k in range(1, 11)],
        }
        assert client.put("/v1/accounts/me/keys", json=upload, headers=account.headers).status_code == 204
        people.append(Person(account))
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < CONTACTS:
        a, b = rng.sample(range(ACCOUNTS), 2)
        if (b, a) not in pairs:
            pairs.add((a, b))
    first = DAY + SIGNUP_DAYS
    formed = sorted((first + rng.randrange(FORMATION_DAYS), a, b) for a, b in pairs)
    contacts: list[Contact] = []
    made: list[bytes] = []
    last = first + FORMATION_DAYS + QUIET_DAYS
    for day in range(first, last + 1):
        set_day(day)
        online = {i for i in range(ACCOUNTS) if rng.random() < ONLINE}
        for _, a, b in (f for f in formed if f[0] == day):
            inviter, acceptor = people[a], people[b]
            token = rng.randbytes(32)
            body = {"token": b64.encode(token), "expires_day": day + 8}
            headers = inviter.account.headers
            assert client.put("/v1/accounts/me/access-tokens", json=body, headers=headers).status_code == 204
            bundle = client.get(
                f"/v1/accounts/{inviter.account.id}/bundle",
                headers={"Sotto-Access-Token": b64.encode(token)},
            )
            assert bundle.status_code == 200, bundle.text
            theirs = create_mailbox(client, Mailbox(mailbox_id=rng.randbytes(16)))
            ours = create_mailbox(client, Mailbox(mailbox_id=rng.randbytes(16)))
            acceptor.mailboxes.append(theirs)
            inviter.mailboxes.append(ours)
            made += [theirs.mailbox_id, ours.mailbox_id]
            contacts.append(Contact(day, ours, theirs))
            online |= {a, b}
        drains = [MailboxId(m.mailbox_id) for i in sorted(online) for m in people[i].mailboxes]
        asyncio.run(storage.touch_mailboxes(drains, day))
        asyncio.run(storage.sweep(day, 30))  # the day's first sweep: the file is rewritten
    signed_up = [p.account.account_id for p in people]
    return World(people, contacts, made, signed_up)


# ---------------------------------------------------------------------------- the dump
Value = bytes | int | float | None


def _dump(path: Path) -> dict[str, list[dict[str, Value]]]:
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        out = {}
        for table in tables:
            cursor = conn.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            out[table] = [dict(zip(names, row, strict=True)) for row in cursor]
        return out
    finally:
        conn.close()


def _features(
    dump: dict[str, list[dict[str, Value]]], files: dict[str, bytes], ids: list[bytes]
) -> dict[str, dict[bytes, Value]]:
    """Per mailbox, one value per stored column of every table that names mailboxes (the least
    of its rows' values), and the mailbox id's offset in each file."""
    features: dict[str, dict[bytes, Value]] = {}
    for table, rows in dump.items():
        for row in rows:
            mailbox_id = row.get("mailbox_id")
            if not isinstance(mailbox_id, bytes):
                continue
            for column, value in row.items():
                held = features.setdefault(f"{table}.{column}", {})
                if mailbox_id not in held or _less(value, held[mailbox_id]):
                    held[mailbox_id] = value
    for name, data in files.items():
        features[f"offset in {name}"] = {m: data.find(m) for m in ids}
    return features


def _less(a: Value, b: Value) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a < b
    return False


def _distance(a: Value, b: Value) -> float:
    if a is None or b is None:
        return 0.0 if a is b else 1.0
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(abs(a - b))
    return 0.0 if a == b else 1.0


def _partner_rank(feature: dict[bytes, Value], partner: dict[bytes, bytes]) -> float:
    """The mean, over mailboxes, of where the true partner ranks among all other mailboxes by
    closeness in ``feature`` (0 = closest, 1 = farthest, ties in the middle): 0.5 is chance."""
    ids = list(partner)
    ranks = []
    for m in ids:
        mine = feature.get(m)
        d_true = _distance(mine, feature.get(partner[m]))
        closer = tied = 0
        for other in ids:
            if other in (m, partner[m]):
                continue
            d = _distance(mine, feature.get(other))
            closer += d < d_true
            tied += d == d_true
        ranks.append((closer + tied / 2) / (len(ids) - 2))
    return statistics.fmean(ranks)


def _spearman(order: list[bytes], key: Callable[[bytes], int]) -> float:
    positions = sorted(range(len(order)), key=lambda i: key(order[i]))
    ranks = [0] * len(order)
    for r, i in enumerate(positions):
        ranks[i] = r
    return statistics.correlation(list(range(len(order))), ranks)


# ---------------------------------------------------------------------------- the test
def test_no_column_and_no_storage_order_pairs_a_contacts_mailboxes(relay: Relay, tmp_path: Path) -> None:
    world = _run_relay(relay, random.Random(14))
    assert isinstance(relay.storage, SqliteStorage)
    asyncio.run(relay.storage.get_mailboxes([]))  # queued behind the last rewrite
    assert relay.storage.compactions >= FORMATION_DAYS
    db = tmp_path / "data" / DB_FILENAME
    copy = tmp_path / "copy.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the database file as a seizure finds it
    conn.execute("VACUUM INTO ?", (str(copy),))
    conn.close()
    dump = _dump(copy)

    partner = {}
    for c in world.contacts:
        partner[c.ours.mailbox_id] = c.theirs.mailbox_id
        partner[c.theirs.mailbox_id] = c.ours.mailbox_id
    held = {r["mailbox_id"] for r in dump["mailboxes"]}
    assert held == set(partner), "the dump holds every contact mailbox and nothing else"

    files = {"the database": db.read_bytes(), "a VACUUM INTO copy": copy.read_bytes()}
    features = _features(dump, files, list(partner))
    assert {"mailboxes.expires_day", "mailboxes.ttl_days", "offset in a VACUUM INTO copy"} <= set(features)
    day_made = {m: c.day for c in world.contacts for m in (c.ours.mailbox_id, c.theirs.mailbox_id)}
    control = _partner_rank(dict(day_made), partner)
    assert control < 0.05, f"the ranking finds the true day of making (mean rank {control:.3f})"
    ranks = {name: _partner_rank(feature, partner) for name, feature in features.items()}
    pairing = {name: round(r, 3) for name, r in ranks.items() if abs(r - 0.5) > TOLERANCE}
    assert not pairing, f"columns or file positions that pair a contact's mailboxes: {pairing}"

    # Nor does the order rows lie in follow the order they were made, in the file or in a copy
    # that a VACUUM lays out afresh.
    for name, data in files.items():
        for what, order in (("mailboxes", world.made), ("accounts", world.signed_up)):
            rho = _spearman(order, data.find)
            bound = 3.5 / math.sqrt(len(order) - 1)  # 3.5 standard errors of chance
            assert abs(rho) < bound, f"{what} in {name}: the order they were made in (Spearman {rho:.2f})"
    check = sqlite3.connect(copy)
    try:
        for table in dump:
            if table == "envelope_keys":  # slots, reused in place; no envelope is pending here
                continue
            with pytest.raises(sqlite3.OperationalError):
                check.execute(f"SELECT rowid FROM {table}")
    finally:
        check.close()


def test_account_rows_keep_weeks_not_days(relay: Relay) -> None:
    """Access-token expiries and account creation days are whole weeks: every invite of a week
    (with one lifetime) and every sign-up of a week look alike in a dump."""
    client = relay.client
    for _ in range(EXPIRY_STEP_DAYS):
        account = create_account(client)
        token = b64.encode(hashlib.sha256(account.account_id).digest())
        body = {"token": token, "expires_day": int(relay.clock.seconds // SECONDS_PER_DAY) + 100}
        answer = client.put("/v1/accounts/me/access-tokens", json=body, headers=account.headers)
        assert answer.status_code == 204
        relay.clock.advance_days(1)
    assert isinstance(relay.storage, SqliteStorage)
    dump = _dump(relay.storage.path)
    created = {r["created_day"] for r in dump["accounts"]}
    expiries = {r["expires_day"] for r in dump["access_tokens"]}
    assert all(isinstance(d, int) and d % EXPIRY_STEP_DAYS == 0 for d in created | expiries)
    assert len(created) <= 2 and len(expiries) <= 2  # seven days span at most two weeks
    assert all("created_day" not in r for r in dump["devices"] + dump["mailboxes"])


def test_envelope_key_slots_do_not_follow_arrival(tmp_path: Path) -> None:
    """Pending envelopes' key slots (``envelope_keys`` is a rowid table on purpose) do not say in
    which order the envelopes came, nor which came one after the other, such as a contact request
    and its answer: slots are picked at random among the free ones. (While the table grows, a
    fresh slot says roughly how large it was; here it has grown already, as on a running relay.)"""
    store = SqliteStorage.in_dir(tmp_path)
    token = hashlib.sha256(b"token").digest()
    rng = random.Random(5)
    boxes = [MailboxId(rng.randbytes(16)) for _ in range(300)]

    async def store_all() -> list[bytes]:
        arrived = []
        for box in rng.sample(boxes, len(boxes)):
            message = MessageId(rng.randbytes(16))
            await store.put_envelope(box, token, message, bytes(256), DAY)
            arrived.append(id_tag(box, message))
        return arrived

    def slots() -> dict[bytes, int]:
        conn = sqlite3.connect(store.path)
        try:
            return dict(conn.execute("SELECT id_tag, key_slot FROM envelopes").fetchall())
        finally:
            conn.close()

    async def traffic() -> tuple[list[bytes], dict[bytes, int], list[bytes]]:
        for box in boxes:
            await store.create_mailbox(MailboxRecord(box, bytes(32), token, 30, DAY + 30))
        growing = await store_all()
        while_growing = slots()
        for box in rng.sample(boxes, len(boxes)):  # acknowledged in an order of their own
            await store.delete_envelopes([e.ref for e in await store.pending(box, 10)])
        return growing, while_growing, await store_all()

    try:
        growing, while_growing, arrived = asyncio.run(traffic())
        slot_of = slots()
    finally:
        store.close_sync()
    assert set(slot_of) == set(arrived)
    # Fresh slots, taken while the table grows, are not handed out in turn.
    fresh = [while_growing[t] for t in growing]
    in_turn = sum(abs(a - b) == 1 for a, b in itertools.pairwise(fresh)) / (len(fresh) - 1)
    assert in_turn < 0.05, f"{in_turn:.0%} of envelopes got the slot next to the one before"
    # Reused slots, once the table has grown: neither order nor succession shows.
    rho = _spearman(arrived, lambda t: slot_of[t])
    assert abs(rho) < 3.5 / math.sqrt(len(arrived) - 1), f"slots follow arrival (Spearman {rho:.2f})"
    reused = [slot_of[t] for t in arrived]
    gaps = [abs(a - b) for a, b in itertools.pairwise(reused)]
    shuffled = rng.sample(reused, len(reused))
    chance = [abs(a - b) for a, b in itertools.pairwise(shuffled)]
    assert statistics.median(gaps) > 0.7 * statistics.median(chance), "one after the other, side by side"
