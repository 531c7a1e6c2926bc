"""Two real relay processes on one PostgreSQL database and one Redis (``--store``,
``--shared-state``), the same server key: what protects one node protects the other. A signed
poll replayed to the other node is refused and changes nothing, a proof-of-work answer spent on
one is spent on both, a flood of anonymous creations split over both meets the refusals one
node alone gives, and a mailbox quota reached through one holds on the other.

PostgreSQL is the server on 127.0.0.1:5432 and Redis the one on 127.0.0.1:6379
(``SOTTO_TEST_POSTGRES``, ``SOTTO_TEST_REDIS``); the database is the test's own, and the Redis
keys (under a prefix derived from this test's server key) are deleted when it ends."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from sotto.demo.relay import RelayProcess
from sotto.server.server_key import load_or_create
from sotto.server.shared_state import SHARED_STATE_KEY_INFO, RedisState
from sotto.wire import auth, b64, work
from tests.server.conftest import Mailbox, payload
from tests.server.storage.conftest import postgres_database

REDIS = os.environ.get("SOTTO_TEST_REDIS", "redis://127.0.0.1:6379")
JSON = {"content-type": "application/json"}
TIMEOUT = 10.0


@dataclass
class Nodes:
    a: httpx.Client
    b: httpx.Client
    state: RedisState
    """A view of the nodes' shared state (same server key), to reset counts between phases."""

    def reset_work_counts(self) -> None:
        admin = redis.Redis.from_url(REDIS, socket_timeout=5)
        try:
            for name in admin.scan_iter(match=f"{self.state.prefix}meter:*"):
                admin.delete(name)
        finally:
            admin.close()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    data = tmp_path_factory.mktemp("nodes")
    load_or_create(data)  # one server key for both nodes, as a cluster has
    # One account creation in the 5-minute window is free, then 1 bit of work (cheap to solve).
    options = ("--free-signups-per-minute", "0.2", "--max-work-bits", "1", "--mailbox-quota", "2")
    with postgres_database() as dsn:
        common = ("--store", dsn, "--shared-state", REDIS, *options)
        first = RelayProcess(data, data / "a.log", command=("-m", "sotto.server", *common))
        second = RelayProcess(data, data / "b.log", command=("-m", "sotto.cli", "server", *common))
        state = RedisState(REDIS, load_or_create(data).derive(SHARED_STATE_KEY_INFO))
        try:
            first.start()
            second.start()
            with (
                httpx.Client(base_url=first.url, timeout=TIMEOUT) as a,
                httpx.Client(base_url=second.url, timeout=TIMEOUT) as b,
            ):
                yield Nodes(a, b, state)
        finally:
            second.stop()
            first.stop()
            admin = redis.Redis.from_url(REDIS, socket_timeout=5)
            try:
                for name in admin.scan_iter(match=f"{state.prefix}*"):
                    admin.delete(name)
            finally:
                admin.close()


def _create_mailbox(client: httpx.Client) -> Mailbox:
    mailbox = Mailbox()
    created = client.post("/v1/mailboxes", json=mailbox.create_body())
    assert created.status_code == 201, created.text
    return mailbox


def _send(client: httpx.Client, mailbox: Mailbox, message_id: bytes) -> httpx.Response:
    return client.post(
        f"/v1/mailboxes/{mailbox.id}/messages",
        json={"message_id": b64.encode(message_id), "payload": b64.encode(payload())},
        headers={"Sotto-Delivery-Token": b64.encode(mailbox.token)},
    )


def _pending(client: httpx.Client, mailbox: Mailbox) -> list[str]:
    """The ids of the envelopes pending in ``mailbox`` (a fresh signed export)."""
    path = f"/v1/mailboxes/{mailbox.id}/export"
    export = client.get(path, headers=mailbox.auth_header("GET", path, time.time()))
    assert export.status_code == 200, export.text
    return [json.dumps(row, sort_keys=True) for row in export.json()["tables"]["envelopes"]]


def _new_account(client: httpx.Client, work_header: str | None = None) -> httpx.Response:
    body = {
        "identity_key": b64.encode(b"\x05" + os.urandom(32)),
        "registration_id": 7,
        "device_secret": b64.encode(os.urandom(32)),
    }
    headers = {"Sotto-Work": work_header} if work_header else {}
    return client.post("/v1/accounts", json=body, headers=headers)


def test_a_signed_poll_replayed_to_the_other_node_is_refused_and_changes_nothing(nodes: Nodes) -> None:
    mailbox = _create_mailbox(nodes.a)
    message = os.urandom(16)
    assert _send(nodes.b, mailbox, message).status_code == 202
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    body = json.dumps({"ack": [b64.encode(message)]}).encode()
    captured = {**mailbox.auth_header("POST", path, time.time(), body), **JSON}
    assert nodes.a.post(path, content=body, headers=captured).status_code == 200  # acked: deleted
    assert _send(nodes.a, mailbox, message).status_code == 202  # the same id, pending again
    before = _pending(nodes.a, mailbox)
    assert len(before) == 1
    replayed = nodes.b.post(path, content=body, headers=captured)
    assert replayed.status_code == 401, replayed.text
    assert auth.SIGN_TIME_HEADER.lower() in {k.lower() for k in replayed.headers}
    assert _pending(nodes.b, mailbox) == before  # the replayed ack deleted nothing


def test_an_anonymous_creation_flood_split_over_two_nodes_meets_the_refusals_of_one(nodes: Nodes) -> None:
    nodes.reset_work_counts()
    alone = [_new_account(nodes.a).status_code for _ in range(6)]
    nodes.reset_work_counts()
    split = [_new_account(client).status_code for client in (nodes.a, nodes.b) * 3]
    assert alone == [201, 201, 428, 428, 428, 428]
    assert split == alone


def test_a_work_answer_spent_on_one_node_is_refused_on_the_other(nodes: Nodes) -> None:
    for client in (nodes.a, nodes.b, nodes.a):  # busy: work is asked for from now on
        _new_account(client)
    asked = _new_account(nodes.a)
    assert asked.status_code == 428, asked.text
    challenge = b64.decode(asked.json()["challenge"])
    header = work.encode_header(challenge, work.solve(challenge, asked.json()["difficulty"]))
    assert _new_account(nodes.a, header).status_code == 201
    again = _new_account(nodes.b, header)
    assert again.status_code == 428, again.text
    assert again.json()["code"] == "work_replayed"


def test_a_budget_per_source_is_one_budget_for_both_nodes(nodes: Nodes) -> None:
    """Lookups of one name by one source: 10, then one a minute, over both nodes together (each
    node must name this client's network alike for that)."""
    path = f"/v1/usernames/nobody_{os.urandom(4).hex()}"
    codes = [client.get(path).status_code for client in (nodes.a, nodes.b) * 6]
    assert codes == [404] * 10 + [429, 429]


def test_a_mailbox_quota_reached_through_one_node_holds_on_the_other(nodes: Nodes) -> None:
    mailbox = _create_mailbox(nodes.b)
    assert _send(nodes.a, mailbox, os.urandom(16)).status_code == 202
    assert _send(nodes.a, mailbox, os.urandom(16)).status_code == 202  # the quota is 2
    full = _send(nodes.b, mailbox, os.urandom(16))
    assert full.status_code == 507 and full.json()["code"] == "mailbox_full"
    assert len(_pending(nodes.b, mailbox)) == 2
