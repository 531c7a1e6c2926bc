"""Nothing at rest that identifies a sender, a client address or a message: canaries, then grep.

Two relay processes: Alice and Carol have their accounts on relay A, Bob on relay B. Each client
is the real SDK bound to its own canary loopback address (127.42.13.37, 127.99.1.2,
127.13.37.42), and every HTTP request and WebSocket upgrade carries canary ``X-Forwarded-For``,
``X-Real-IP``, ``Forwarded`` and ``User-Agent`` headers (raw requests too). They connect by
invite across the two relays, exchange canary texts 1:1 and in a group with a canary name,
register canary usernames and look them up.

Then everything each relay wrote (every file in its data directory: database, ``-wal``, ``-shm``,
key; and everything the process printed) is searched, while it runs and again after it stopped:

* every text, display name, group name, username, client address and forwarded address, in
  every form of :mod:`tests.integration.canaries`: zero hits;
* the account id of every person who is *not* registered on that relay (a sender, as far as
  that relay is concerned), raw, hex, base64url, base64 and as a UUID: zero hits;
* the account ids of the relay's own accounts: zero hits in the output, and in the database only
  inside the pages of the account's own tables (accounts, devices, prekeys, access tokens),
  never in a mailbox, an envelope, a free page or another file. This is checked once the relay
  has stopped and its WAL is folded into the main file, where each page has one owner.

A control plants each kind of canary in a copy of the real database, in a file and in the
output, and checks that the same search finds every one of them.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from sotto.client.sdk import Client
from tests.integration.canaries import (
    CanaryNetwork,
    Forms,
    PageMap,
    files_under,
    id_forms,
    ip_forms,
    scan,
    text_forms,
)
from tests.integration.harness import RelayProcess, befriend, collect, new_client, rejected, run, texts

SOURCES = {"Alice": "127.42.13.37", "Bob": "127.99.1.2", "Carol": "127.13.37.42"}
HOME = {"Alice": "A", "Bob": "B", "Carol": "A"}
FORWARDED = ["203.0.113.77", "198.51.100.23", "2001:db8::7e57"]
USER_AGENT = "CanaryAgent/7.7.7"
HEADERS = {
    "X-Forwarded-For": FORWARDED[0],
    "X-Real-IP": FORWARDED[1],
    "Forwarded": f'for="[{FORWARDED[2]}]";proto=https',
    "User-Agent": USER_AGENT,
}
ACCOUNT_TABLES = {"accounts", "devices", "one_time_pre_keys", "kyber_pre_keys", "access_tokens"}


@dataclass
class Run:
    relays: dict[str, RelayProcess]
    words: dict[str, Forms]
    """Texts, names, usernames, addresses: never anywhere."""
    account_ids: dict[str, bytes]
    """Person -> account id."""

    def foreign_ids(self, relay: str) -> dict[str, Forms]:
        return {f"{p}'s account id": id_forms(a) for p, a in self.account_ids.items() if HOME[p] != relay}

    def own_ids(self, relay: str) -> dict[str, Forms]:
        return {f"{p}'s account id": id_forms(a) for p, a in self.account_ids.items() if HOME[p] == relay}


def findings(
    data_dir: Path, output: bytes, never: dict[str, Forms], own_ids: dict[str, Forms], *, stopped: bool
) -> list[str]:
    """Everything the search objects to, as readable lines (empty: clean)."""
    files = files_under(data_dir)
    problems = [str(hit) for hit in scan({**files, "output": output}, never)]
    problems += [str(hit) for hit in scan({"output": output}, own_ids)]
    if stopped:
        pages = PageMap(data_dir / "relay.db")
        for hit in scan(files, own_ids):
            table = pages.table_at(hit.offset) if hit.where == "relay.db" else None
            if table not in ACCOUNT_TABLES:
                problems.append(f"{hit}, a page of {table or 'no table'}")
    return problems


@pytest.fixture
def canary_run(tmp_path: Path) -> Iterator[Run]:
    relays = {
        name: RelayProcess(tmp_path / f"relay-{name}", tmp_path / f"relay-{name}.log") for name in ("A", "B")
    }
    for relay in relays.values():
        relay.start()
    try:
        yield _exercise(relays, tmp_path)
    finally:
        for relay in relays.values():
            if relay.running:
                relay.kill()


def _exercise(relays: dict[str, RelayProcess], tmp_path: Path) -> Run:
    tag = os.urandom(4).hex()
    names = {person: f"{person}{tag}" for person in SOURCES}
    group_name = f"Canary Group {tag}"
    usernames = {person: f"canary_{person.lower()}_{tag}" for person in SOURCES}
    sent: list[str] = []

    async def main() -> dict[str, bytes]:
        people: dict[str, Client] = {}
        for person, source in SOURCES.items():
            people[person] = await new_client(
                relays[HOME[person]].url,
                tmp_path / "clients",
                names[person],
                network=CanaryNetwork(source, HEADERS),
            )
        alice, bob, carol = people["Alice"], people["Bob"], people["Carol"]
        try:
            await befriend(alice, bob)  # across the two relays
            await befriend(alice, carol)
            await befriend(bob, carol)
            for a, b in (
                (alice, bob),
                (bob, alice),
                (alice, carol),
                (carol, alice),
                (bob, carol),
                (carol, bob),
            ):
                text = f"canary text from {a.display_name} to {b.display_name} {tag}"
                sent.append(text)
                await a.send_text(b.display_name, text)
            group = await alice.create_group(group_name, [names["Bob"], names["Carol"]])
            everyone = list(people.values())
            before = await collect(everyone, lambda _: all(p.groups() for p in everyone))
            for member in everyone:
                text = f"canary group text from {member.display_name} {tag}"
                sent.append(text)
                await member.send_group_text(group.group_id, text)
            seen = await collect(everyone, lambda s: all(len(texts(before[p] + s[p])) >= 4 for p in everyone))
            # The relays did see the canary source addresses (their sockets name them).
            peers = {
                c.raddr.ip
                for r in relays.values()
                for c in psutil.Process(r.pid).net_connections("tcp")
                if c.raddr
            }
            assert set(SOURCES.values()) <= peers, peers
            got = [t for p in everyone for t in texts(before[p] + seen[p])]
            assert sorted(got) == sorted(sent + sent[6:])  # 1:1 texts once, group texts twice
            assert not rejected(e for p in everyone for e in before[p] + seen[p])
            await _usernames(relays, people, usernames)
            return {person: client.account_id for person, client in people.items()}
        finally:
            for client in people.values():
                await client.close()

    account_ids = run(main)
    words: dict[str, Forms] = {}
    for text in [*sent, group_name, *names.values(), *usernames.values(), USER_AGENT]:
        words[text] = text_forms(text)
    for address in [*SOURCES.values(), *FORWARDED]:
        words[address] = ip_forms(address)
    return Run(relays, words, account_ids)


async def _usernames(
    relays: dict[str, RelayProcess], people: dict[str, Client], usernames: dict[str, str]
) -> None:
    """Canary usernames set and looked up with raw HTTP requests, from the canary addresses."""
    for person, client in people.items():
        url = relays[HOME[person]].url
        transport = httpx.AsyncHTTPTransport(local_address=SOURCES[person])
        async with httpx.AsyncClient(transport=transport, headers=HEADERS, timeout=10) as http:
            auth = {"Authorization": client._credentials().header()}
            answer = await http.put(
                f"{url}/v1/accounts/me/username", json={"username": usernames[person]}, headers=auth
            )
            assert answer.status_code == 204, answer.text
            found = await http.get(f"{url}/v1/usernames/{usernames[person].upper()}")
            assert found.status_code == 200, found.text
            assert (await http.get(f"{url}/v1/usernames/nobody_{usernames[person]}")).status_code == 404
            assert (await http.get(f"{url}/v1/health")).status_code == 200
            assert (await http.get(f"{url}/v1/nowhere")).status_code == 404


def test_nothing_at_rest_names_a_sender_an_address_or_a_text(canary_run: Run) -> None:
    for name, relay in canary_run.relays.items():
        never = {**canary_run.words, **canary_run.foreign_ids(name)}
        own = canary_run.own_ids(name)
        live = findings(relay.data_dir, relay.output(), never, own, stopped=False)
        assert live == [], f"relay {name} while running"
        assert (relay.data_dir / "relay.db-wal").exists()  # the live search did read a WAL
        relay.stop()
        assert (
            not (relay.data_dir / "relay.db-wal").exists()
            or (relay.data_dir / "relay.db-wal").stat().st_size == 0
        )
        after = findings(relay.data_dir, relay.output(), never, own, stopped=True)
        assert after == [], f"relay {name} after it stopped"
        assert relay.output(), "the relay's output was captured"
    # The two relays really were used as assumed: each holds its own accounts and not the others.
    for name, relay in canary_run.relays.items():
        conn = sqlite3.connect(relay.db_path)
        held = {row[0] for row in conn.execute("SELECT account_id FROM accounts")}
        conn.close()
        assert held == {a for p, a in canary_run.account_ids.items() if HOME[p] == name}


def test_the_search_finds_canaries_planted_in_a_real_database(canary_run: Run, tmp_path: Path) -> None:
    relay = canary_run.relays["A"]
    relay.stop()
    control = tmp_path / "control"
    shutil.copytree(relay.data_dir, control)
    alice = canary_run.account_ids["Alice"]
    text = next(t for t in canary_run.words if t.startswith("canary text"))
    conn = sqlite3.connect(control / "relay.db")
    mailbox = os.urandom(16)
    with conn:
        conn.execute(
            "INSERT INTO mailboxes VALUES (?, ?, ?, 30, 99999)",
            (mailbox, alice + bytes(16), os.urandom(32)),
        )
        conn.execute(
            "INSERT INTO envelopes VALUES (?, 1, ?, 1, 0, ?)",
            (mailbox, os.urandom(16), b"..." + text.encode() + ip_forms(SOURCES["Bob"])["packed"] + b"..."),
        )
    conn.close()
    (control / "planted.txt").write_text(f"client {FORWARDED[0]}")
    output = relay.output() + f"\nINFO something {alice.hex()}\n".encode()
    never = {**canary_run.words, **canary_run.foreign_ids("A")}
    problems = findings(control, output, never, canary_run.own_ids("A"), stopped=True)
    assert any(text in p and "relay.db" in p for p in problems)
    assert any(SOURCES["Bob"] in p and "(packed)" in p for p in problems)
    assert any(FORWARDED[0] in p and "planted.txt" in p for p in problems)
    assert any("Alice's account id (hex) in output" in p for p in problems)
    assert any("Alice's account id (raw) in relay.db" in p and "a page of mailboxes" in p for p in problems)
    # and the real files, unplanted, are clean
    assert findings(relay.data_dir, relay.output(), never, canary_run.own_ids("A"), stopped=True) == []
