"""WebSocket frames: every frame round-trips; decoders raise DecodeError and nothing else."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.errors import DecodeError
from sotto.wire import b64, frames
from sotto.wire.limits import MAX_FRAME_BYTES
from sotto.wire.padding import BUCKETS

ids = st.binary(min_size=16, max_size=16)
payloads = st.sampled_from(BUCKETS[:4]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
codes = st.text(max_size=64)

server_frames = st.one_of(
    st.builds(frames.Challenge, st.binary(min_size=32, max_size=32)),
    st.builds(frames.Subscribed, st.lists(ids, max_size=5).map(tuple), st.lists(ids, max_size=5).map(tuple)),
    st.builds(frames.Envelope, ids, ids, st.integers(0, 999_999), payloads),
    st.builds(frames.Sent, ids, st.booleans()),
    st.builds(frames.SendFailed, ids, codes),
    st.builds(frames.Error, codes, st.text(max_size=1024)),
)
client_frames = st.one_of(
    st.builds(
        frames.Subscribe,
        st.lists(st.builds(frames.MailboxProof, ids, st.binary(min_size=64, max_size=64)), max_size=5).map(
            tuple
        ),
    ),
    st.builds(frames.Ack, st.lists(st.builds(frames.EnvelopeRef, ids, ids), max_size=5).map(tuple)),
    st.builds(frames.Send, ids, st.binary(min_size=32, max_size=32), ids, payloads),
)


@given(server_frames)
def test_server_frames_round_trip(frame: frames.ServerFrame) -> None:
    assert frames.decode_server_frame(frames.encode(frame)) == frame


@given(client_frames)
def test_client_frames_round_trip(frame: frames.ClientFrame) -> None:
    text = frames.encode(frame)
    assert len(text) <= MAX_FRAME_BYTES
    assert frames.decode_client_frame(text) == frame


@given(st.one_of(server_frames, client_frames))
def test_encoding_is_compact_json_with_the_kind_first(frame: Any) -> None:
    text = frames.encode(frame)
    body = json.loads(text)
    assert text == json.dumps(body, separators=(",", ":"))
    assert next(iter(body)) == "t"


def test_the_largest_send_fits_a_frame() -> None:
    frame = frames.Send(bytes(16), bytes(32), bytes(16), bytes(BUCKETS[-1]))
    text = frames.encode(frame)
    assert len(text) <= MAX_FRAME_BYTES
    assert frames.decode_client_frame(text) == frame


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_decoders_raise_only_decode_error_on_anything(data: str | bytes) -> None:
    for decode in (frames.decode_client_frame, frames.decode_server_frame):
        with contextlib.suppress(DecodeError):
            decode(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
kinds = st.sampled_from(
    ["challenge", "subscribed", "envelope", "sent", "send_failed", "error", "subscribe", "ack", "send"]
)


@given(st.one_of(server_frames, client_frames), st.data())
def test_mutated_frames_raise_only_decode_error(frame: Any, data: st.DataObject) -> None:
    """Valid frames with one field replaced by arbitrary JSON (or dropped, or renamed)."""
    body = json.loads(frames.encode(frame))
    key = data.draw(st.sampled_from(sorted(body)))
    action = data.draw(st.sampled_from(["replace", "drop", "kind"]))
    if action == "replace":
        body[key] = data.draw(json_values)
    elif action == "drop":
        del body[key]
    else:
        body["t"] = data.draw(kinds)
    text = json.dumps(body)
    for decode in (frames.decode_client_frame, frames.decode_server_frame):
        with contextlib.suppress(DecodeError):
            decode(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "null",
        "[]",
        '{"t": 5}',
        '{"t": "ack"}',
        '{"t": "ack", "ids": [1]}',
        '{"t": "ack", "ids": [{"mailbox": "AAAA", "id": "AAAA"}]}',
        '{"t": "subscribe", "mailboxes": [{"id": "' + b64.encode(bytes(16)) + '", "sig": "AA"}]}',
        '{"t": "send", "mailbox": "' + b64.encode(bytes(16)) + '"}',
        "[" * 100_000,
        '{"t": "ack", "ids": []}' + " " * MAX_FRAME_BYTES,
    ],
)
def test_client_decoder_refuses(text: str) -> None:
    with pytest.raises(DecodeError):
        frames.decode_client_frame(text)


def test_payloads_must_be_buckets() -> None:
    body = json.loads(frames.encode(frames.Send(bytes(16), bytes(32), bytes(16), bytes(256))))
    body["payload"] = b64.encode(bytes(300))
    with pytest.raises(DecodeError):
        frames.decode_client_frame(json.dumps(body))


def test_day_must_be_an_integer_not_a_boolean() -> None:
    body = json.loads(frames.encode(frames.Envelope(bytes(16), bytes(16), 5, bytes(256))))
    for bad in (True, -1, 1_000_000, 1.5, "5"):
        body["day"] = bad
        with pytest.raises(DecodeError):
            frames.decode_server_frame(json.dumps(body))


def test_envelope_repr_hides_the_payload() -> None:
    envelope = frames.Envelope(bytes(16), bytes(16), 1, b"secret-bytes" + bytes(244))
    assert "secret" not in repr(envelope)
    send = frames.Send(bytes(16), b"T" * 32, bytes(16), b"secret-bytes" + bytes(244))
    assert "secret" not in repr(send) and "TTTT" not in repr(send)
