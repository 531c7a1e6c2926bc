"""The v2 sent form: strict parsing, merging, the split into received forms, and no crypto."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sotto.errors import DecodeError
from sotto.protocol.protobuf import encode_varint
from sotto.protocol.sealed_sender import SentMessage, seal_v2, sent_message
from tests.protocol.sealed_sender.helpers import SHARE, World, recipients_for


# --------------------------------------------------------------------------- sent-form parser
def _sent(*entries: bytes, count: int | None = None, version: int = 0x23, tail: bytes = bytes(48)) -> bytes:
    n = len(entries) if count is None else count
    return bytes((version,)) + encode_varint(n) + b"".join(entries) + tail


ACI = b"\x00" + bytes(range(16))
PNI = b"\x01" + bytes(range(16, 32))
SHARE_A = b"\xaa" * SHARE
SHARE_B = b"\xbb" * SHARE


def test_parse_accepts_well_formed_edge_cases() -> None:
    assert SentMessage.parse(_sent()).recipients == ()  # no recipients, as libsignal allows
    parsed = SentMessage.parse(_sent(ACI + b"\x01\x00\x01" + SHARE_A, PNI + b"\x00"))
    assert parsed.recipients[0].devices == ((1, 1),)
    assert parsed.recipients[1].excluded
    # 0x22 sent forms name ACIs by raw UUID
    parsed = SentMessage.parse(_sent(ACI[1:] + b"\x02\x00\x09" + SHARE_A, version=0x22))
    assert parsed.recipients[0].service_id == ACI
    assert parsed.received_message_for(0) == b"\x22" + SHARE_A + bytes(48)
    # one account split over two entries with the same share is merged (libsignal does the same)
    parsed = SentMessage.parse(_sent(ACI + b"\x01\x00\x01" + SHARE_A, ACI + b"\x02\x00\x02" + SHARE_A))
    assert len(parsed.recipients) == 1
    assert parsed.recipients[0].devices == ((1, 1), (2, 2))
    # a non-minimal varint count is still a count
    assert SentMessage.parse(b"\x23\x81\x00" + ACI + b"\x01\x00\x01" + SHARE_A + bytes(48)).recipients


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x23",
        b"\x21" + _sent()[1:],
        b"\x11" + _sent()[1:],
        b"\x33" + _sent()[1:],
        _sent(tail=bytes(47)),
        _sent(count=1),
        _sent(count=1 << 32),
        b"\x23\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01" + bytes(48),
        _sent(b"\x02" + bytes(16) + b"\x01\x00\x01" + SHARE_A),  # unknown ServiceId kind
        _sent(ACI + b"\x80\x00\x01" + SHARE_A),  # device 128
        _sent(ACI + b"\x01\x80\x01\x00" + SHARE_A),  # device 0 after a device
        _sent(ACI + b"\x01\x40\x01" + SHARE_A),  # registration id bit 14
        _sent(ACI + b"\x01\xc0\x01\x02\x00\x01" + SHARE_A),  # bit 14 on an earlier entry
        _sent(ACI + b"\x01\x00\x01" + SHARE_A, ACI + b"\x00"),  # included, then excluded
        _sent(ACI + b"\x00", ACI + b"\x01\x00\x01" + SHARE_A),  # excluded, then included
        _sent(ACI + b"\x00", ACI + b"\x00"),  # excluded twice
        _sent(ACI + b"\x01\x00\x01" + SHARE_A, ACI + b"\x02\x00\x02" + SHARE_B),  # two shares
        _sent(ACI + b"\x01\x00\x01", tail=b""),  # share missing
        _sent(ACI + b"\x01\x80\x01", tail=b""),  # device list runs off the end
    ],
)
def test_parse_refuses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        SentMessage.parse(data)


def test_parse_refuses_every_truncation_of_a_real_message() -> None:
    w = World.create()
    alice = w.party()
    parties = [w.party() for _ in range(3)]
    sent = seal_v2(
        alice.identity, recipients_for(parties, 2), w.content(alice), w.rng, excluded=[w.party().uuid]
    )
    minimum = len(sent) - (len(w.content(alice).serialized) + 16) + 16
    for length in range(minimum):
        with pytest.raises(DecodeError):
            SentMessage.parse(sent[:length])


def test_the_relay_side_imports_no_cryptography() -> None:
    tree = ast.parse(Path(sent_message.__file__).read_text())
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert modules, "expected some imports"
    assert not [m for m in modules if m.startswith(("sotto.crypto", "cryptography", "nacl"))]
