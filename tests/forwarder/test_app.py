"""The forwarder app alone, its relay replaced by a mock: what it passes on, what it adds and
strips, and what it refuses without bothering the relay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest

from sotto.forwarder import FORWARD_PATH, KEYS_PATH, Forwarder, ForwarderConfig
from sotto.forwarder.__main__ import log_config
from sotto.forwarder.__main__ import main as forwarder_main
from sotto.server.config import RateLimit
from sotto.wire import ohttp

T = TypeVar("T")
RELAY = "http://relay.test:8787"
REQ = {"content-type": ohttp.REQUEST_MEDIA_TYPE}
SEALED = b"\x01\x00\x20\x00\x01\x00\x02" + bytes(range(80))


@dataclass
class MockRelay:
    """The relay's gateway as the forwarder reaches it; every request it got."""

    status: int = 200
    content_type: str = ohttp.RESPONSE_MEDIA_TYPE
    body: bytes = b"sealed answer"
    headers: dict[str, str] = field(default_factory=dict)
    fail: type[httpx.TransportError] | None = None
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail is not None:
            raise self.fail("down", request=request)
        if request.url.path == "/v1/gateway/keys":
            return httpx.Response(200, headers={"content-type": ohttp.KEYS_MEDIA_TYPE}, content=b"keys")
        return httpx.Response(
            self.status, headers={"content-type": self.content_type, **self.headers}, content=self.body
        )


def run(
    relay: MockRelay,
    use: Callable[[Callable[..., Awaitable[httpx.Response]]], Awaitable[T]],
    **config: Any,
) -> T:
    """Drive a forwarder (its relay ``relay``) with requests from chosen source addresses."""

    async def main() -> T:
        forwarder = Forwarder(
            ForwarderConfig(relay_url=RELAY, **config), transport=httpx.MockTransport(relay.handle)
        )

        async def request(
            method: str, path: str, *, source: str = "198.51.100.7", **options: Any
        ) -> httpx.Response:
            transport = httpx.ASGITransport(app=forwarder, client=(source, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://forwarder.test") as http:
                return await http.request(method, path, **options)

        try:
            return await use(request)
        finally:
            await forwarder.aclose()

    return asyncio.run(main())


def test_the_body_goes_to_the_gateway_as_is_with_no_client_header_and_comes_back_as_is() -> None:
    relay = MockRelay(headers={"set-cookie": "x=1", "server": "relay", "x-relay": "internal"})

    async def use(request: Callable[..., Awaitable[httpx.Response]]) -> httpx.Response:
        return await request(
            "POST",
            FORWARD_PATH,
            content=SEALED,
            headers={
                **REQ,
                "user-agent": "Mozilla/5.0 (X11; Linux) Firefox/130.0",
                "x-forwarded-for": "203.0.113.9",
                "cookie": "session=abc",
                "accept-language": "fa-IR",
            },
        )

    answer = run(relay, use)
    (sent,) = relay.requests
    assert str(sent.url) == RELAY + "/v1/gateway" and sent.method == "POST"
    assert sent.content == SEALED
    assert sent.headers["content-type"] == ohttp.REQUEST_MEDIA_TYPE
    assert sent.headers["user-agent"] == "sotto-forwarder"
    names = {n.lower() for n in sent.headers}
    assert names <= {
        "host",
        "content-type",
        "content-length",
        "user-agent",
        "accept",
        "accept-encoding",
        "connection",
    }
    assert "198.51.100.7" not in str(sent.headers) and "203.0.113.9" not in str(sent.headers)
    assert answer.status_code == 200 and answer.content == b"sealed answer"
    assert set(answer.headers) == {"content-type", "content-length"}
    assert answer.headers["content-type"] == ohttp.RESPONSE_MEDIA_TYPE


def test_the_gateways_refusals_pass_through_and_an_unknown_content_type_is_dropped() -> None:
    problem = MockRelay(status=400, content_type="application/problem+json", body=b'{"code": "replayed"}')
    answer = run(problem, lambda request: request("POST", FORWARD_PATH, content=SEALED, headers=REQ))
    assert answer.status_code == 400 and answer.json() == {"code": "replayed"}
    busy = MockRelay(status=503, content_type="text/html", body=b"<html>", headers={"retry-after": "1"})
    answer = run(busy, lambda request: request("POST", FORWARD_PATH, content=SEALED, headers=REQ))
    assert answer.status_code == 503 and "content-type" not in answer.headers
    assert answer.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "options", "status", "code"),
    [
        ("GET", FORWARD_PATH, {}, 405, "method_not_allowed"),
        (
            "POST",
            FORWARD_PATH,
            {"content": SEALED, "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ("POST", FORWARD_PATH, {"content": SEALED}, 415, "unsupported_media_type"),
        ("POST", FORWARD_PATH, {"content": bytes(2_001), "headers": REQ}, 413, "too_large"),
        ("POST", "/v1/gateway", {"content": SEALED, "headers": REQ}, 404, "not_found"),
        ("POST", KEYS_PATH, {"content": SEALED, "headers": REQ}, 404, "not_found"),
    ],
)
def test_refusals_never_reach_the_relay(
    method: str, path: str, options: dict[str, Any], status: int, code: str
) -> None:
    relay = MockRelay()
    answer = run(relay, lambda request: request(method, path, **options), max_body_bytes=2_000)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code
    assert relay.requests == []


def test_an_oversized_body_without_a_length_is_cut_off_as_it_is_read() -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield bytes(500)

    relay = MockRelay()
    answer = run(
        relay,
        lambda request: request("POST", FORWARD_PATH, content=chunks(), headers=REQ),
        max_body_bytes=2_000,
    )
    assert answer.status_code == 413 and relay.requests == []


def test_each_source_has_its_own_budget() -> None:
    relay = MockRelay()

    async def use(request: Callable[..., Awaitable[httpx.Response]]) -> list[httpx.Response]:
        post = {"content": SEALED, "headers": REQ}
        return [
            await request("POST", FORWARD_PATH, source="198.51.100.7", **post),
            await request("POST", FORWARD_PATH, source="198.51.100.7", **post),
            await request("POST", FORWARD_PATH, source="198.51.100.7", **post),
            await request("POST", FORWARD_PATH, source="198.51.100.8", **post),
        ]

    answers = run(relay, use, per_source=RateLimit(burst=2, per_second=0.01))
    assert [a.status_code for a in answers] == [200, 200, 429, 200]
    assert answers[2].json()["code"] == "rate_limited" and int(answers[2].headers["retry-after"]) > 0
    assert len(relay.requests) == 3


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [(httpx.ConnectError, 502, "relay_unreachable"), (httpx.ReadTimeout, 504, "relay_timeout")],
)
def test_a_relay_that_cannot_be_reached_is_a_clear_gateway_error(
    failure: type[httpx.TransportError], status: int, code: str
) -> None:
    relay = MockRelay(fail=failure)
    answer = run(relay, lambda request: request("POST", FORWARD_PATH, content=SEALED, headers=REQ))
    assert answer.status_code == status and answer.json()["code"] == code


def test_the_key_configuration_is_fetched_once_and_served_alike_to_everyone() -> None:
    relay = MockRelay()

    async def use(request: Callable[..., Awaitable[httpx.Response]]) -> list[httpx.Response]:
        return [await request("GET", KEYS_PATH, source=f"198.51.100.{n}") for n in range(3)]

    answers = run(relay, use)
    assert [(a.status_code, a.content) for a in answers] == [(200, b"keys")] * 3
    assert answers[0].headers["content-type"] == ohttp.KEYS_MEDIA_TYPE
    assert [r.url.path for r in relay.requests] == ["/v1/gateway/keys"]
    down = MockRelay(fail=httpx.ConnectError)
    assert run(down, lambda request: request("GET", KEYS_PATH)).status_code == 502


def test_the_command_line_needs_a_relay_and_logs_through_the_relays_filters() -> None:
    with pytest.raises(SystemExit):
        forwarder_main([])
    config = log_config()
    assert config["loggers"]["sotto.forwarder"]["handlers"] == ["stderr"]
    assert config["loggers"]["uvicorn.access"]["handlers"] == []
    assert "scrub" in config["handlers"]["stderr"]["filters"]


def test_requests_held_at_once_are_capped_per_source_and_in_all() -> None:
    async def main() -> tuple[list[int], list[int], int]:
        release = asyncio.Event()
        arrived = 0

        async def slow(request: httpx.Request) -> httpx.Response:
            nonlocal arrived
            arrived += 1
            await release.wait()
            return httpx.Response(200, headers={"content-type": ohttp.RESPONSE_MEDIA_TYPE}, content=b"ok")

        forwarder = Forwarder(
            ForwarderConfig(relay_url=RELAY, max_in_flight=3, max_in_flight_per_source=2),
            transport=httpx.MockTransport(slow),
        )

        async def post(source: str) -> int:
            transport = httpx.ASGITransport(app=forwarder, client=(source, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://forwarder.test") as http:
                answer = await http.post(FORWARD_PATH, content=SEALED, headers=REQ)
                return answer.status_code

        held = [asyncio.create_task(post(s)) for s in ("198.51.100.1", "198.51.100.1", "198.51.100.2")]
        while arrived < 3:
            await asyncio.sleep(0.01)
        refused = [await post("198.51.100.1"), await post("198.51.100.3")]
        release.set()
        done = [await task for task in held]
        left = len(forwarder._in_flight) + forwarder._total_in_flight
        await forwarder.aclose()
        return refused, done, left

    refused, done, left = asyncio.run(asyncio.wait_for(main(), 30))
    assert refused == [429, 503] and done == [200, 200, 200] and left == 0
