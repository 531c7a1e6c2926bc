"""The end-to-end content format: round trips, limits, and a decoder that raises DecodeError only."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.client import content as c
from sotto.client.attachment_pointer import AttachmentPointer
from sotto.errors import DecodeError
from sotto.protocol import protobuf as pb

ID = bytes(range(16))
TOKEN = bytes(range(32))
MAILBOX = c.MailboxAddress("https://relay.example:8787", ID, TOKEN)
POINTER = AttachmentPointer(ID, bytes(range(64)), bytes(32), 1_048_576, "image/png", "holiday.png")

SAMPLES: list[c.Content] = [
    c.Text(ID, 1_700_000_000_000, "hello ünïcode"),
    c.GroupText(ID, 5, ""),
    c.DeliveryReceipt((ID, bytes(16))),
    c.ReadReceipt(()),
    c.Typing(True),
    c.Typing(False, ID),
    c.ContactRequest("Alice", MAILBOX, bytes(32)),
    c.ContactAccepted("Bob", MAILBOX),
    c.MailboxRotated(MAILBOX),
    c.GroupUpdate(ID, "Team", (ID, bytes(16)), b"\x33skdm"),
    c.GroupUpdate(ID, "Team", ()),
    c.Cover(),
    c.Text(ID, 9, "a reply", c.Quote(bytes(16), ID), 3600),
    c.GroupText(ID, 9, "a reply", c.Quote(ID, ID)),
    c.Edit(ID, 10, "fixed"),
    c.DeleteForEveryone(ID, 11),
    c.Reaction(ID, bytes(16), "👍🏽", 12),
    c.Reaction(ID, ID, "", 13),
    c.Timer(ID, 14, 86_400),
    c.Timer(ID, 15, 0),
    c.Attachment(ID, 16, POINTER, "the beach ünïcode", "https://relay.example:8787", 3600),
    c.Attachment(ID, 17, AttachmentPointer(ID, bytes(64), bytes(32), 0)),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: c.Content) -> None:
    encoded = c.encode(message)
    assert encoded[0] == c.FORMAT_VERSION
    assert c.decode(encoded) == message


def test_kinds_differ_on_the_wire() -> None:
    text = c.encode(c.Text(ID, 1, "x"))
    group_text = c.encode(c.GroupText(ID, 1, "x"))
    assert text != group_text
    assert isinstance(c.decode(group_text), c.GroupText)


def test_limits_refused_on_encode() -> None:
    with pytest.raises(ValueError):
        c.encode(c.Text(ID, 1, "x" * (c.MAX_TEXT_BYTES + 1)))
    with pytest.raises(ValueError):
        c.encode(c.DeliveryReceipt((ID,) * (c.MAX_IDS + 1)))
    with pytest.raises(ValueError):
        c.encode(c.Text(b"short", 1, "x"))
    with pytest.raises(ValueError):
        c.MailboxAddress("ftp://x", ID, TOKEN)
    with pytest.raises(ValueError):
        c.MailboxAddress("https://x", ID, TOKEN[:31])


def test_new_kinds_refuse_bad_values_on_encode() -> None:
    for bad in (
        c.Text(ID, 1, "x", c.Quote(ID, b"short")),
        c.Text(ID, 1, "x", expire_s=c.MAX_TIMER_S + 1),
        c.Edit(b"short", 1, "x"),
        c.Edit(ID, 1, "x" * (c.MAX_TEXT_BYTES + 1)),
        c.DeleteForEveryone(bytes(15), 1),
        c.Reaction(ID, ID, "x" * (c.MAX_REACTION_BYTES + 1), 1),
        c.Reaction(ID, ID, "a b", 1),
        c.Reaction(ID, bytes(17), "x", 1),
        c.Timer(ID, 1, -1),
        c.Timer(ID, 1, c.MAX_TIMER_S + 1),
        c.Attachment(b"short", 1, POINTER),
        c.Attachment(ID, 1, POINTER, "x" * (c.MAX_CAPTION_BYTES + 1)),
        c.Attachment(ID, 1, POINTER, server_url="ftp://relay.example"),
        c.Attachment(ID, 1, POINTER, expire_s=c.MAX_TIMER_S + 1),
    ):
        with pytest.raises(ValueError):
            c.encode(bad)


def _attachment(*fields: bytes) -> bytes:
    return bytes((c.FORMAT_VERSION, c.Kind.ATTACHMENT)) + b"".join(fields)


def test_malformed_attachments_are_decode_errors() -> None:
    """Each field of an attachment message checked on the way in, the pointer's own included."""
    good = (pb.bytes_field(1, ID), pb.uint_field(2, 1), pb.bytes_field(3, POINTER.encode()))
    assert c.decode(_attachment(*good)) == c.Attachment(ID, 1, POINTER)
    bad_pointers = [
        POINTER.encode()[:-1],
        pb.bytes_field(1, ID)
        + pb.bytes_field(3, bytes(64))
        + pb.uint_field(4, 1)
        + pb.bytes_field(6, bytes(32))
        + pb.bytes_field(7, b"../etc/passwd"),
        pb.bytes_field(1, ID)
        + pb.bytes_field(3, bytes(64))
        + pb.uint_field(4, 1)
        + pb.bytes_field(6, bytes(31)),
        pb.bytes_field(1, ID)
        + pb.bytes_field(3, bytes(64))
        + pb.uint_field(4, 2**40)
        + pb.bytes_field(6, bytes(32)),
    ]
    for data in (
        _attachment(good[0], good[1]),  # no pointer
        _attachment(good[1], good[2]),  # no message id
        _attachment(pb.bytes_field(1, ID[:15]), good[1], good[2]),
        *(_attachment(good[0], good[1], pb.bytes_field(3, p)) for p in bad_pointers),
        _attachment(*good, pb.bytes_field(4, b"\xff\xfe")),  # caption not UTF-8
        _attachment(*good, pb.bytes_field(4, b"x" * (c.MAX_CAPTION_BYTES + 1))),
        _attachment(*good, pb.uint_field(5, c.MAX_TIMER_S + 1)),
        _attachment(*good, pb.bytes_field(6, b"file:///etc/passwd")),
        _attachment(*good, pb.bytes_field(6, b"http://[")),
    ):
        with pytest.raises(DecodeError):
            c.decode(data)


def test_an_attachment_message_pads_like_a_short_text() -> None:
    from sotto.wire.padding import pad

    short = len(pad(c.encode(c.Text(ID, 2**40, "ok"))))
    plain = c.Attachment(ID, 2**40, POINTER, "", "https://relay.example:8787")
    assert len(pad(c.encode(plain))) == short


def test_a_reader_without_quotes_or_timers_reads_the_text() -> None:
    """Quotes and timers are new fields of a text: an older reader skips them."""
    plain = c.encode(c.Text(ID, 1, "hi"))
    quoted = c.encode(c.Text(ID, 1, "hi", c.Quote(ID, ID), 60))
    assert quoted.startswith(plain) and c.decode(plain) == c.Text(ID, 1, "hi")


def test_new_kinds_pad_into_the_bucket_of_a_short_text() -> None:
    from sotto.wire.padding import pad

    short = len(pad(c.encode(c.Text(ID, 2**40, "ok"))))
    for message in (
        c.Edit(ID, 2**40, "ok"),
        c.DeleteForEveryone(ID, 2**40),
        c.Reaction(ID, ID, "x" * c.MAX_REACTION_BYTES, 2**40),
        c.Timer(ID, 2**40, c.MAX_TIMER_S),
        c.Text(ID, 2**40, "ok", c.Quote(ID, ID), c.MAX_TIMER_S),
    ):
        assert len(pad(c.encode(message))) == short


def test_largest_text_fits_a_content_bucket() -> None:
    from sotto.wire.padding import pad

    assert len(pad(c.encode(c.Text(ID, 2**63, "x" * c.MAX_TEXT_BYTES)))) <= 32_768


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\x02\x01",  # unknown format version
        b"\x01\x63",  # unknown kind
        b"\x01\x01",  # text without fields
        c.encode(c.Text(ID, 1, "x"))[:-1],
        b"\x01\x02\x0a\x05abcde",  # receipt ids not a multiple of 16
        b"\x01\x04\x08\x02",  # typing flag above 1
        b"\x01\x01\x0a\x10" + ID + b"\x10\x01\x1a\x02\xff\xfe",  # text not UTF-8
        c.encode(c.Text(ID, 1, "x")) + b"\x22\x10" + ID,  # a quote without its author
        c.encode(c.Text(ID, 1, "x")) + b"\x28\x80\x80\x80\x80\x01",  # a timer of 2^28 s
        b"\x01\x0b\x0a\x10" + ID + b"\x10\x01",  # an edit without its text
        b"\x01\x0b\x0a\x0f" + ID[:15] + b"\x10\x01\x1a\x01x",  # an edit of a 15-byte id
        b"\x01\x0c\x0a\x10" + ID,  # a deletion without its time
        b"\x01\x0c\x10\x01",  # a deletion without its message
        b"\x01\x0d\x0a\x10" + ID + b"\x12\x10" + ID + b"\x20\x01",  # a reaction without its emoji
        b"\x01\x0d\x0a\x10" + ID + b"\x12\x04abcd\x1a\x01x\x20\x01",  # author not an account id
        b"\x01\x0d\x0a\x10" + ID + b"\x12\x10" + ID + b"\x1a\x21" + b"x" * 33 + b"\x20\x01",  # too long
        b"\x01\x0d\x0a\x10" + ID + b"\x12\x10" + ID + b"\x1a\x03a b\x20\x01",  # a space in it
        b"\x01\x0d\x0a\x10" + ID + b"\x12\x10" + ID + b"\x1a\x01\x07\x20\x01",  # a control character
        b"\x01\x0e\x0a\x10" + ID + b"\x10\x01",  # a timer without its seconds
        bytes((1, c.Kind.TIMER))
        + pb.bytes_field(1, ID)
        + pb.uint_field(2, 1)
        + pb.uint_field(3, c.MAX_TIMER_S + 1),
    ],
)
def test_malformed_content_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        c.decode(data)


def test_bad_url_inside_a_mailbox_is_a_decode_error() -> None:
    inner = b"\x0a\x07http://[" + b"\x12\x10" + ID + b"\x1a\x20" + TOKEN
    data = bytes((1, c.Kind.MAILBOX_ROTATED)) + b"\x0a" + bytes((len(inner),)) + inner
    with pytest.raises(DecodeError):
        c.decode(data)


@given(st.binary(max_size=300))
def test_decode_raises_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        c.decode(data)


@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_content_raises_decode_error_only(message: c.Content, data: st.DataObject) -> None:
    encoded = bytearray(c.encode(message))
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    with contextlib.suppress(DecodeError):
        c.decode(bytes(encoded[:cut]))


def test_reprs_hide_texts_names_and_tokens() -> None:
    for message in SAMPLES:
        shown = repr(message)
        for secret in (
            "hello",
            "Alice",
            "Bob",
            "Team",
            "relay.example",
            TOKEN.hex()[:16],
            "beach",
            "holiday",
        ):
            assert secret not in shown
