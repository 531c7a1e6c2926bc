"""No client address at rest: run the real relay process, talk to it from canary addresses, grep.

The relay runs as ``python -m sotto.server`` (its real logging and uvicorn settings). Clients
connect from canary loopback addresses (127.42.13.37, 127.99.1.2) and send canary forwarding
headers and a canary user agent. Afterwards every file in the data directory (database, WAL,
shared memory, key) and everything the process printed is searched for each canary as text,
as packed bytes, as integers and as SHA-256: zero hits. A positive control checks the search
itself finds a canary that is there.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from sotto.wire import b64, frames
from tests.server.conftest import Mailbox, kyber_key, pre_key, signed_pre_key

SOURCE_CANARIES = ["127.42.13.37", "127.99.1.2"]
HEADER_CANARIES = ["203.0.113.77", "198.51.100.23", "2001:db8::7e57"]
USER_AGENT = "CanaryAgent/7.7.7 (canary-device-e1f2)"


def _forms(canary: str) -> list[bytes]:
    """The ways an address could be written down: text, packed, integer, mapped, hashed."""
    address = ipaddress.ip_address(canary)
    packed = address.packed
    as_int = int(address)
    forms = [
        canary.encode(),
        packed,
        str(as_int).encode(),
        hashlib.sha256(canary.encode()).digest(),
        hashlib.sha256(canary.encode()).hexdigest().encode(),
        canary.encode("utf-16-le"),
    ]
    if address.version == 4:
        forms += [
            f"::ffff:{canary}".encode(),
            str(int.from_bytes(packed, "little")).encode(),
            packed[::-1],
            hashlib.sha256(packed).digest(),
        ]
    else:
        forms.append(address.exploded.encode())
    return forms


def _hits(blobs: dict[str, bytes], canaries: list[str]) -> list[str]:
    found = []
    for name, data in blobs.items():
        for canary in canaries:
            for form in _forms(canary):
                if form in data:
                    found.append(f"{canary} as {form[:20]!r} in {name}")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def relay_process(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes], Path]]:
    data, logs = tmp_path / "data", tmp_path / "relay.log"
    port = _free_port()
    with logs.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sotto.server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data",
                str(data),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, logs.read_text()
            assert time.monotonic() < deadline, "relay did not start"
            time.sleep(0.05)
        yield url, data, process, logs
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _client(source: str) -> httpx.Client:
    headers = {
        "User-Agent": USER_AGENT,
        "X-Forwarded-For": ", ".join(HEADER_CANARIES),
        "X-Real-IP": HEADER_CANARIES[0],
        "Forwarded": f'for={HEADER_CANARIES[1]};proto=https, for="[{HEADER_CANARIES[2]}]"',
    }
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), headers=headers, timeout=10)


def _ws(url: str, source: str) -> object:
    sock = socket.socket()
    sock.bind((source, 0))
    host, port = url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    return connect(
        "ws" + url.removeprefix("http") + "/v1/ws",
        sock=sock,
        user_agent_header=USER_AGENT,
        additional_headers={"X-Forwarded-For": HEADER_CANARIES[0]},
    )


def _exercise(url: str) -> None:
    """Every kind of call, from the canary addresses."""
    alice, bob = _client(SOURCE_CANARIES[0]), _client(SOURCE_CANARIES[1])
    secret = os.urandom(32)
    created = alice.post(
        url + "/v1/accounts",
        json={
            "identity_key": b64.encode(b"\x05" + os.urandom(32)),
            "registration_id": 7,
            "device_secret": b64.encode(secret),
        },
    ).json()
    from sotto.wire import auth

    device = {"Authorization": auth.encode_device_auth(b64.decode(created["account_id"]), 1, secret)}
    keys = {
        "signed_pre_key": signed_pre_key(1),
        "kyber_last_resort": kyber_key(2),
        "one_time_pre_keys": [pre_key(1)],
    }
    assert alice.put(url + "/v1/accounts/me/keys", json=keys, headers=device).status_code == 204
    assert (
        alice.put(url + "/v1/accounts/me/username", json={"username": "canary"}, headers=device).status_code
        == 204
    )
    token = os.urandom(32)
    alice.put(
        url + "/v1/accounts/me/access-tokens",
        json={"token": b64.encode(token), "expires_day": 999_999},
        headers=device,
    )
    assert bob.get(url + "/v1/usernames/canary").status_code == 200
    bundle = bob.get(
        url + f"/v1/accounts/{created['account_id']}/bundle",
        headers={"Sotto-Access-Token": b64.encode(token)},
    )
    assert bundle.status_code == 200
    assert bob.get(url + "/v1/accounts/me").status_code == 401
    mailbox = Mailbox()
    assert alice.post(url + "/v1/mailboxes", json=mailbox.create_body()).status_code == 201
    for _ in range(3):
        sent = bob.post(
            url + f"/v1/mailboxes/{mailbox.id}/messages",
            json={"message_id": b64.encode(os.urandom(16)), "payload": b64.encode(os.urandom(256))},
            headers={"Sotto-Delivery-Token": b64.encode(mailbox.token)},
        )
        assert sent.status_code == 202
    with _ws(url, SOURCE_CANARIES[1]) as sender:  # type: ignore[attr-defined]
        frames.decode_server_frame(sender.recv())
        sender.send(
            frames.encode(frames.Send(mailbox.mailbox_id, mailbox.token, os.urandom(16), os.urandom(512)))
        )
        assert isinstance(frames.decode_server_frame(sender.recv()), frames.Sent)
    with _ws(url, SOURCE_CANARIES[0]) as drain:  # type: ignore[attr-defined]
        challenge = frames.decode_server_frame(drain.recv())
        assert isinstance(challenge, frames.Challenge)
        drain.send(
            frames.encode(
                frames.Subscribe(
                    (
                        frames.MailboxProof(
                            mailbox.mailbox_id, b64.decode(mailbox.drain_proof(challenge.nonce)["sig"])
                        ),
                    )
                )
            )
        )
        assert isinstance(frames.decode_server_frame(drain.recv()), frames.Subscribed)
        got = [frames.decode_server_frame(drain.recv()) for _ in range(3)]
        drain.send(
            frames.encode(
                frames.Ack(
                    tuple(frames.EnvelopeRef(e.mailbox, e.id) for e in got if isinstance(e, frames.Envelope))
                )
            )
        )
    with _ws(url, SOURCE_CANARIES[0]) as rude:  # type: ignore[attr-defined]
        rude.recv()
        rude.send("not json")  # a refusal, to make the relay log if it would
        with contextlib.suppress(Exception):
            rude.recv()
    with socket.create_connection(
        ("127.0.0.1", int(url.rsplit(":", 1)[1])), source_address=(SOURCE_CANARIES[0], 0)
    ) as raw:
        raw.sendall(b"GARBAGE / HTTP/9\r\n\r\n")  # uvicorn warns about invalid requests
        with contextlib.suppress(OSError):
            raw.recv(100)
    alice.close()
    bob.close()


def _data_files(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}


def test_no_client_address_or_user_agent_at_rest(
    relay_process: tuple[str, Path, subprocess.Popen[bytes], Path],
) -> None:
    url, data, process, logs = relay_process
    _exercise(url)
    canaries = SOURCE_CANARIES + HEADER_CANARIES
    live = _data_files(data)
    assert {"relay.db", "relay.db-wal", "server.key"} <= set(live), sorted(live)
    # While running (WAL not yet checkpointed), then after a SIGTERM (checkpoint on close).
    assert _hits(live, canaries) == []
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)
    after = {**_data_files(data), "log": logs.read_bytes()}
    assert _hits(after, canaries) == [], logs.read_text()
    assert all(USER_AGENT.encode() not in blob for blob in after.values())
    assert b"canary" not in after["relay.db"] + after.get("relay.db-wal", b"")  # the username: hashed only
    # Every line the process wrote is one of the documented kinds.
    for line in logs.read_text().splitlines():
        assert line.startswith(
            ("INFO sotto.server: stats {", "INFO sotto.server: event relay ", "WARNING uvicorn")
        ), line


def test_the_search_finds_a_canary_that_is_there() -> None:
    packed = ipaddress.ip_address(SOURCE_CANARIES[0]).packed
    assert _hits({"x": b"..." + packed + b"..."}, SOURCE_CANARIES)
    assert _hits({"x": str(int(ipaddress.ip_address(SOURCE_CANARIES[1]))).encode()}, SOURCE_CANARIES)
    assert _hits({"x": HEADER_CANARIES[2].encode()}, HEADER_CANARIES)
