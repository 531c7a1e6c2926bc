"""The group-change content kind and the admin/description/version fields of a group update:
round trips, limits refused on encode, malformed bytes a DecodeError and nothing else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.client import content as c
from sotto.client import group_membership as gm
from sotto.errors import DecodeError
from sotto.protocol import protobuf as pb

GID = bytes(range(16))
WHO = bytes([7]) * 16

SAMPLES: list[c.Content] = [
    c.GroupChange(GID, 1, gm.Action.ADD, WHO),
    c.GroupChange(GID, 2**40, gm.Action.REMOVE, WHO),
    c.GroupChange(GID, 3, gm.Action.ADMIN, WHO),
    c.GroupChange(GID, 4, gm.Action.LEAVE),
    c.GroupChange(GID, 5, gm.Action.RENAME, b"", "Dinner", "Fridays at 8"),
    c.GroupUpdate(GID, "Team", (WHO,), None, (WHO,), "about", 9),
]


@pytest.mark.parametrize("message", SAMPLES, ids=repr)
def test_round_trip(message: c.Content) -> None:
    assert c.decode(c.encode(message)) == message


@pytest.mark.parametrize(
    "message",
    [
        c.GroupChange(b"short", 1, gm.Action.ADD, WHO),
        c.GroupChange(GID, 0, gm.Action.ADD, WHO),
        c.GroupChange(GID, 1, gm.Action.ADD),
        c.GroupChange(GID, 1, gm.Action.LEAVE, WHO),
        c.GroupChange(GID, 1, gm.Action.RENAME),
        c.GroupChange(GID, 1, gm.Action.RENAME, b"", "x", "d" * (gm.MAX_DESCRIPTION_BYTES + 1)),
        c.GroupChange(GID, 1, gm.Action.RENAME, b"", "n" * (c.MAX_NAME_BYTES + 1)),
        c.GroupUpdate(GID, "Team", (), None, (), "d" * (gm.MAX_DESCRIPTION_BYTES + 1)),
        c.GroupUpdate(GID, "Team", (), None, (b"short",)),
        c.GroupUpdate(GID, "Team", (), None, (), "", -1),
    ],
    ids=repr,
)
def test_limits_refused_on_encode(message: c.Content) -> None:
    with pytest.raises(ValueError):
        c.encode(message)


def _change(**fields: bytes | int) -> bytes:
    body = b""
    for number, value in sorted((int(k[1:]), v) for k, v in fields.items()):
        body += pb.bytes_field(number, value) if isinstance(value, bytes) else pb.uint_field(number, value)
    return bytes((c.FORMAT_VERSION, c.Kind.GROUP_CHANGE)) + body


@pytest.mark.parametrize(
    "data",
    [
        _change(f2=1, f3=1, f4=WHO),  # no group id
        _change(f1=GID[:15], f2=1, f3=1, f4=WHO),
        _change(f1=GID, f3=1, f4=WHO),  # no version
        _change(f1=GID, f2=0, f3=1, f4=WHO),
        _change(f1=GID, f2=2**63, f3=1, f4=WHO),
        _change(f1=GID, f2=1, f3=9, f4=WHO),  # no such action
        _change(f1=GID, f2=1, f3=1),  # ADD without a target
        _change(f1=GID, f2=1, f3=1, f4=WHO[:8]),
        _change(f1=GID, f2=1, f3=4, f4=WHO),  # LEAVE with a target
        _change(f1=GID, f2=1, f3=5),  # RENAME without a name
        _change(f1=GID, f2=1, f3=5, f5=b"\xff\xfe"),
        _change(f1=GID, f2=1, f3=5, f5=b"x", f6=b"d" * (gm.MAX_DESCRIPTION_BYTES + 1)),
        _change(f1=GID, f2=1, f3=1, f4=WHO, f5=b"x"),  # ADD with a name
        _change(f1=GID, f2=b"1", f3=1, f4=WHO),
    ],
)
def test_malformed_group_changes_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        c.decode(data)


def test_malformed_update_fields_are_decode_errors() -> None:
    head = bytes((c.FORMAT_VERSION, c.Kind.GROUP_UPDATE))
    base = pb.bytes_field(1, GID) + pb.bytes_field(2, b"Team") + pb.bytes_field(3, WHO)
    for extra in (
        pb.bytes_field(5, WHO[:5]),
        pb.bytes_field(6, b"\xff"),
        pb.bytes_field(6, b"d" * (gm.MAX_DESCRIPTION_BYTES + 1)),
        pb.uint_field(7, 2**63),
    ):
        with pytest.raises(DecodeError):
            c.decode(head + base + extra)


@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_changes_raise_decode_error_only(message: c.Content, data: st.DataObject) -> None:
    encoded = bytearray(c.encode(message))
    index = data.draw(st.integers(2, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        c.decode(bytes(encoded))


def test_a_change_hides_its_name_in_repr() -> None:
    assert "Dinner" not in repr(c.GroupChange(GID, 5, gm.Action.RENAME, b"", "Dinner", "Fridays"))
