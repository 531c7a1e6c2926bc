"""Frames of the delivery WebSocket (``docs/relay-protocol.md`` §4).

Each frame is one JSON object in a text message, ``t`` naming its kind. Contract: the decoders
raise :class:`~sotto.errors.DecodeError` and nothing else, on any input; a decoded frame has
every field checked (lengths of ids, nonces, signatures and tokens; payloads of bucket size).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from sotto.errors import DecodeError
from sotto.wire import b64
from sotto.wire.limits import (
    DELIVERY_TOKEN_LENGTH,
    ID_LENGTH,
    MAX_ACK_IDS_PER_FRAME,
    MAX_FRAME_BYTES,
    MAX_SUBSCRIPTIONS_PER_CONNECTION,
    NONCE_LENGTH,
)
from sotto.wire.padding import MAX_PADDED, is_bucket

SIGNATURE_LENGTH = 64


# --------------------------------------------------------------------------- server → client
@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Subscribed:
    mailboxes: tuple[bytes, ...]
    refused: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Envelope:
    mailbox: bytes
    id: bytes
    day: int
    payload: bytes

    def __repr__(self) -> str:
        return f"Envelope(mailbox={self.mailbox.hex()[:8]}…, id={self.id.hex()[:8]}…, {len(self.payload)} B)"


@dataclass(frozen=True, slots=True)
class Sent:
    id: bytes
    duplicate: bool


@dataclass(frozen=True, slots=True)
class SendFailed:
    id: bytes
    code: str


@dataclass(frozen=True, slots=True)
class Error:
    code: str
    message: str


ServerFrame = Challenge | Subscribed | Envelope | Sent | SendFailed | Error


# --------------------------------------------------------------------------- client → server
@dataclass(frozen=True, slots=True)
class MailboxProof:
    id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Subscribe:
    mailboxes: tuple[MailboxProof, ...]


@dataclass(frozen=True, slots=True)
class EnvelopeRef:
    mailbox: bytes
    id: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    ids: tuple[EnvelopeRef, ...]


@dataclass(frozen=True, slots=True)
class Send:
    mailbox: bytes
    token: bytes
    id: bytes
    payload: bytes

    def __repr__(self) -> str:
        return f"Send(mailbox={self.mailbox.hex()[:8]}…, id={self.id.hex()[:8]}…, {len(self.payload)} B)"


ClientFrame = Subscribe | Ack | Send


# --------------------------------------------------------------------------- encoding
def encode_envelope(mailbox: bytes, id_: bytes, day: int, payload: bytes) -> str:
    """``encode(Envelope(mailbox, id_, day, payload))``, for the relay's push loop."""
    e = b64.encode
    return (
        '{"t":"envelope","mailbox":"'
        + e(mailbox)
        + '","id":"'
        + e(id_)
        + '","day":'
        + str(int(day))
        + ',"payload":"'
        + e(payload)
        + '"}'
    )


def encode(frame: ServerFrame | ClientFrame) -> str:
    """The frame as compact JSON text (``json.dumps`` with ``separators=(",", ":")``).

    Built by concatenation: base64url text and integers never need escaping, and this runs
    for every frame the relay sends. Free text (codes, messages) goes through ``json.dumps``.
    """
    e = b64.encode
    match frame:
        case Envelope(mailbox, id_, day, payload):
            return encode_envelope(mailbox, id_, day, payload)
        case Sent(id_, duplicate):
            return (
                '{"t":"sent","id":"'
                + e(id_)
                + ('","duplicate":true}' if duplicate else '","duplicate":false}')
            )
        case Ack(refs):
            return (
                '{"t":"ack","ids":['
                + ",".join('{"mailbox":"' + e(r.mailbox) + '","id":"' + e(r.id) + '"}' for r in refs)
                + "]}"
            )
        case Send(mailbox, token, id_, payload):
            return (
                '{"t":"send","mailbox":"'
                + e(mailbox)
                + '","token":"'
                + e(token)
                + '","id":"'
                + e(id_)
                + '","payload":"'
                + e(payload)
                + '"}'
            )
        case Challenge(nonce):
            return '{"t":"challenge","nonce":"' + e(nonce) + '"}'
        case Subscribed(mailboxes, refused):
            return (
                '{"t":"subscribed","mailboxes":['
                + ",".join('"' + e(m) + '"' for m in mailboxes)
                + '],"refused":['
                + ",".join('"' + e(m) + '"' for m in refused)
                + "]}"
            )
        case Subscribe(proofs):
            return (
                '{"t":"subscribe","mailboxes":['
                + ",".join('{"id":"' + e(p.id) + '","sig":"' + e(p.signature) + '"}' for p in proofs)
                + "]}"
            )
    body: dict[str, Any]
    match frame:
        case SendFailed(id_, code):
            body = {"t": "send_failed", "id": e(id_), "code": code}
        case Error(code, message):
            body = {"t": "error", "code": code, "message": message}
    return json.dumps(body, separators=(",", ":"))


# --------------------------------------------------------------------------- decoding
def _object(text: str | bytes) -> dict[str, Any]:
    if len(text) > MAX_FRAME_BYTES:
        raise DecodeError("frame too large")
    try:
        value = orjson.loads(text)
    except (ValueError, TypeError, RecursionError):  # orjson.JSONDecodeError is a ValueError
        raise DecodeError("frame is not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("t"), str):
        raise DecodeError("frame must be a JSON object with a string 't'")
    return value


_id = b64.fixed_decoder(ID_LENGTH)
_token = b64.fixed_decoder(DELIVERY_TOKEN_LENGTH)
_nonce = b64.fixed_decoder(NONCE_LENGTH)
_signature = b64.fixed_decoder(SIGNATURE_LENGTH)


def _bytes(obj: dict[str, Any], key: str, decode: Callable[[object], bytes]) -> bytes:
    try:
        return decode(obj.get(key))
    except DecodeError as exc:
        raise DecodeError(f"field {key!r}: {exc}") from None


def _str(obj: dict[str, Any], key: str, max_length: int = MAX_FRAME_BYTES) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or len(value) > max_length:
        raise DecodeError(f"field {key!r} must be a string")
    return value


def _list(obj: dict[str, Any], key: str, max_items: int) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list) or len(value) > max_items:
        raise DecodeError(f"field {key!r} must be a list of at most {max_items}")
    return value


def _payload(obj: dict[str, Any]) -> bytes:
    try:
        payload = b64.decode(obj.get("payload"), max_length=MAX_PADDED)  # type: ignore[arg-type]
    except DecodeError as exc:
        raise DecodeError(f"field 'payload': {exc}") from None
    if not is_bucket(len(payload)):
        raise DecodeError("payload length is not a padding bucket")
    return payload


def _item(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError("list items must be objects")
    return value


def _id_list(obj: dict[str, Any], key: str) -> tuple[bytes, ...]:
    items = _list(obj, key, MAX_SUBSCRIPTIONS_PER_CONNECTION)
    if not all(isinstance(i, str) for i in items):
        raise DecodeError(f"field {key!r} must list ids")
    return tuple(_id(i) for i in items)


def decode_client_frame(text: str | bytes) -> ClientFrame:
    obj = _object(text)
    kind = obj["t"]
    if kind == "subscribe":
        proofs = _list(obj, "mailboxes", MAX_SUBSCRIPTIONS_PER_CONNECTION)
        return Subscribe(
            tuple(
                MailboxProof(_bytes(p, "id", _id), _bytes(p, "sig", _signature)) for p in map(_item, proofs)
            )
        )
    if kind == "ack":
        refs = _list(obj, "ids", MAX_ACK_IDS_PER_FRAME)
        return Ack(
            tuple(EnvelopeRef(_bytes(r, "mailbox", _id), _bytes(r, "id", _id)) for r in map(_item, refs))
        )
    if kind == "send":
        return Send(
            _bytes(obj, "mailbox", _id),
            _bytes(obj, "token", _token),
            _bytes(obj, "id", _id),
            _payload(obj),
        )
    raise DecodeError(f"unknown client frame {kind[:32]!r}")


def decode_server_frame(text: str | bytes) -> ServerFrame:
    obj = _object(text)
    kind = obj["t"]
    if kind == "challenge":
        return Challenge(_bytes(obj, "nonce", _nonce))
    if kind == "subscribed":
        return Subscribed(_id_list(obj, "mailboxes"), _id_list(obj, "refused"))
    if kind == "envelope":
        day = obj.get("day")
        if not isinstance(day, int) or isinstance(day, bool) or not 0 <= day < 1_000_000:
            raise DecodeError("field 'day' must be a day number")
        return Envelope(_bytes(obj, "mailbox", _id), _bytes(obj, "id", _id), day, _payload(obj))
    if kind == "sent":
        duplicate = obj.get("duplicate")
        if not isinstance(duplicate, bool):
            raise DecodeError("field 'duplicate' must be a boolean")
        return Sent(_bytes(obj, "id", _id), duplicate)
    if kind == "send_failed":
        return SendFailed(_bytes(obj, "id", _id), _str(obj, "code", 64))
    if kind == "error":
        return Error(_str(obj, "code", 64), _str(obj, "message", 1024))
    raise DecodeError(f"unknown server frame {kind[:32]!r}")
