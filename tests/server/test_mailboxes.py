"""Mailboxes and sends over HTTP: creation, signed deletes and exports, sends, and their bad inputs."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from sotto.server.config import RateLimit
from sotto.server.storage.base import EnvelopeRecord, MailboxId, drained_expiry
from sotto.server.storage.sqlite import id_tag
from sotto.wire import b64
from sotto.wire.padding import BUCKETS
from tests.server.conftest import DAY, GENEROUS, Mailbox, Relay, create_mailbox, make_relay, payload, send


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def _signed(relay: Relay, mailbox: Mailbox, method: str, path: str, skew: int = 0) -> dict[str, str]:
    return mailbox.auth_header(method, path, int(relay.clock.now()) + skew)


def test_create_is_idempotent_and_conflicts_on_other_keys(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = Mailbox()
    assert client.post("/v1/mailboxes", json=mailbox.create_body()).status_code == 201
    assert client.post("/v1/mailboxes", json=mailbox.create_body()).status_code == 200
    other = Mailbox(mailbox_id=mailbox.mailbox_id)
    _error(client.post("/v1/mailboxes", json=other.create_body()), 409, "mailbox_conflict")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(mailbox_id=b64.encode(bytes(15))),
        lambda b: b.update(auth_key=b64.encode(bytes(33))),
        lambda b: b.update(delivery_token="not base64!"),
        lambda b: b.update(ttl_days=0),
        lambda b: b.update(ttl_days=91),
        lambda b: b.pop("auth_key"),
        lambda b: b.update(owner="me"),
    ],
)
def test_create_refuses_bad_bodies(relay: Relay, mutate: Any) -> None:
    body = Mailbox().create_body()
    mutate(body)
    _error(relay.client.post("/v1/mailboxes", json=body), 422, "invalid_request")


def test_send_stores_and_dedupes(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client)
    message_id = os.urandom(16)
    first = send(client, mailbox, message_id, payload(256, 1))
    assert first.status_code == 202 and first.json() == {"duplicate": False}
    again = send(client, mailbox, message_id, payload(512, 2))
    assert again.status_code == 202 and again.json() == {"duplicate": True}
    path = f"/v1/mailboxes/{mailbox.id}/export"
    export = client.get(path, headers=_signed(any_relay, mailbox, "GET", path)).json()
    envelopes = export["tables"]["envelopes"]
    assert envelopes == [
        {
            "mailbox_id": mailbox.id,
            "seq": 1,
            "id_tag": b64.encode(id_tag(mailbox.mailbox_id, message_id)),
            "received_day": DAY,
            "key_slot": envelopes[0]["key_slot"],
            "sealed": 16 + 256,  # the id and the payload, under the envelope's own key
        }
    ]


@pytest.mark.parametrize("size", [0, 1, 255, 257, 1000, 65535])
def test_payload_must_be_a_bucket(relay: Relay, size: int) -> None:
    mailbox = create_mailbox(relay.client)
    _error(send(relay.client, mailbox, os.urandom(16), bytes(size)), 422, "payload_not_bucket")


def test_every_bucket_is_accepted_and_larger_is_refused(relay: Relay) -> None:
    mailbox = create_mailbox(relay.client)
    for size in BUCKETS:
        assert send(relay.client, mailbox, os.urandom(16), bytes(size)).status_code == 202
    _error(send(relay.client, mailbox, os.urandom(16), bytes(2 * BUCKETS[-1])), 422, "invalid_request")


def test_wrong_token_unknown_and_expired_mailbox_are_one_404(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client, Mailbox(ttl_days=1))
    answers = [
        send(client, mailbox, os.urandom(16), payload(), token=os.urandom(32)),
        send(client, Mailbox(), os.urandom(16), payload()),
        client.post(
            f"/v1/mailboxes/{mailbox.id}/messages",
            json={"message_id": b64.encode(os.urandom(16)), "payload": b64.encode(payload())},
        ),
        client.post(
            f"/v1/mailboxes/{mailbox.id}/messages",
            json={"message_id": b64.encode(os.urandom(16)), "payload": b64.encode(payload())},
            headers={"Sotto-Delivery-Token": "short"},
        ),
        client.post(
            "/v1/mailboxes/not-an-id/messages",
            json={"message_id": b64.encode(os.urandom(16)), "payload": b64.encode(payload())},
            headers={"Sotto-Delivery-Token": b64.encode(mailbox.token)},
        ),
    ]
    any_relay.clock.advance_days(drained_expiry(mailbox.mailbox_id, DAY, 1) - DAY)
    answers.append(send(client, mailbox, os.urandom(16), payload()))
    assert {(a.status_code, a.text) for a in answers} == {(404, answers[0].text)}
    assert answers[0].json()["code"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"message_id": b64.encode(bytes(15)), "payload": b64.encode(bytes(256))},
        {"message_id": b64.encode(bytes(16))},
        {"message_id": b64.encode(bytes(16)), "payload": "@@@"},
        {"message_id": b64.encode(bytes(16)), "payload": 12},
    ],
)
def test_send_refuses_bad_bodies(relay: Relay, body: dict[str, Any]) -> None:
    mailbox = create_mailbox(relay.client)
    response = relay.client.post(
        f"/v1/mailboxes/{mailbox.id}/messages",
        json=body,
        headers={"Sotto-Delivery-Token": b64.encode(mailbox.token)},
    )
    _error(response, 422, "invalid_request")


def test_delete_needs_the_mailbox_signature(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client)
    send(client, mailbox, os.urandom(16), payload())
    path = f"/v1/mailboxes/{mailbox.id}"
    stranger = Mailbox(mailbox_id=mailbox.mailbox_id)
    refusals = [
        client.delete(path),
        client.delete(path, headers=_signed(any_relay, stranger, "DELETE", path)),
        client.delete(path, headers=_signed(any_relay, mailbox, "GET", path)),
        client.delete(path, headers=_signed(any_relay, mailbox, "DELETE", path + "/export")),
        client.delete(path, headers={"Sotto-Mailbox-Auth": "garbage"}),
        client.delete(
            f"/v1/mailboxes/{b64.encode(os.urandom(16))}", headers=_signed(any_relay, mailbox, "DELETE", path)
        ),
    ]
    assert {(r.status_code, r.text) for r in refusals} == {(404, refusals[0].text)}
    # The owner's own signature out of its window (5 minutes back, 30 s ahead): 401, nothing done.
    for skew in (31, -301):
        stale = client.delete(path, headers=_signed(any_relay, mailbox, "DELETE", path, skew=skew))
        assert stale.status_code == 401 and "sotto-sign-time" in stale.headers
    assert (
        client.delete(path, headers=_signed(any_relay, mailbox, "DELETE", path, skew=-299)).status_code == 204
    )
    assert send(client, mailbox, os.urandom(16), payload()).status_code == 404
    assert client.delete(path, headers=_signed(any_relay, mailbox, "DELETE", path)).status_code == 404


def test_mailbox_export(any_relay: Relay) -> None:
    client = any_relay.client
    mailbox = create_mailbox(client)
    data = payload(1024, 7)
    send(client, mailbox, os.urandom(16), data)
    path = f"/v1/mailboxes/{mailbox.id}/export"
    export = client.get(path, headers=_signed(any_relay, mailbox, "GET", path)).json()
    row = export["tables"]["mailboxes"][0]
    assert row == {
        "mailbox_id": mailbox.id,
        "auth_key": b64.encode(mailbox.key.public.raw),
        "token_hash": b64.encode(hashlib.sha256(mailbox.token).digest()),
        "ttl_days": 30,
        "expires_day": drained_expiry(mailbox.mailbox_id, DAY, 30),  # as a drain today would set
    }
    assert export["tables"]["envelopes"][0]["sealed"] == 16 + 1024
    assert b64.encode(data) not in str(export)
    _error(client.get(path), 404, "not_found")


def test_unknown_routes_and_methods_answer_json(relay: Relay) -> None:
    _error(relay.client.get("/v1/nothing"), 404, "not_found")
    _error(relay.client.put("/v1/mailboxes"), 405, "method_not_allowed")


def test_manifest_and_health(relay: Relay) -> None:
    assert relay.client.get("/v1/health").json() == {"status": "ok"}
    manifest = relay.client.get("/v1/manifest").json()
    assert {t["name"] for t in manifest["tables"]} >= {"mailboxes", "envelopes", "accounts"}


def test_rate_limited_mailbox_creation(tmp_path: Path) -> None:
    limits = dataclasses.replace(GENEROUS, mailbox_creation=RateLimit(2, 0.01))
    for relay in make_relay(tmp_path, limits=limits):
        assert relay.client.post("/v1/mailboxes", json=Mailbox().create_body()).status_code == 201
        assert relay.client.post("/v1/mailboxes", json=Mailbox().create_body()).status_code == 201
        refused = relay.client.post("/v1/mailboxes", json=Mailbox().create_body())
        _error(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1


def test_latin1_digits_in_the_mailbox_auth_header_are_refused_not_raised() -> None:
    """uvicorn hands headers to the app as latin-1: "\u00b2" passes isdigit() but not int()."""
    from sotto.server.auth import MailboxVerdict, ReplayGuard, mailbox_request_auth
    from sotto.server.storage.base import MailboxId, MailboxRecord

    record = MailboxRecord(MailboxId(bytes(16)), bytes(32), bytes(32), 30, DAY + 30)
    nonce, signature = b64.encode(bytes(16)), b64.encode(bytes(64))
    guard = ReplayGuard(0.0)
    for header in [f"\u00b2.{nonce}.{signature}", f"1\u00b9.{nonce}.{signature}"]:
        verdict = mailbox_request_auth(
            record, header, "GET", "/", b"", guard=guard, now=DAY * 86_400.0, today=DAY
        )
        assert verdict is MailboxVerdict.NOT_FOUND


def test_a_duplicate_send_asks_the_mailbox_listeners_to_read_it_again(any_relay: Relay) -> None:
    """The first send may have been stored by a node that stopped before telling anyone: its
    retry (a duplicate) rings the mailbox, here over HTTP and in the WebSocket test below."""
    client = any_relay.client
    mailbox = create_mailbox(client)
    handed: list[EnvelopeRecord] = []
    rechecked: list[MailboxId] = []
    any_relay.ctx.fanout.subscribe(MailboxId(mailbox.mailbox_id), handed.append, rechecked.append)
    message_id = os.urandom(16)
    assert send(client, mailbox, message_id, payload()).json() == {"duplicate": False}
    assert len(handed) == 1 and rechecked == []
    assert send(client, mailbox, message_id, payload()).json() == {"duplicate": True}
    assert len(handed) == 1 and rechecked == [mailbox.mailbox_id]
    assert send(client, mailbox, os.urandom(16), payload(), token=os.urandom(32)).status_code == 404
    assert rechecked == [mailbox.mailbox_id]  # a refused send rings nothing
