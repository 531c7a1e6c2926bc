"""The forwarder's schedules (``/v1/schedules/CAP``) with its relay replaced by a mock and its wall
clock set by the test: slots go to the gateway at their instants and not before, answers are
kept for the capability that left them until acknowledged, replacing and cancelling hold, every
bound is kept, and bad input is refused whole with a typed code and changes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from sotto.forwarder import Forwarder, ForwarderConfig
from sotto.forwarder.schedule import ScheduleBook, ScheduleLimits, ScheduleRefusal, SlotUpload
from sotto.wire import ohttp

RELAY = "http://relay.test:8787"
NOW = 1_800_000_000.0
JSON = {"content-type": "application/json"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


CAP = b64(bytes(range(32)))
OTHER = b64(bytes(range(1, 33)))


def slot_id(n: int) -> bytes:
    return n.to_bytes(16, "big")


def slot(n: int, at: float, body: bytes | None = None, replaces: int | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": b64(slot_id(n)),
        "at": int(at * 1000),
        "request": b64(body or f"sealed-{n}".encode()),
    }
    if replaces is not None:
        raw["replaces"] = b64(slot_id(replaces))
    return raw


@dataclass
class Relay:
    got: list[bytes] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/gateway"
        self.got.append(request.content)
        return httpx.Response(
            200, headers={"content-type": ohttp.RESPONSE_MEDIA_TYPE}, content=b"answer to " + request.content
        )


@dataclass
class Harness:
    forwarder: Forwarder
    relay: Relay
    clock: list[float]

    async def call(self, method: str, path: str, **options: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.forwarder, client=("198.51.100.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://forwarder.test") as http:
            return await http.request(method, path, **options)

    async def upload(self, cap: str = CAP, **body: Any) -> httpx.Response:
        return await self.call("POST", f"/v1/schedules/{cap}/slots", json=body)

    async def collect(self, cap: str = CAP, ack: list[bytes] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        answer = await self.call("POST", f"/v1/schedules/{cap}/collect", json={"ack": [b64(i) for i in ack]})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def advance(self, seconds: float) -> None:
        """Move the wall clock and release what is due, then let the releases finish."""
        self.clock[0] += seconds
        await self.forwarder.release_due()
        for _ in range(50):
            await asyncio.sleep(0)
        await asyncio.gather(*list(self.forwarder._releases))


def run(use: Callable[[Harness], Awaitable[None]], **config: Any) -> Relay:
    relay = Relay()

    async def main() -> None:
        clock = [NOW]
        forwarder = Forwarder(
            ForwarderConfig(relay_url=RELAY, **config),
            transport=httpx.MockTransport(relay.handle),
            wall=lambda: clock[0],
        )
        try:
            await use(Harness(forwarder, relay, clock))
        finally:
            await forwarder.aclose()

    asyncio.run(main())
    return relay


def test_slots_go_to_the_relay_at_their_instants_and_the_answers_wait_for_their_capability() -> None:
    async def use(h: Harness) -> None:
        answer = await h.upload(slots=[slot(1, NOW + 10), slot(2, NOW + 20)])
        assert answer.status_code == 200
        assert answer.json() == {
            "held": [b64(slot_id(1)), b64(slot_id(2))],
            "late": [],
            "released": [],
            "slots": 2,
        }
        await h.advance(9.9)
        assert h.relay.got == []
        await h.advance(0.2)
        assert h.relay.got == [b"sealed-1"]
        assert (await h.collect(OTHER))["replies"] == []  # another capability sees nothing
        kept = await h.collect()
        assert kept["slots"] == 1 and not kept["more"]
        (reply,) = kept["replies"]
        assert reply["id"] == b64(slot_id(1)) and reply["status"] == 200
        assert reply["type"] == ohttp.RESPONSE_MEDIA_TYPE and unb64(reply["body"]) == b"answer to sealed-1"
        assert len((await h.collect())["replies"]) == 1  # kept until acknowledged
        await h.advance(10)
        after = await h.collect(ack=[slot_id(1)])
        assert [r["id"] for r in after["replies"]] == [b64(slot_id(2))] and after["slots"] == 0
        assert h.relay.got == [b"sealed-1", b"sealed-2"]

    run(use)


def test_a_replaced_slot_goes_out_as_its_replacement_and_a_cancelled_one_not_at_all() -> None:
    async def use(h: Harness) -> None:
        await h.upload(slots=[slot(1, NOW + 10), slot(2, NOW + 10), slot(3, NOW + 5)])
        await h.advance(6)  # 3 is released
        answer = await h.upload(
            slots=[slot(4, NOW + 12, b"real", replaces=1), slot(5, NOW + 12, b"again", replaces=3)],
            cancel=[b64(slot_id(2))],
        )
        assert answer.json() == {
            "held": [b64(slot_id(4))],
            "late": [b64(slot_id(5))],  # what it replaces went out already
            "released": [b64(slot_id(3))],
            "slots": 1,
        }
        await h.advance(10)
        assert h.relay.got == [b"sealed-3", b"real"]

    run(use)


def test_a_slot_due_already_is_late_and_not_held() -> None:
    async def use(h: Harness) -> None:
        answer = await h.upload(slots=[slot(1, NOW - 1), slot(2, NOW + 1)])
        assert answer.json()["late"] == [b64(slot_id(1))] and answer.json()["held"] == [b64(slot_id(2))]

    run(use)


def test_deleting_a_schedule_stops_its_slots_and_drops_its_answers() -> None:
    async def use(h: Harness) -> None:
        await h.upload(slots=[slot(1, NOW + 1), slot(2, NOW + 5)])
        await h.advance(2)
        assert (await h.call("DELETE", f"/v1/schedules/{CAP}")).status_code == 204
        await h.advance(10)
        assert (await h.collect())["replies"] == []

    relay = run(use)
    assert relay.got == [b"sealed-1"]


@pytest.mark.parametrize(
    ("method", "path", "options", "status", "code"),
    [
        ("POST", f"/v1/schedules/{CAP[:-1]}/slots", {"json": {}}, 400, "bad_capability"),
        ("POST", "/v1/schedules/not+base64/slots", {"json": {}}, 400, "bad_capability"),
        ("GET", f"/v1/schedules/{CAP}/slots", {}, 405, "method_not_allowed"),
        ("POST", f"/v1/schedules/{CAP}", {}, 405, "method_not_allowed"),
        ("POST", f"/v1/schedules/{CAP}/other", {}, 404, "not_found"),
        ("POST", f"/v1/schedules/{CAP}/slots", {"content": b"{}"}, 415, "unsupported_media_type"),
        ("POST", f"/v1/schedules/{CAP}/slots", {"content": b"{", "headers": JSON}, 400, "malformed"),
        ("POST", f"/v1/schedules/{CAP}/slots", {"json": []}, 400, "malformed"),
        ("POST", f"/v1/schedules/{CAP}/slots", {"json": {"slots": [{"id": "x"}]}}, 400, "malformed"),
        (
            "POST",
            f"/v1/schedules/{CAP}/slots",
            {"json": {"slots": [{**slot(1, NOW + 1), "id": b64(b"short")}]}},
            400,
            "malformed",
        ),
        (
            "POST",
            f"/v1/schedules/{CAP}/slots",
            {"json": {"slots": [{**slot(1, NOW + 1), "at": -5}]}},
            400,
            "malformed",
        ),
        (
            "POST",
            f"/v1/schedules/{CAP}/slots",
            {"json": {"slots": [{**slot(1, NOW + 1), "request": "AA="}]}},
            400,
            "malformed",
        ),
        (
            "POST",
            f"/v1/schedules/{CAP}/slots",
            {"json": {"slots": [slot(1, NOW + 1), slot(1, NOW + 2)]}},
            409,
            "duplicate_slot",
        ),
        (
            "POST",
            f"/v1/schedules/{CAP}/slots",
            {"json": {"slots": [slot(1, NOW + 18 * 3600 + 1)]}},
            422,
            "too_far_ahead",
        ),
        (
            "POST",
            f"/v1/schedules/{CAP}/slots",
            {"json": {"slots": [slot(1, NOW + 1, bytes(ohttp.MAX_ENCAPSULATED_BYTES + 1))]}},
            413,
            "too_large",
        ),
        ("POST", f"/v1/schedules/{CAP}/collect", {"json": {"ack": "all"}}, 400, "malformed"),
    ],
)
def test_bad_input_is_refused_with_a_typed_code_and_changes_nothing(
    method: str, path: str, options: dict[str, Any], status: int, code: str
) -> None:
    async def use(h: Harness) -> None:
        await h.upload(slots=[slot(9, NOW + 1)])
        answer = await h.call(method, path, **options)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == code
        await h.advance(2)
        assert h.relay.got == [b"sealed-9"]  # the schedule is as it was

    run(use)


def test_an_id_held_already_is_refused_unless_the_slot_replaces_itself() -> None:
    async def use(h: Harness) -> None:
        await h.upload(slots=[slot(1, NOW + 1)])
        again = await h.upload(slots=[slot(1, NOW + 2, b"other")])
        assert again.status_code == 409 and again.json()["code"] == "slot_exists"
        itself = await h.upload(slots=[slot(1, NOW + 2, b"other", replaces=1)])
        assert itself.json()["held"] == [b64(slot_id(1))]
        await h.advance(3)
        assert h.relay.got == [b"other"]

    run(use)


def test_bounds_on_slots_bytes_and_schedules_refuse_with_507() -> None:
    limits = ScheduleLimits(max_slots=3, max_schedule_bytes=100, max_schedules=1, max_total_bytes=150)

    async def use(h: Harness) -> None:
        too_many = await h.upload(slots=[slot(i, NOW + 1) for i in range(4)])
        assert too_many.status_code == 507 and too_many.json()["code"] == "schedule_full"
        too_big = await h.upload(slots=[slot(1, NOW + 1, bytes(101))])
        assert too_big.status_code == 507 and too_big.json()["code"] == "schedule_full"
        assert (await h.upload(slots=[slot(1, NOW + 1, bytes(60))])).status_code == 200
        second = await h.upload(OTHER, slots=[slot(1, NOW + 1)])
        assert second.status_code == 507 and second.json()["code"] == "forwarder_full"
        assert h.forwarder.schedules.total_bytes == 60

    run(use, schedules=limits)


def test_kept_answers_are_bounded_in_count_bytes_and_age() -> None:
    book = ScheduleBook(ScheduleLimits(max_slots=2, max_schedule_bytes=1000, max_reply_age_seconds=100))
    key = b"k" * 32
    from sotto.forwarder.schedule import Reply

    book.store(key, [SlotUpload(slot_id(i), int((NOW + 1) * 1000), b"x") for i in range(2)], [], NOW)
    for _, sid, _ in book.due(NOW + 1):
        book.answer(key, Reply(sid, 200, "", bytes(400), NOW + 1))
    book.store(key, [SlotUpload(slot_id(i), int((NOW + 2) * 1000), b"x") for i in range(2, 4)], [], NOW + 1)
    for _, sid, _ in book.due(NOW + 2):
        book.answer(key, Reply(sid, 200, "", bytes(400), NOW + 2))
    kept = book.collect(key, [], NOW + 2).replies
    assert [r.slot_id for r in kept] == [slot_id(2), slot_id(3)]  # the oldest went first
    assert book.total_bytes == 800
    book.expire(NOW + 200)
    assert book.collect(key, [], NOW + 200).replies == [] and book.total_bytes == 0
    book.expire(NOW + 400)
    assert len(book) == 0  # nothing held, untouched for the age: dropped


def test_the_release_loop_sends_on_its_own_once_started() -> None:
    async def use(h: Harness) -> None:
        h.clock[0] = NOW
        await h.upload(slots=[slot(1, NOW + 0.05)])
        h.clock[0] = NOW + 1  # due; the loop (started by the upload) finds it
        for _ in range(200):
            if h.relay.got:
                break
            await asyncio.sleep(0.01)
        assert h.relay.got == [b"sealed-1"]

    run(use)


def test_schedule_endpoints_share_the_source_budget() -> None:
    from sotto.server.config import RateLimit

    async def use(h: Harness) -> None:
        statuses = [(await h.upload(slots=[])).status_code for _ in range(3)]
        assert statuses[:2] == [200, 200] and statuses[2] == 429

    run(use, per_source=RateLimit(burst=2, per_second=0.001))


def test_the_answer_body_is_json_with_nothing_else() -> None:
    async def use(h: Harness) -> None:
        answer = await h.upload(slots=[slot(1, NOW + 1)])
        assert set(answer.headers) == {"content-type", "content-length"}
        json.loads(answer.content)

    run(use)


def test_clear_from_replaces_everything_due_from_an_instant_in_one_upload() -> None:
    async def use(h: Harness) -> None:
        await h.upload(slots=[slot(1, NOW + 1), slot(2, NOW + 5), slot(3, NOW + 9), slot(5, NOW + 4)])
        await h.advance(2)  # 1 is released: its answer stays
        answer = await h.upload(slots=[slot(4, NOW + 6, b"fresh")], clear_from=int((NOW + 4.5) * 1000))
        assert answer.json() == {"held": [b64(slot_id(4))], "late": [], "released": [], "slots": 2}
        await h.advance(10)
        assert h.relay.got == [b"sealed-1", b"sealed-5", b"fresh"]
        replies = (await h.collect())["replies"]
        assert [r["id"] for r in replies] == [b64(slot_id(i)) for i in (1, 5, 4)]
        both = await h.upload(slots=[], clear_from=0, cancel=[b64(slot_id(4))])
        assert both.status_code == 400 and both.json()["code"] == "malformed"
        odd = await h.upload(slots=[], clear_from="now")
        assert odd.status_code == 400 and odd.json()["code"] == "malformed"

    run(use)


def test_a_late_replacement_leaves_the_slot_it_would_replace() -> None:
    async def use(h: Harness) -> None:
        await h.upload(slots=[slot(1, NOW + 5)])
        answer = await h.upload(slots=[slot(2, NOW - 1, b"too late", replaces=1)])
        assert answer.json() == {"held": [], "late": [b64(slot_id(2))], "released": [], "slots": 1}
        await h.advance(6)
        assert h.relay.got == [b"sealed-1"]

    run(use)


def test_the_default_bounds_hold_a_night_of_ticks_and_refuse_beyond_the_horizon() -> None:
    """16 h of 300-s ticks for 20 contacts and 20 mailboxes (sealed sends and polls at their
    measured sizes), uploaded in the client's batches: all of it held, nothing further."""
    book = ScheduleBook()
    key = b"n" * 32
    sizes = [1_681] * 20 + [445] * 20
    uploads = [
        SlotUpload(slot_id(tick * 40 + i), int((NOW + 300 * tick + i) * 1000), bytes(size))
        for tick in range(1, 193)
        for i, size in enumerate(sizes)
    ]
    for start in range(0, len(uploads), book.limits.max_slots_per_upload):
        book.store(key, uploads[start : start + book.limits.max_slots_per_upload], [], NOW)
    assert book.collect(key, [], NOW).slots == 192 * 40
    assert book.total_bytes == 192 * sum(sizes) < book.limits.max_schedule_bytes
    edge = SlotUpload(slot_id(10**6), int((NOW + book.limits.max_horizon_seconds) * 1000), b"x")
    assert book.store(key, [edge], [], NOW).held == [edge.slot_id]
    beyond = SlotUpload(slot_id(10**6 + 1), int((NOW + book.limits.max_horizon_seconds) * 1000) + 1, b"x")
    with pytest.raises(ScheduleRefusal) as refused:
        book.store(key, [beyond], [], NOW)
    assert (refused.value.status, refused.value.code) == (422, "too_far_ahead")
    assert book.limits.max_horizon_seconds >= 16 * 3600
