"""Every sealed-sender decoder raises DecodeError and nothing else; every opener raises only its
typed errors. Checked on arbitrary bytes and on mutations of valid messages."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sotto.errors import DecodeError, DecryptionError, InvalidCertificateError, UnsupportedVersionError
from sotto.protocol.sealed_sender import (
    ReceivedMessage,
    SealedSenderV1Message,
    SenderCertificate,
    SentMessage,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
    open_sealed,
    open_v1,
    open_v2,
    seal_v1,
    seal_v2,
)
from tests.protocol.sealed_sender.helpers import NOW_MS, World

_W = World.create(seed=2024)
_ALICE, _BOB, _CAROL = _W.party(), _W.party(), _W.party()
_USMC = _W.content(_ALICE, b"property", content_hint=1, group_id=b"g")
_V1 = seal_v1(_ALICE.identity, _BOB.identity.public, _USMC, _W.rng)
_SENT = seal_v2(
    _ALICE.identity,
    [
        (_BOB.uuid, [(1, 10), (2, 20)], _BOB.identity.public),
        (_CAROL.uuid, [(1, 30)], _CAROL.identity.public),
    ],
    _USMC,
    _W.rng,
    excluded=[f"PNI:{_W.party().uuid}"],
)
_RECEIVED = SentMessage.parse(_SENT).received_message_for(_BOB.uuid)

DECODERS: dict[str, Callable[[bytes], object]] = {
    "server certificate": ServerCertificate.decode,
    "sender certificate": SenderCertificate.decode,
    "usmc": UnidentifiedSenderMessageContent.decode,
    "v1 envelope": SealedSenderV1Message.decode,
    "v2 sent form": SentMessage.parse,
    "v2 received form": ReceivedMessage.decode,
}
SAMPLES: dict[str, bytes] = {
    "server certificate": _W.server_certificate.serialized,
    "sender certificate": _ALICE.certificate.serialized,
    "usmc": _USMC.serialized,
    "v1 envelope": _V1,
    "v2 sent form": _SENT,
    "v2 received form": _RECEIVED,
}
OPEN_ERRORS = (DecryptionError, InvalidCertificateError, UnsupportedVersionError)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, sample: bytes) -> bytes:
    """A valid message with one to three edits: flipped, replaced, inserted or deleted bytes."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    return bytes(data)


def _decode_only_decode_error(decoder: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decoder(data)


@PROPERTY
@given(name=st.sampled_from(sorted(DECODERS)), data=st.binary(max_size=400))
def test_decoders_on_arbitrary_bytes(name: str, data: bytes) -> None:
    _decode_only_decode_error(DECODERS[name], data)


@PROPERTY
@given(name=st.sampled_from(sorted(DECODERS)), data=st.data())
def test_decoders_on_mutated_valid_messages(name: str, data: st.DataObject) -> None:
    _decode_only_decode_error(DECODERS[name], data.draw(mutated(SAMPLES[name])))


@PROPERTY
@given(data=st.binary(max_size=400))
def test_sent_form_parser_on_arbitrary_bodies(data: bytes) -> None:
    """Past the version byte, so the recipient loop itself sees the noise."""
    for version in (b"\x22", b"\x23"):
        _decode_only_decode_error(SentMessage.parse, version + data)


def _open_typed(opener: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(*OPEN_ERRORS):
        opener(data)


OPENERS: dict[str, Callable[[bytes], object]] = {
    "v1": lambda d: open_v1(_BOB.identity, d),
    "v2": lambda d: open_v2(_BOB.identity, d),
    "any": lambda d: open_sealed(_BOB.identity, d, _W.root.public, NOW_MS, _BOB.address),
}


@PROPERTY
@given(name=st.sampled_from(sorted(OPENERS)), data=st.binary(max_size=400))
def test_openers_on_arbitrary_bytes(name: str, data: bytes) -> None:
    _open_typed(OPENERS[name], data)


@PROPERTY
@given(data=st.data())
def test_openers_on_mutated_messages(data: st.DataObject) -> None:
    message = data.draw(st.sampled_from([_V1, _RECEIVED]))
    changed = data.draw(mutated(message))
    for opener in OPENERS.values():
        _open_typed(opener, changed)


@PROPERTY
@given(data=st.data())
def test_a_mutated_message_that_opens_carries_the_original_content(data: st.DataObject) -> None:
    """Only unauthenticated framing may change without being caught: the version's low nibble and,
    in v1's protobuf envelope, encodings that parse to the same fields (proto2 keeps the last
    value of a repeated field and ignores unknown ones, as libsignal's decoder does)."""
    message = data.draw(st.sampled_from([_V1, _RECEIVED]))
    changed = data.draw(mutated(message))
    try:
        content, certificate = open_sealed(_BOB.identity, changed, _W.root.public, NOW_MS, _BOB.address)
    except OPEN_ERRORS:
        return
    assert content == _USMC
    assert certificate == _ALICE.certificate
    if message is _V1:
        ours, original = SealedSenderV1Message.decode(changed), SealedSenderV1Message.decode(message)
        assert (ours.ephemeral_public, ours.encrypted_static, ours.encrypted_message) == (
            original.ephemeral_public,
            original.encrypted_static,
            original.encrypted_message,
        )
    else:
        assert changed[1:] == message[1:]
