"""A forwarder that keeps no schedules (an older one, or one that refuses them): cadence mode
through it notices the first refusal and sends each tick itself, and messages still arrive.

The relay runs as a process; the forwarder is the real app in this process behind a wrapper that
answers 404 to every ``/v1/schedules/`` path, as a forwarder without them would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.types import Receive, Scope, Send

from sotto.client import events as ev
from sotto.client.oblivious import fetch_key_config, oblivious_network
from sotto.client.sdk import Client
from sotto.crypto.passphrase import Argon2Params
from sotto.forwarder import ForwarderConfig, create_forwarder_app
from sotto.server.observer import HttpExchange, read_view
from tests.forwarder.processes import in_thread, relay_with_gateway


class WithoutSchedules:
    def __init__(self, relay: str) -> None:
        self.app = create_forwarder_app(ForwarderConfig(relay_url=relay))
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/schedules/"):
            self.refused += 1
            body = json.dumps({"status": 404, "code": "not_found", "title": "not a path"}).encode()
            headers = [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, WithoutSchedules, Path]]:
    root = tmp_path_factory.mktemp("no-schedule")
    view = root / "view.jsonl"
    with relay_with_gateway(root / "data", root / "relay.log", view) as relay:
        forwarder = WithoutSchedules(relay)
        with in_thread(forwarder) as url:
            yield relay, url, forwarder, view


def test_cadence_mode_falls_back_to_sending_each_tick_itself(
    stack: tuple[str, str, WithoutSchedules, Path], tmp_path: Path
) -> None:
    relay, url, forwarder, view = stack

    async def main() -> dict[str, list[str]]:
        pinned = await fetch_key_config(relay + "/v1/gateway/keys")
        clients = {}
        for name, address in (("Alice", "127.0.0.2"), ("Bob", "127.0.0.3")):
            network = oblivious_network(url, pinned, relay_url=relay, local_address=address)
            clients[name] = await Client.create(
                tmp_path / name,
                relay,
                "correct horse battery staple",
                name,
                network=network,
                kdf=Argon2Params.TESTING,
                cadence=True,
                receipt_delay=0.1,
            )
        seen: dict[str, list[str]] = {"Alice": [], "Bob": []}

        async def listen(name: str) -> None:
            async for event in clients[name].listen():
                if isinstance(event, ev.MessageReceived):
                    seen[name].append(event.text)

        listeners = [asyncio.create_task(listen(name)) for name in clients]
        try:
            invite = await clients["Alice"].create_invite()
            await clients["Bob"].accept_invite(invite.link, "Alice")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 90
            while not (clients["Bob"].is_ready("Alice") and clients["Alice"].is_ready("Bob")):
                assert loop.time() < deadline, "the contact did not form"
                await asyncio.sleep(0.1)
            await clients["Alice"].send_text("Bob", "still here")
            await clients["Bob"].send_text("Alice", "me too")
            while not (seen["Alice"] and seen["Bob"]):
                assert loop.time() < deadline + 60, seen
                await asyncio.sleep(0.1)
        finally:
            for listener in listeners:
                listener.cancel()
            for client in clients.values():
                engine_network = client.engine.network
                await client.close()
                await engine_network.aclose()
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), 200))
    assert seen == {"Alice": ["me too"], "Bob": ["still here"]}
    assert forwarder.refused >= 2  # each client asked once (and deleted what was never held)
    polls = [r for r in read_view(view) if isinstance(r, HttpExchange) and r.path.endswith("/poll")]
    assert polls
