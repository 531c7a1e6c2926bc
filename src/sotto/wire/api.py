"""JSON bodies of the HTTP API (``docs/relay-protocol.md`` §1–§3, §6), shared by server and client.

Byte fields are unpadded base64url strings, checked for exact lengths on the way in: the server
validates requests with these models (FastAPI answers 422 for anything else), and the client
builds requests and reads replies with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)

from sotto.errors import DecodeError
from sotto.wire import b64
from sotto.wire.limits import (
    DEFAULT_MAILBOX_TTL_DAYS,
    DELIVERY_TOKEN_LENGTH,
    DEVICE_SECRET_LENGTH,
    ID_LENGTH,
    MAX_ACK_IDS_PER_FRAME,
    MAX_MAILBOX_TTL_DAYS,
    MAX_ONE_TIME_KEYS_PER_UPLOAD,
)
from sotto.wire.padding import BUCKETS, MAX_PADDED, is_bucket
from sotto.wire.work import CHALLENGE_LENGTH, MAX_DIFFICULTY, NONCE_LENGTH

EC_PUBLIC_KEY_LENGTH = 33
KEM_PUBLIC_KEY_LENGTH = 1569
SIGNATURE_LENGTH = 64
ED25519_PUBLIC_KEY_LENGTH = 32
EC_TYPE = 0x05
KEM_TYPE = 0x08


def _parser(
    length: int | None = None, max_length: int | None = None, first_byte: int | None = None
) -> Callable[[object], bytes]:
    def parse(value: object) -> bytes:
        if isinstance(value, bytes):
            data = value
            if length is not None and len(data) != length:
                raise ValueError(f"expected {length} bytes")
        elif isinstance(value, str):
            try:
                data = b64.decode(value, length=length, max_length=max_length)
            except DecodeError as exc:
                raise ValueError(str(exc)) from None
        else:
            raise ValueError("expected a base64url string")
        if first_byte is not None and (not data or data[0] != first_byte):
            raise ValueError(f"expected type byte {first_byte:#04x}")
        return data

    return parse


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64_pattern(length: int, first_byte: int | None = None) -> str:
    """A regex matching exactly the canonical unpadded base64url texts of ``length`` bytes.

    Written into the OpenAPI spec, so that generated clients and API fuzzers know the format:
    the exact text length, the type byte's two leading characters, and a last character whose
    unused low bits are zero.
    """
    if first_byte is not None and length < 2:
        raise ValueError("a type byte needs at least two bytes of key")
    chars = -(-length * 8 // 6)
    unused_bits = chars * 6 - length * 8
    last = _char_class(range(0, 64, 1 << unused_bits))
    head = ""
    if first_byte is not None:
        head = _char_class([first_byte >> 2]) + _char_class(
            range((first_byte & 3) << 4, ((first_byte & 3) << 4) + 16)
        )
    middle = chars - (2 if head else 0) - 1
    return f"^{head}[A-Za-z0-9_-]{{{middle}}}{last}$"


def _char_class(indices: Iterable[int]) -> str:
    # "-" last, where a character class takes it literally.
    chars = sorted({_B64_ALPHABET[i] for i in indices}, key=lambda c: (c == "-", _B64_ALPHABET.index(c)))
    return "[" + "".join(chars) + "]"


def _schema(length: int, first_byte: int | None = None) -> WithJsonSchema:
    chars = -(-length * 8 // 6)
    return WithJsonSchema(
        {
            "type": "string",
            "contentEncoding": "base64url",
            "minLength": chars,
            "maxLength": chars,
            "pattern": b64_pattern(length, first_byte),
        }
    )


_AS_TEXT = PlainSerializer(b64.encode, return_type=str)
_PAYLOAD_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "contentEncoding": "base64url",
        "description": "Exactly one padding bucket long: " + ", ".join(map(str, BUCKETS)) + " bytes.",
        "minLength": -(-BUCKETS[0] * 8 // 6),
        "maxLength": -(-BUCKETS[-1] * 8 // 6),
        # Exactly the canonical unpadded texts the decoder accepts: whole groups of four, then
        # two characters (the last with 4 low bits zero) or three (2 low bits zero).
        "pattern": "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$",
    }
)
Id = Annotated[bytes, PlainValidator(_parser(ID_LENGTH)), _AS_TEXT, _schema(ID_LENGTH)]
DeliveryToken = Annotated[
    bytes, PlainValidator(_parser(DELIVERY_TOKEN_LENGTH)), _AS_TEXT, _schema(DELIVERY_TOKEN_LENGTH)
]
DeviceSecret = Annotated[
    bytes, PlainValidator(_parser(DEVICE_SECRET_LENGTH)), _AS_TEXT, _schema(DEVICE_SECRET_LENGTH)
]
ECPublicKey = Annotated[
    bytes,
    PlainValidator(_parser(EC_PUBLIC_KEY_LENGTH, first_byte=EC_TYPE)),
    _AS_TEXT,
    _schema(EC_PUBLIC_KEY_LENGTH, EC_TYPE),
]
KEMPublicKey = Annotated[
    bytes,
    PlainValidator(_parser(KEM_PUBLIC_KEY_LENGTH, first_byte=KEM_TYPE)),
    _AS_TEXT,
    _schema(KEM_PUBLIC_KEY_LENGTH, KEM_TYPE),
]
Signature = Annotated[bytes, PlainValidator(_parser(SIGNATURE_LENGTH)), _AS_TEXT, _schema(SIGNATURE_LENGTH)]
MailboxKey = Annotated[
    bytes, PlainValidator(_parser(ED25519_PUBLIC_KEY_LENGTH)), _AS_TEXT, _schema(ED25519_PUBLIC_KEY_LENGTH)
]
Payload = Annotated[bytes, PlainValidator(_parser(max_length=MAX_PADDED)), _AS_TEXT, _PAYLOAD_SCHEMA]


def _json_integer(value: object) -> object:
    """A JSON number with no fraction (``3.0``, which JSON Schema calls an integer) as an int.

    Everything else goes on to the strict check, which refuses booleans, strings and fractions.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_AS_INTEGER = BeforeValidator(_json_integer)
Int = Annotated[int, _AS_INTEGER]
"""An integer field: strict (``true``, ``"2"`` and ``2.5`` are refused), ``2.0`` taken as 2.
Bounds go before the validator (``Annotated[int, Field(...), _AS_INTEGER]``), where the JSON
schema shows them as minimum and maximum."""
KeyId = Annotated[int, Field(ge=0, lt=2**24), _AS_INTEGER]
RegistrationId = Annotated[int, Field(ge=1, le=0x3FFF), _AS_INTEGER]
DeviceId = Annotated[int, Field(ge=1, le=127), _AS_INTEGER]
Day = Annotated[int, Field(ge=0, lt=1_000_000), _AS_INTEGER]


class Model(BaseModel):
    """Strict: no field is coerced (``false`` is not day 0, ``"2"`` and ``true`` are not key ids),
    and no unknown field is accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ------------------------------------------------------------------------------ accounts
class CreateAccount(Model):
    identity_key: ECPublicKey
    registration_id: RegistrationId
    device_secret: DeviceSecret


class AccountCreated(Model):
    account_id: Id
    device_id: DeviceId


class AccountInfo(Model):
    account_id: Id
    device_id: DeviceId
    identity_key: ECPublicKey
    created_day: Day


class SetUsername(Model):
    username: Annotated[str, Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.]+$")]


class AccountRef(Model):
    account_id: Id


# ------------------------------------------------------------------------------ prekeys
class PreKey(Model):
    id: KeyId
    public_key: ECPublicKey


class SignedPreKey(Model):
    id: KeyId
    public_key: ECPublicKey
    signature: Signature


class KyberPreKey(Model):
    id: KeyId
    public_key: KEMPublicKey
    signature: Signature


class UploadKeys(Model):
    signed_pre_key: SignedPreKey | None = None
    kyber_last_resort: KyberPreKey | None = None
    one_time_pre_keys: Annotated[list[PreKey], Field(max_length=MAX_ONE_TIME_KEYS_PER_UPLOAD)] = []
    kyber_pre_keys: Annotated[list[KyberPreKey], Field(max_length=MAX_ONE_TIME_KEYS_PER_UPLOAD)] = []


class KeyCounts(Model):
    one_time: Int
    kyber: Int


class AddAccessToken(Model):
    token: DeliveryToken
    expires_day: Day


class DeviceBundle(Model):
    device_id: DeviceId
    registration_id: RegistrationId
    signed_pre_key: SignedPreKey
    kyber_pre_key: KyberPreKey
    pre_key: PreKey | None = None


class Bundle(Model):
    identity_key: ECPublicKey
    devices: list[DeviceBundle]


# ------------------------------------------------------------------------------ mailboxes
class CreateMailbox(Model):
    mailbox_id: Id
    auth_key: MailboxKey
    delivery_token: DeliveryToken
    ttl_days: Annotated[int, Field(ge=1, le=MAX_MAILBOX_TTL_DAYS), _AS_INTEGER] = DEFAULT_MAILBOX_TTL_DAYS


class SendMessage(Model):
    message_id: Id
    payload: Payload

    def payload_is_bucket(self) -> bool:
        return is_bucket(len(self.payload))


class SendResult(Model):
    duplicate: bool


class ErrorBody(Model):
    code: str
    message: str


# ------------------------------------------------------------------------------ proof of work
WorkChallenge = Annotated[
    bytes, PlainValidator(_parser(CHALLENGE_LENGTH)), _AS_TEXT, _schema(CHALLENGE_LENGTH)
]


def work_header_pattern() -> str:
    """The ``Sotto-Work`` header, ``<challenge>.<nonce>`` in base64url, as a regex."""
    return f"^{b64_pattern(CHALLENGE_LENGTH)[1:-1]}\\.{b64_pattern(NONCE_LENGTH)[1:-1]}$"


class WorkRequired(Model):
    """A 428 answer (relay-protocol §8): solve ``challenge`` and send the call again with the
    answer in ``Sotto-Work``. ``code`` says why: ``work_required`` (none sent), ``work_invalid``,
    ``work_expired`` or ``work_replayed``."""

    code: str
    message: str
    challenge: WorkChallenge
    difficulty: Annotated[int, Field(ge=1, le=MAX_DIFFICULTY), _AS_INTEGER]


# ------------------------------------------------------------------------------ cadence mode
DEFAULT_CADENCE_TICK_SECONDS = 300
MIN_CADENCE_TICK_SECONDS = 10
"""The shortest tick ``sotto server`` offers: each tick costs every cadence client one request
per mailbox and one per contact. (A relay's config accepts down to 1 s, for tests.)"""
MAX_CADENCE_TICK_SECONDS = 3_600
MAX_POLL_ENVELOPES = 256
"""Envelopes one poll hands out at most (the WebSocket's unacknowledged window)."""
DEFAULT_POLL_ENVELOPES = 32
MAX_POLL_WAIT_MS = 25_000
"""How long a poll may ask the relay to hold it while its mailbox is empty (a long poll): under
the 30 s that proxies and forwarders commonly allow a request."""


class Cadence(Model):
    """The relay's tick: tick ``k`` is ``[k·T, (k+1)·T)`` in unix seconds, the same for everyone."""

    tick_seconds: Annotated[int, Field(ge=1, le=MAX_CADENCE_TICK_SECONDS), _AS_INTEGER]


class Poll(Model):
    """Delete the acknowledged envelopes of this mailbox, then hand out up to ``limit`` pending.
    With ``wait_ms`` (a long poll), an empty mailbox holds the answer until an envelope arrives
    or that many milliseconds pass, whichever is first."""

    ack: Annotated[list[Id], Field(max_length=MAX_ACK_IDS_PER_FRAME)] = []
    limit: Annotated[int, Field(ge=1, le=MAX_POLL_ENVELOPES), _AS_INTEGER] = DEFAULT_POLL_ENVELOPES
    wait_ms: Annotated[int, Field(ge=0, le=MAX_POLL_WAIT_MS), _AS_INTEGER] = 0


class PolledEnvelope(Model):
    id: Id
    day: Day
    payload: Payload


class PollResult(Model):
    envelopes: list[PolledEnvelope]
    more: bool
    """Whether more envelopes were pending than ``limit`` let through."""


POLL_PIECE_BYTES = 64 * 1024
"""About how much of a poll answer :func:`poll_result_parts` makes at a time."""


def poll_result_parts(
    envelopes: Sequence[tuple[bytes, int, bytes]], more: bool
) -> tuple[int, Iterator[bytes]]:
    """``PollResult`` of ``(id, day, payload)`` triples as JSON, byte for byte what the model
    writes, without building it: its length, known before any of it is made, and the bytes in
    pieces of about :data:`POLL_PIECE_BYTES`, made one at a time as they are taken. A full
    answer is half a megabyte; the relay sends each piece before it makes the next, so other
    work runs in between, and for a client that does not read, the pieces beyond what its
    socket takes are never made. The relay made each triple (ids and days are its own), so
    nothing is checked."""
    count = len(envelopes)
    length = len(_POLL_HEAD) + len(_POLL_TAIL[more]) + max(0, count - 1)
    for message_id, day, payload in envelopes:
        length += _ENVELOPE_FRAME + b64.encoded_length(len(message_id)) + len(b"%d" % day)
        length += b64.encoded_length(len(payload))
    return length, _poll_pieces(envelopes, more)


def _poll_pieces(envelopes: Sequence[tuple[bytes, int, bytes]], more: bool) -> Iterator[bytes]:
    parts = [_POLL_HEAD]
    size = 0
    last = len(envelopes) - 1
    for n, (message_id, day, payload) in enumerate(envelopes):
        encoded = b64.encode_ascii(payload)
        parts += (
            b'{"id":"',
            b64.encode_ascii(message_id),
            b'","day":',
            b"%d" % day,
            b',"payload":"',
            encoded,
            b'"},' if n < last else b'"}',
        )
        size += len(encoded)
        if size >= POLL_PIECE_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
    parts.append(_POLL_TAIL[more])
    yield b"".join(parts)


_POLL_HEAD = b'{"envelopes":['
_POLL_TAIL = {True: b'],"more":true}', False: b'],"more":false}'}
_ENVELOPE_FRAME = len(b'{"id":"') + len(b'","day":') + len(b',"payload":"') + len(b'"}')


def poll_result_json(envelopes: Sequence[tuple[bytes, int, bytes]], more: bool) -> bytes:
    """:func:`poll_result_parts` in one piece."""
    return b"".join(poll_result_parts(envelopes, more)[1])
