"""The delivery connection's rules alone: plain values in, recorded actions out, a fake time."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import pytest

from sotto.server.config import RateLimit
from sotto.server.delivery_core import (
    CLOSE_IDLE,
    CLOSE_MALFORMED,
    CLOSE_TOO_LARGE,
    CLOSE_TOO_MANY,
    CLOSE_TRY_AGAIN,
    DeliveryConnection,
)
from sotto.server.relay import Fetch, Ref
from sotto.server.storage.base import EnvelopeRecord, MailboxId, MessageId, PutOutcome
from sotto.wire import frames
from sotto.wire.limits import MAX_FRAME_BYTES, MAX_UNACKED_PER_CONNECTION

NONCE = bytes(range(32))
IDLE = 600.0
BOX = MailboxId(b"\x01" * 16)
OTHER = MailboxId(b"\x02" * 16)


class Recorder:
    """Implements the core's actions by writing them down."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.opened: list[tuple[str, Any]] = []  # what connecting did

    def of(self, kind: str) -> list[Any]:
        return [value for name, value in self.log if name == kind]

    def sent(self) -> list[frames.ServerFrame]:
        return [frames.decode_server_frame(text) for text in self.of("send")]

    def take(self) -> list[tuple[str, Any]]:
        log, self.log = self.log, []
        return log

    def send_frame(self, text: str) -> None:
        self.log.append(("send", text))

    def close(self, code: int, reason: str, error: str | None) -> None:
        self.log.append(("close", (code, None if error is None else frames.decode_server_frame(error))))

    def check_mailboxes(self, proofs: Sequence[frames.MailboxProof], nonce: bytes) -> None:
        self.log.append(("check", (tuple(proofs), nonce)))

    def touch_mailboxes(self, mailbox_ids: Sequence[MailboxId]) -> None:
        self.log.append(("touch", list(mailbox_ids)))

    def listen(self, mailbox_ids: Sequence[MailboxId]) -> None:
        self.log.append(("listen", list(mailbox_ids)))

    def unlisten(self, mailbox_ids: Collection[MailboxId]) -> None:
        self.log.append(("unlisten", set(mailbox_ids)))

    def fetch(self, fetch: Fetch) -> None:
        self.log.append(("fetch", fetch))

    def store(self, frame: frames.Send, flush_deletes: bool) -> None:
        self.log.append(("store", (frame, flush_deletes)))

    def delete(self, refs: list[Ref]) -> None:
        self.log.append(("delete", list(refs)))

    def pushed(self, count: int) -> None:
        self.log.append(("pushed", count))

    def schedule(self, at: float) -> None:
        self.log.append(("schedule", at))


def _core(
    *, max_inflight_sends: int = 4, limit: RateLimit | None = None
) -> tuple[DeliveryConnection, Recorder]:
    actions = Recorder()
    core = DeliveryConnection(
        actions,
        idle_seconds=IDLE,
        frame_limit=limit or RateLimit(burst=1_000, per_second=1_000),
        max_inflight_sends=max_inflight_sends,
    )
    core.connected(NONCE, 100.0)
    actions.opened = actions.take()
    return core, actions


def _envelope(mailbox_id: MailboxId, n: int) -> EnvelopeRecord:
    return EnvelopeRecord(mailbox_id, MessageId(n.to_bytes(16, "big")), n, 20_000, bytes([n % 256]) * 256)


def _text(frame: frames.ClientFrame) -> str:
    return frames.encode(frame)


def _subscribed(core: DeliveryConnection, actions: Recorder, *boxes: MailboxId, now: float = 101.0) -> Fetch:
    """Subscribe to ``boxes`` (all valid); the first storage read asked for."""
    proofs = tuple(frames.MailboxProof(box, b"\x00" * 64) for box in boxes)
    core.received(_text(frames.Subscribe(proofs)), now)
    assert actions.take() == [("check", (proofs, NONCE))]
    assert not core.reading  # no frame is read while a subscribe is checked
    core.checked(set(boxes))
    assert actions.take() == [("touch", list(boxes))]
    core.touched()
    log = actions.take()
    assert log[0] == ("send", frames.encode(frames.Subscribed(tuple(boxes), ())))
    assert log[1] == ("listen", list(boxes))
    assert log[2][0] == "fetch" and len(log) == 3
    assert core.reading
    fetch: Fetch = log[2][1]
    return fetch


def _pushed_ids(actions: Recorder) -> list[int]:
    return [int.from_bytes(f.id, "big") for f in actions.sent() if isinstance(f, frames.Envelope)]


def _ack(*envelopes: EnvelopeRecord) -> str:
    return _text(frames.Ack(tuple(frames.EnvelopeRef(e.mailbox_id, e.message_id) for e in envelopes)))


def test_connected_sends_the_challenge_and_arms_the_idle_timer() -> None:
    _, actions = _core()
    assert actions.opened == [("send", frames.encode(frames.Challenge(NONCE))), ("schedule", 100.0 + IDLE)]


def test_subscribe_checks_against_the_nonce_and_answers_after_the_touch() -> None:
    core, actions = _core()
    actions.take()
    proofs = (frames.MailboxProof(BOX, b"a" * 64), frames.MailboxProof(OTHER, b"b" * 64))
    core.received(_text(frames.Subscribe(proofs)), 101.0)
    assert actions.take() == [("check", (proofs, NONCE))]
    core.checked({BOX})
    assert actions.take() == [("touch", [BOX])]  # the answer waits for the touch
    core.touched()
    log = actions.take()
    assert frames.decode_server_frame(log[0][1]) == frames.Subscribed((BOX,), (OTHER,))
    assert log[1] == ("listen", [BOX])
    assert log[2] == ("fetch", Fetch(BOX, 32, frozenset()))
    assert set(core.mailboxes) == {BOX}

    # Subscribing again to a held mailbox needs no check, no touch and no listen.
    core.received(_text(frames.Subscribe((frames.MailboxProof(BOX, b"c" * 64),))), 102.0)
    assert [frames.decode_server_frame(text) for _, text in actions.take()] == [frames.Subscribed((BOX,), ())]


def test_a_subscription_with_nothing_valid_answers_without_a_touch() -> None:
    core, actions = _core()
    actions.take()
    core.received(_text(frames.Subscribe((frames.MailboxProof(BOX, b"a" * 64),))), 101.0)
    actions.take()
    core.checked(set())
    assert actions.sent() == [frames.Subscribed((), (BOX,))]
    assert actions.of("touch") == [] and core.reading and not core.mailboxes


def test_send_is_stored_then_answered_and_sends_in_flight_are_bounded() -> None:
    core, actions = _core(max_inflight_sends=2)
    actions.take()
    sends = [frames.Send(BOX, b"t" * 32, bytes([n]) * 16, b"x" * 256) for n in range(2)]
    core.received(_text(sends[0]), 101.0)
    assert actions.take() == [("store", (sends[0], False))]
    assert core.reading
    core.received(_text(sends[1]), 101.0)
    actions.take()
    assert not core.reading  # two out: the driver waits before the next frame
    core.stored(sends[0].id, PutOutcome.STORED)
    assert core.reading
    core.stored(sends[1].id, PutOutcome.DUPLICATE)
    assert actions.sent() == [frames.Sent(sends[0].id, False), frames.Sent(sends[1].id, True)]


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (PutOutcome.NOT_FOUND, "not_found"),
        (PutOutcome.MAILBOX_FULL, "mailbox_full"),
        (PutOutcome.RELAY_FULL, "relay_full"),
        (None, "unavailable"),
    ],
)
def test_a_refused_or_failed_send_is_answered_send_failed(outcome: PutOutcome | None, code: str) -> None:
    core, actions = _core()
    actions.take()
    core.received(_text(frames.Send(BOX, b"t" * 32, b"i" * 16, b"x" * 256)), 101.0)
    core.stored(b"i" * 16, outcome)
    assert actions.sent() == [frames.SendFailed(b"i" * 16, code)]
    assert not core.closed


def test_envelopes_go_out_in_storage_order_stored_before_live() -> None:
    core, actions = _core()
    fetch = _subscribed(core, actions, BOX)
    actions.take()
    core.live(_envelope(BOX, 3))  # committed while the stored ones are read: read with them
    assert actions.of("send") == []
    core.fetched(fetch, [_envelope(BOX, 1), _envelope(BOX, 2)])
    assert _pushed_ids(actions) == [1, 2]
    assert actions.of("pushed") == [2]
    again = actions.of("fetch")
    assert again == [
        Fetch(BOX, 32, frozenset({MessageId((1).to_bytes(16, "big")), MessageId((2).to_bytes(16, "big"))}))
    ]
    actions.take()
    core.fetched(again[0], [_envelope(BOX, 3)])
    assert _pushed_ids(actions) == [3]
    actions.take()
    core.live(_envelope(BOX, 4))  # nothing left to read: live ones go straight out
    assert _pushed_ids(actions) == [4] and actions.of("fetch") == []


def test_at_most_max_unacked_then_an_ack_deletes_and_makes_room() -> None:
    core, actions = _core()
    fetch = _subscribed(core, actions, BOX)
    stored = [_envelope(BOX, n) for n in range(1, MAX_UNACKED_PER_CONNECTION + 11)]
    window = core.window
    assert window is not None
    for envelope in stored:  # live ones beyond the queue make the mailbox stale: all read from storage
        core.live(envelope)
    core.fetched(fetch, stored[:32])
    pushed = 32
    while (fetches := actions.of("fetch")) and pushed < len(stored):
        actions.log = [entry for entry in actions.log if entry[0] != "fetch"]
        core.fetched(fetches[0], stored[pushed : pushed + fetches[0].limit])
        pushed += fetches[0].limit
    assert _pushed_ids(actions) == list(range(1, MAX_UNACKED_PER_CONNECTION + 1))
    assert window.unacked == MAX_UNACKED_PER_CONNECTION
    actions.take()
    core.received(_ack(*stored[:5]), 102.0)
    assert actions.of("delete") == [[e.ref for e in stored[:5]]]
    assert _pushed_ids(actions) == []  # room again: the rest is read first
    (rest,) = actions.of("fetch")
    assert rest.mailbox_id == BOX and len(rest.skip) == MAX_UNACKED_PER_CONNECTION
    actions.take()
    core.fetched(rest, stored[MAX_UNACKED_PER_CONNECTION:])
    assert _pushed_ids(actions) == list(range(MAX_UNACKED_PER_CONNECTION + 1, MAX_UNACKED_PER_CONNECTION + 6))
    assert core.deleting == 5
    # A send after acks asks for their delete first.
    actions.take()
    send = frames.Send(BOX, b"t" * 32, b"s" * 16, b"x" * 256)
    core.received(_text(send), 102.0)
    assert actions.take() == [("store", (send, True))]
    core.deleted([e.ref for e in stored[:5]])
    assert core.deleting == 0


def test_overflowing_live_envelopes_mark_the_mailbox_stale_and_it_is_read_again() -> None:
    core, actions = _core()
    fetch = _subscribed(core, actions, BOX)
    core.fetched(fetch, [])
    assert actions.of("fetch") == []  # all read: nothing more to ask
    window = core.window
    assert window is not None
    # Unacknowledged envelopes fill the window: what comes live only queues, then overflows.
    for n in range(1, MAX_UNACKED_PER_CONNECTION + 1):
        core.live(_envelope(BOX, n))
    for n in range(MAX_UNACKED_PER_CONNECTION + 1, MAX_UNACKED_PER_CONNECTION + window.max_queued + 4):
        core.live(_envelope(BOX, n))
    assert window.queued == window.max_queued
    actions.take()
    lost = [
        _envelope(BOX, n)
        for n in range(
            MAX_UNACKED_PER_CONNECTION + window.max_queued + 1,
            MAX_UNACKED_PER_CONNECTION + window.max_queued + 4,
        )
    ]
    # Acks free room: the queue goes out, then the mailbox is read again for what overflowed.
    core.received(_ack(*(_envelope(BOX, n) for n in range(1, MAX_UNACKED_PER_CONNECTION + 1))), 102.0)
    first = MAX_UNACKED_PER_CONNECTION + 1
    assert _pushed_ids(actions) == list(range(first, first + window.max_queued))
    (refetch,) = actions.of("fetch")
    assert refetch.mailbox_id == BOX
    actions.take()
    core.fetched(refetch, lost)
    assert _pushed_ids(actions) == [int.from_bytes(e.message_id, "big") for e in lost]


def test_idle_timeout_closes_4408_after_an_error_frame_and_a_frame_rearms_it() -> None:
    core, actions = _core()
    actions.take()
    core.received(_text(frames.Ack(())), 400.0)  # an empty ack keeps the connection open
    core.timer(100.0 + IDLE)
    assert actions.take() == [("schedule", 400.0 + IDLE)]
    core.timer(400.0 + IDLE)
    assert actions.take() == [("close", (CLOSE_IDLE, frames.Error("idle", "idle too long")))]
    assert core.closed and core.close_code == CLOSE_IDLE


@pytest.mark.parametrize(
    ("text", "invalid_text", "code", "error"),
    [
        (None, False, CLOSE_MALFORMED, "malformed"),
        (None, True, CLOSE_MALFORMED, "malformed"),
        ("not json", False, CLOSE_MALFORMED, "malformed"),
        ('{"t":"nope"}', False, CLOSE_MALFORMED, "malformed"),
        ("x" * (MAX_FRAME_BYTES + 1), False, CLOSE_TOO_LARGE, "too_large"),
    ],
)
def test_a_bad_frame_closes_with_its_code_after_an_error_frame(
    text: str | None, invalid_text: bool, code: int, error: str
) -> None:
    core, actions = _core()
    fetch = _subscribed(core, actions, BOX)
    core.received(text, 102.0, invalid_text=invalid_text)
    log = actions.take()
    assert log[0] == ("unlisten", {BOX})
    kind, (closed_code, frame) = log[1]
    assert kind == "close" and closed_code == code
    assert isinstance(frame, frames.Error) and frame.code == error
    assert core.closed and core.close_code == code and not core.reading
    # Nothing more happens once closed.
    core.fetched(fetch, [_envelope(BOX, 1)])
    core.live(_envelope(BOX, 2))
    core.received(_text(frames.Ack(())), 103.0)
    core.timer(1e9)
    assert actions.take() == []


def test_too_many_frames_close_4429() -> None:
    core, actions = _core(limit=RateLimit(burst=3, per_second=1))
    actions.take()
    for _ in range(3):
        core.received(_text(frames.Ack(())), 101.0)
    assert actions.log == []
    core.received(_text(frames.Ack(())), 101.0)
    assert actions.take() == [("close", (CLOSE_TOO_MANY, frames.Error("rate_limited", "too many frames")))]


def test_storage_failure_closes_1013_and_a_closed_peer_only_unlistens() -> None:
    core, actions = _core()
    _subscribed(core, actions, BOX)
    core.storage_failed()
    assert actions.take() == [
        ("unlisten", {BOX}),
        ("close", (CLOSE_TRY_AGAIN, frames.Error("unavailable", "storage unavailable"))),
    ]
    core, actions = _core()
    _subscribed(core, actions, BOX)
    core.closed_by_peer()
    core.storage_failed()
    assert actions.take() == [("unlisten", {BOX})]
    assert core.close_code == 1000


def test_offered_envelopes_wait_for_pump_and_go_out_as_one_batch() -> None:
    core, actions = _core()
    fetch = _subscribed(core, actions, BOX)
    core.fetched(fetch, [])
    actions.take()
    core.offer(_envelope(BOX, 1))
    core.offer(_envelope(BOX, 2))
    assert actions.log == []  # the driver is busy writing
    core.pump()
    assert _pushed_ids(actions) == [1, 2] and actions.of("pushed") == [2]
