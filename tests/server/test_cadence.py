"""Cadence mode on the relay: ``GET /v1/cadence`` and the one-shot drain ``POST …/poll``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from sotto.server.config import ServerConfig
from sotto.server.storage.base import drained_expiry
from sotto.wire import b64
from tests.server.conftest import DAY, Mailbox, Relay, create_mailbox, make_relay, payload, send


def _poll(
    relay: Relay, mailbox: Mailbox, ack: Sequence[bytes] = (), limit: int | None = None, **kw: Any
) -> Any:
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    body: dict[str, Any] = {"ack": [b64.encode(i) for i in ack]}
    if limit is not None:
        body["limit"] = limit
    content = json.dumps(body).encode()
    headers = kw.pop("headers", None) or mailbox.auth_header("POST", path, relay.clock.now(), content)
    return relay.client.post(path, content=content, headers={**headers, "content-type": "application/json"})


def _ids(response: Any) -> list[bytes]:
    assert response.status_code == 200, response.text
    return [b64.decode(e["id"]) for e in response.json()["envelopes"]]


@pytest.fixture
def tick_relay(tmp_path: Path) -> Iterator[Relay]:
    yield from make_relay(tmp_path, cadence_tick_seconds=60)


def test_cadence_announces_the_tick(relay: Relay, tick_relay: Relay) -> None:
    assert relay.client.get("/v1/cadence").json() == {"tick_seconds": 300}
    assert tick_relay.client.get("/v1/cadence").json() == {"tick_seconds": 60}


@pytest.mark.parametrize("seconds", [0, 3_601])
def test_the_tick_is_bounded(seconds: int) -> None:
    with pytest.raises(ValueError, match="cadence_tick_seconds"):
        ServerConfig(cadence_tick_seconds=seconds)


def test_poll_hands_out_then_deletes_only_what_was_acked(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox, other = create_mailbox(client), create_mailbox(client)
    ids = [os.urandom(16) for _ in range(5)]
    for n, message_id in enumerate(ids):
        assert send(client, mailbox, message_id, payload(256, n)).status_code == 202
    foreign = os.urandom(16)
    send(client, other, foreign, payload())

    first = _poll(any_relay, mailbox, limit=2)
    assert _ids(first) == ids[:2] and first.json()["more"] is True
    envelope = first.json()["envelopes"][0]
    assert envelope["day"] == DAY and b64.decode(envelope["payload"]) == payload(256, 0)
    # Not acked yet: handed out again (at least once).
    assert _ids(_poll(any_relay, mailbox, limit=2)) == ids[:2]
    # Acks delete first; an unknown id and another mailbox's envelope are ignored.
    second = _poll(any_relay, mailbox, ack=[*ids[:2], os.urandom(16), foreign], limit=2)
    assert _ids(second) == ids[2:4] and second.json()["more"] is True
    last = _poll(any_relay, mailbox, ack=ids[2:4])
    assert _ids(last) == ids[4:] and last.json()["more"] is False
    assert _ids(_poll(any_relay, mailbox, ack=ids[4:])) == []
    assert _ids(_poll(any_relay, other)) == [foreign]
    stats = any_relay.ctx.stats.snapshot()
    assert stats["polls"] == 6 and stats["envelopes_acked"] == 5


def test_a_replayed_poll_loses_nothing_and_deletes_nothing_twice(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client)
    ids = [os.urandom(16) for _ in range(3)]
    for message_id in ids:
        assert send(client, mailbox, message_id, payload()).status_code == 202
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    replay = json.dumps({"ack": [b64.encode(ids[0])], "limit": 1}).encode()
    headers = {
        **mailbox.auth_header("POST", path, any_relay.clock.now(), replay),
        "content-type": "application/json",
    }
    first = client.post(path, content=replay, headers=headers)
    again = client.post(path, content=replay, headers=headers)  # the same request, byte for byte
    assert _ids(first) == [ids[1]]
    assert again.status_code == 401  # each signature is good once
    assert any_relay.ctx.stats.snapshot()["envelopes_acked"] == 1
    assert _ids(_poll(any_relay, mailbox)) == ids[1:]


def test_poll_moves_the_expiry_like_a_subscription(any_relay: Relay) -> None:
    mailbox = create_mailbox(any_relay.client)
    any_relay.clock.advance_days(20)
    _ids(_poll(any_relay, mailbox))
    any_relay.clock.advance_days(20)  # 40 days after creation, 20 after the poll
    assert _ids(_poll(any_relay, mailbox)) == []


def test_poll_refusals_are_the_one_404(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client)
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    now = int(any_relay.clock.now())
    stranger = Mailbox(mailbox_id=mailbox.mailbox_id)
    refusals = [
        _poll(any_relay, mailbox, headers={"x": "none"}),
        _poll(any_relay, mailbox, headers=stranger.auth_header("POST", path, now)),
        _poll(any_relay, mailbox, headers=mailbox.auth_header("DELETE", path, now)),
        _poll(any_relay, Mailbox(), headers=None),  # never created
    ]
    expired = create_mailbox(client, Mailbox(ttl_days=1))
    any_relay.clock.advance_days(drained_expiry(expired.mailbox_id, DAY, 1) - DAY)
    refusals.append(_poll(any_relay, expired))
    assert {(r.status_code, r.json()["code"]) for r in refusals} == {(404, "not_found")}


@pytest.mark.parametrize(
    "body",
    [{"limit": 0}, {"limit": 257}, {"ack": ["short"]}, {"ack": [b64.encode(bytes(16))] * 1_001}, {"x": 1}],
)
def test_poll_refuses_bad_bodies(relay: Relay, body: dict[str, Any]) -> None:
    mailbox = create_mailbox(relay.client)
    path = f"/v1/mailboxes/{mailbox.id}/poll"
    headers = mailbox.auth_header("POST", path, int(relay.clock.now()))
    response = relay.client.post(path, json=body, headers=headers)
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"


def test_openapi_lists_the_cadence_calls(relay: Relay) -> None:
    paths = relay.client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/v1/cadence"] and "post" in paths["/v1/mailboxes/{mailbox_id}/poll"]
