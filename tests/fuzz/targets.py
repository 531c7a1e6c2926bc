"""One fuzz target per decoder of bytes (or text) that arrive from outside.

Each target feeds one input to one decoder and states which exceptions the decoder's contract
allows (its docstring names them; nearly always :class:`~sotto.errors.DecodeError` or a subclass
of it). :func:`check` runs a target on one input and raises :class:`ContractViolation` for any
other exception; the atheris driver (``tests/fuzz/run.py``) and the corpus replay under pytest
(``tests/fuzz/test_corpus.py``) both go through it.

Decoders of text get the bytes as text the way that text reaches them: WebSocket frames and JSON
bodies as UTF-8 (frames also as raw bytes), HTTP headers as latin-1 (as ASGI hands them over),
invite links and scanned codes as command-line arguments arrive (UTF-8 with surrogateescape).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydantic

from sotto.client import content as client_content
from sotto.client import linking
from sotto.client.backup_format import (
    HEADER_LENGTH,
    BackupCorruptedError,
    BackupOpener,
    RecoveryKey,
    WrongBackupKeyError,
    decode_header,
    decode_prologue,
)
from sotto.client.device_list import SignedDeviceList
from sotto.client.flows import safety
from sotto.client.invite import parse_link
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import (
    DecodeError,
    DecryptionError,
    DuplicateMessageError,
    FingerprintVersionMismatchError,
    InvalidCertificateError,
    InvalidSessionStateError,
    InvalidSignatureError,
    MessageTooFarAheadError,
    NoSenderKeyStateError,
    SelfSendError,
    StoreCorruptedError,
    UnsupportedVersionError,
)
from sotto.protocol import device_fanout, session
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from sotto.protocol.fingerprint import ScannableFingerprint, fingerprint
from sotto.protocol.group import group_decrypt
from sotto.protocol.group.messages import SenderKeyDistributionMessage, SenderKeyMessage
from sotto.protocol.group.sender_key import SenderKeyRecord
from sotto.protocol.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage
from sotto.protocol.ratchet.spqr import SpqrMessage
from sotto.protocol.record import SessionRecord
from sotto.protocol.sealed_sender import (
    ReceivedMessage,
    SealedSenderV1Message,
    SenderCertificate,
    SentMessage,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
    open_sealed,
)
from sotto.server.auth import parse_token
from sotto.store import codec
from sotto.store.cipher import StoreCipher
from sotto.wire import api, auth, bhttp, frames, ohttp, padding
from tests.protocol.sealed_sender.helpers import NOW_MS, World
from tests.vectors.ohttp import binary as ohttp_vector

Allowed = tuple[type[BaseException], ...]
DECODE: Allowed = (DecodeError,)
VERSIONED: Allowed = (DecodeError, UnsupportedVersionError)


class ContractViolation(AssertionError):
    """A decoder raised something its contract does not allow."""

    def __init__(self, target: str, error: BaseException) -> None:
        super().__init__(f"{target}: {type(error).__name__}: {error}")
        self.target = target
        self.error = error


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    allowed: Allowed
    doc: str
    slow_seconds: float = 1.0
    """CPU time above which one input is a finding: a second for every decoder."""


TARGETS: dict[str, Target] = {}


def _target(
    name: str, allowed: Allowed, slow_seconds: float = 1.0
) -> Callable[[Callable[[bytes], object]], Callable[[bytes], object]]:
    def register(run: Callable[[bytes], object]) -> Callable[[bytes], object]:
        TARGETS[name] = Target(name, run, allowed, (run.__doc__ or "").strip(), slow_seconds)
        return run

    return register


def check(target: Target, data: bytes) -> None:
    """Run ``target`` on ``data``; raise ContractViolation unless it returns or raises an allowed error."""
    try:
        target.run(data)
    except target.allowed:
        pass
    except Exception as exc:  # everything else (IndexError, RecursionError, ...) is a finding
        raise ContractViolation(target.name, exc) from exc


def _cli_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# ------------------------------------------------------------------------ 1:1 messages
@_target("signal_message", VERSIONED)
def _signal_message(data: bytes) -> object:
    """SignalMessage.decode (type 2)."""
    return SignalMessage.decode(data)


@_target("prekey_signal_message", VERSIONED)
def _prekey_signal_message(data: bytes) -> object:
    """PreKeySignalMessage.decode (type 3)."""
    return PreKeySignalMessage.decode(data)


@_target("spqr_message", DECODE)
def _spqr_message(data: bytes) -> object:
    """SpqrMessage.decode: the pq_ratchet field of a SignalMessage."""
    return SpqrMessage.decode(data)


# ------------------------------------------------------------------------ groups
@_target("sender_key_message", VERSIONED)
def _sender_key_message(data: bytes) -> object:
    """SenderKeyMessage.decode (type 7)."""
    return SenderKeyMessage.decode(data)


@_target("sender_key_distribution_message", VERSIONED)
def _sender_key_distribution_message(data: bytes) -> object:
    """SenderKeyDistributionMessage.decode."""
    return SenderKeyDistributionMessage.decode(data)


# ------------------------------------------------------------------------ sealed sender
@_target("sealed_sender_v1", DECODE)
def _sealed_sender_v1(data: bytes) -> object:
    """SealedSenderV1Message.decode: the outer v1 envelope."""
    return SealedSenderV1Message.decode(data)


@_target("sealed_sender_v2_received", DECODE)
def _sealed_sender_v2_received(data: bytes) -> object:
    """ReceivedMessage.decode: the v2 form one recipient gets."""
    return ReceivedMessage.decode(data)


@_target("sealed_sender_v2_sent", DECODE)
def _sealed_sender_v2_sent(data: bytes) -> object:
    """SentMessage.parse, then the split into received forms, each of which must parse."""
    sent = SentMessage.parse(data)
    for index, recipient in enumerate(sent.recipients):
        if not recipient.excluded:
            ReceivedMessage.decode(sent.received_message_for(index))
    return sent


@_target("sealed_sender_content", DECODE)
def _sealed_sender_content(data: bytes) -> object:
    """UnidentifiedSenderMessageContent.decode: the decrypted inside of either version."""
    return UnidentifiedSenderMessageContent.decode(data)


@_target("sender_certificate", DECODE)
def _sender_certificate(data: bytes) -> object:
    """SenderCertificate.decode."""
    return SenderCertificate.decode(data)


@_target("server_certificate", DECODE)
def _server_certificate(data: bytes) -> object:
    """ServerCertificate.decode."""
    return ServerCertificate.decode(data)


# ------------------------------------------------------------------------ stored records
@_target("session_record", (InvalidSessionStateError,))
def _session_record(data: bytes) -> object:
    """SessionRecord.from_bytes."""
    return SessionRecord.from_bytes(data)


@_target("sender_key_record", DECODE)
def _sender_key_record(data: bytes) -> object:
    """SenderKeyRecord.from_bytes."""
    return SenderKeyRecord.from_bytes(data)


@_target("prekey_record", DECODE)
def _prekey_record(data: bytes) -> object:
    """PreKeyRecord.from_bytes."""
    return PreKeyRecord.from_bytes(data)


@_target("signed_prekey_record", DECODE)
def _signed_prekey_record(data: bytes) -> object:
    """SignedPreKeyRecord.from_bytes."""
    return SignedPreKeyRecord.from_bytes(data)


@_target("kyber_prekey_record", DECODE)
def _kyber_prekey_record(data: bytes) -> object:
    """KyberPreKeyRecord.from_bytes."""
    return KyberPreKeyRecord.from_bytes(data)


BACKUP_KEY = RecoveryKey(bytes(range(32, 64)))
"""The recovery key the backup seeds are sealed under, so that they open and their chunks parse."""
BACKUP_CHUNK = 64
"""The backup seeds' chunk size: small, so that a seed has several chunks."""


@_target("backup_file", (BackupCorruptedError, WrongBackupKeyError))
def _backup_file(data: bytes) -> object:
    """A backup file (``sotto backup restore``): an even first byte, then the file (decode_header,
    BackupOpener under :data:`BACKUP_KEY` fed in two pieces split where the first byte says, then
    decode_prologue on what opened); an odd first byte, then a prologue alone."""
    if not data:
        return None
    body = data[1:]
    if data[0] % 2:
        return decode_prologue(body)
    header = decode_header(body)
    opener = BackupOpener(header, BACKUP_KEY)
    split = HEADER_LENGTH + data[0] * 7
    plaintext = opener.open(body[HEADER_LENGTH:split]) + opener.open(body[split:]) + opener.finish()
    return decode_prologue(plaintext)


@_target("store_row", (StoreCorruptedError,))
def _store_row(data: bytes) -> object:
    """store.codec.unpack: the first byte is the expected value count, the rest the row."""
    if not data:
        return None
    return codec.unpack(data[1:], data[0] % 16)


STORE_KEY = bytes(range(32))
_STORE_CIPHER = StoreCipher(STORE_KEY, seeded_rng(12))


@_target("store_sealed_value", (StoreCorruptedError,))
def _store_sealed_value(data: bytes) -> object:
    """StoreCipher.open: a sealed column value read from the store's file, then its row decoded."""
    return codec.unpack(_STORE_CIPHER.open("contacts", "row", b"key", data), 2)


# ------------------------------------------------------------------------ decryption of outside bytes
# The decoders above, then everything a receiver does before a MAC or signature check: chain
# lookups, counter checks, forward derivation. The keys come from the committed seeds, so the
# seeds' real messages decrypt.
_SEEDS = Path(__file__).resolve().parent / "corpus"
ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 2)


@functools.cache
def _stored(target: str, seed: str) -> bytes:
    """A committed seed, read once (the seed builder writes them, so it must not need them)."""
    return (_SEEDS / target / seed).read_bytes()


_WORLD = World.create(9)
_SEALED_SENDER, _SEALED_RECIPIENT = _WORLD.party(), _WORLD.party(2)


@_target(
    "session_decrypt",
    (
        DecodeError,
        UnsupportedVersionError,
        DuplicateMessageError,
        MessageTooFarAheadError,
        DecryptionError,
    ),
    # Not a decoder: a message may jump 25,000 counters ahead (libsignal's limit, kept for
    # compatibility), and the receiver derives that many chain keys before the MAC can be
    # checked. That costs about half a second of CPU here under instrumentation.
    slow_seconds=5.0,
)
def _session_decrypt(data: bytes) -> object:
    """session.decrypt_signal_message: Bob's established session with Alice receives the bytes."""
    return session.decrypt_signal_message(
        _bob_session(), data, our_address=BOB, their_address=ALICE, rng=_rng
    )


@functools.cache
def _bob_session() -> SessionRecord:
    return SessionRecord.from_bytes(_stored("session_record", "seed-valid-bob"))


@_target(
    "group_decrypt",
    (
        DecodeError,
        UnsupportedVersionError,
        NoSenderKeyStateError,
        InvalidSignatureError,
        DuplicateMessageError,
        MessageTooFarAheadError,
        DecryptionError,
    ),
)
def _group_decrypt(data: bytes) -> object:
    """group_cipher.group_decrypt: a member's sender-key record receives the bytes."""
    return group_decrypt(SenderKeyRecord.from_bytes(_stored("sender_key_record", "seed-valid-member")), data)


@_target("open_sealed", (DecryptionError, UnsupportedVersionError, InvalidCertificateError, SelfSendError))
def _open_sealed(data: bytes) -> object:
    """sealed_sender.open_sealed: a v1 message or v2 received form to a recipient with a trust root."""
    return open_sealed(
        _SEALED_RECIPIENT.identity, data, _WORLD.root.public, NOW_MS, _SEALED_RECIPIENT.address
    )


# ------------------------------------------------------------------------ relay wire
@_target("client_frame", DECODE)
def _client_frame(data: bytes) -> object:
    """frames.decode_client_frame, as bytes and (if UTF-8) as text: what the relay reads."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        with contextlib.suppress(DecodeError):
            frames.decode_client_frame(text)
    return frames.decode_client_frame(data)


@_target("server_frame", DECODE)
def _server_frame(data: bytes) -> object:
    """frames.decode_server_frame, as bytes and (if UTF-8) as text: what the client reads."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        with contextlib.suppress(DecodeError):
            frames.decode_server_frame(text)
    return frames.decode_server_frame(data)


_API_MODELS: tuple[type[api.Model], ...] = (
    # requests the relay reads
    api.CreateAccount,
    api.SetUsername,
    api.AccountRef,
    api.UploadKeys,
    api.AddAccessToken,
    api.CreateMailbox,
    api.SendMessage,
    api.Poll,
    # replies the client reads
    api.AccountCreated,
    api.AccountInfo,
    api.KeyCounts,
    api.Bundle,
    api.SendResult,
    api.ErrorBody,
    api.Cadence,
    api.PollResult,
)


@_target("api_body", (pydantic.ValidationError,))
def _api_body(data: bytes) -> object:
    """An HTTP JSON body: the first byte picks the model (wire/api.py), the rest is the body.

    These models' contract is pydantic's: ValidationError and nothing else (FastAPI answers 422).
    """
    if not data:
        return None
    model = _API_MODELS[data[0] % len(_API_MODELS)]
    return model.model_validate_json(data[1:])


@_target("device_auth_header", DECODE)
def _device_auth_header(data: bytes) -> object:
    """auth.decode_device_auth on an Authorization header as ASGI hands it over (latin-1)."""
    return auth.decode_device_auth(data.decode("latin-1"))


@_target("mailbox_auth_header", DECODE)
def _mailbox_auth_header(data: bytes) -> object:
    """auth.decode_mailbox_auth on a mailbox signature header (latin-1)."""
    return auth.decode_mailbox_auth(data.decode("latin-1"))


@_target("token_header", ())
def _token_header(data: bytes) -> object:
    """server.auth.parse_token on a token header (latin-1): None when malformed, never an error."""
    return parse_token(data.decode("latin-1"))


@_target("sign_time_header", ())
def _sign_time_header(data: bytes) -> object:
    """auth.decode_sign_time on a relay's Sotto-Sign-Time header (latin-1): None when malformed."""
    return auth.decode_sign_time(data.decode("latin-1"))


@_target("envelope_padding", DECODE)
def _envelope_padding(data: bytes) -> object:
    """padding.unpad on the input, then on the rest zero-filled or cut to the bucket its first byte picks."""
    with contextlib.suppress(DecodeError):
        padding.unpad(data)
    size = padding.BUCKETS[data[0] % len(padding.BUCKETS)] if data else 0
    return padding.unpad((data[1:] + bytes(size))[:size])


# ------------------------------------------------------------------------ Oblivious HTTP
# The gateway key and the request context of RFC 9458 Appendix A, so its messages open.
OHTTP_ALLOWED: Allowed = (ohttp.ObliviousHttpError,)


@functools.cache
def _ohttp_gateway() -> ohttp.GatewayKey:
    config = ohttp.KeyConfig.decode(ohttp_vector("rfc9458_appendix_a", "key_config"))
    return ohttp.GatewayKey(1, ohttp_vector("rfc9458_appendix_a", "gateway_secret_key"), config.algorithms)


@functools.cache
def _ohttp_context() -> ohttp.ResponseContext:
    request = ohttp_vector("rfc9458_appendix_a", "encapsulated_request")
    return ohttp.decapsulate_request(_ohttp_gateway(), request)[1]


@_target("bhttp_request", DECODE)
def _bhttp_request(data: bytes) -> object:
    """bhttp.decode_request: the binary HTTP request a gateway finds inside an encapsulation."""
    return bhttp.decode_request(data)


@_target("bhttp_response", DECODE)
def _bhttp_response(data: bytes) -> object:
    """bhttp.decode_response: the binary HTTP response a client finds inside an encapsulation."""
    return bhttp.decode_response(data)


@_target("ohttp_key_configs", OHTTP_ALLOWED)
def _ohttp_key_configs(data: bytes) -> object:
    """ohttp.decode_key_configs (an application/ohttp-keys body), and KeyConfig.decode on the same bytes."""
    with contextlib.suppress(ohttp.ObliviousHttpError):
        ohttp.KeyConfig.decode(data)
    return ohttp.decode_key_configs(data)


@_target("ohttp_request", OHTTP_ALLOWED)
def _ohttp_request(data: bytes) -> object:
    """ohttp.decapsulate_request: an Encapsulated Request reaching the RFC 9458 Appendix A gateway."""
    return ohttp.decapsulate_request(_ohttp_gateway(), data)


@_target("ohttp_response", OHTTP_ALLOWED)
def _ohttp_response(data: bytes) -> object:
    """ohttp.decapsulate_response: an Encapsulated Response to the RFC 9458 Appendix A request."""
    return ohttp.decapsulate_response(_ohttp_context(), data)


# ------------------------------------------------------------------------ client
@_target("content", DECODE)
def _content(data: bytes) -> object:
    """client.content.decode: what a decrypted 1:1 or group message carries."""
    return client_content.decode(data)


@_target("invite_link", DECODE)
def _invite_link(data: bytes) -> object:
    """client.invite.parse_link, on the text a command line or a QR scanner hands over."""
    return parse_link(_cli_text(data))


@_target("device_list", DECODE)
def _device_list(data: bytes) -> object:
    """client.device_list.SignedDeviceList.decode: an account's signed device list."""
    return SignedDeviceList.decode(data)


@_target("device_link", DECODE)
def _device_link(data: bytes) -> object:
    """client.linking.parse_link, on the text a command line or a QR scanner hands over."""
    return linking.parse_link(_cli_text(data))


_LINK_EPHEMERAL = KeyPair.generate(seeded_rng(31))
_LINK = linking.DeviceLink(
    "https://relay.example", bytes(32), _LINK_EPHEMERAL.public, KeyPair.generate(seeded_rng(32)).public, "x"
)


@_target("provisioning", (DecodeError, DecryptionError))
def _provisioning(data: bytes) -> object:
    """client.linking: a provisioning envelope's part, its opening under a fixed link, the message."""
    sealed = linking.join([linking.decode_part(data)])
    if sealed is None:
        return None
    try:
        return linking.Provisioning.decode(linking.open_sealed(sealed, _LINK, _LINK_EPHEMERAL))
    except DecryptionError:  # a seed sealed to _LINK opens; anything else is a plain message
        return linking.Provisioning.decode(sealed)


_rng = seeded_rng(11)
_OURS = fingerprint(
    local_id=bytes(16),
    local_key=KeyPair.generate(_rng).public,
    remote_id=bytes(range(16)),
    remote_key=KeyPair.generate(_rng).public,
    iterations=2,
).scannable
_OURS_ENCODED = _OURS.encode()
_OURS_SAFETY = safety.SafetyNumber("", _OURS_ENCODED, "")


@_target("scannable_fingerprint", (DecodeError, FingerprintVersionMismatchError))
def _scannable_fingerprint(data: bytes) -> object:
    """ScannableFingerprint.decode, and matching scanned bytes against ours."""
    with contextlib.suppress(DecodeError):
        ScannableFingerprint.decode(data)
    return _OURS.matches(data)


@_target("safety_qr", (DecodeError, FingerprintVersionMismatchError))
def _safety_qr(data: bytes) -> object:
    """flows.safety.matches on the text a QR scanner read (``sotto verify --scanned``)."""
    return safety.matches(_OURS_SAFETY, _cli_text(data))


_FANOUT_PAIR_KEY = seeded_rng(18)(device_fanout.PAIR_KEY_LENGTH)


@_target("device_fanout", (DecodeError, DecryptionError, UnsupportedVersionError))
def _device_fanout(data: bytes) -> object:
    """protocol.device_fanout: Envelope.decode, find_slot with a fixed pair key, the slot's message."""
    _, message = device_fanout.find_slot(device_fanout.Envelope.decode(data), [_FANOUT_PAIR_KEY])
    if message.type is CiphertextMessageType.PREKEY:
        return PreKeySignalMessage.decode(message.body)
    return SignalMessage.decode(message.body)
