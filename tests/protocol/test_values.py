"""Values the per-message paths build with ``new_tuple`` are complete and equal to checked ones.

``new_tuple`` skips the constructor's argument check, so a field added to a state and
forgotten at one of those call sites would build a short tuple. Every value reachable from the
records after sends, receives, out-of-order and DH ratchet steps is rebuilt here through its
checked constructor and compared field by field.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sotto.protocol.messages import CiphertextMessage, SignalMessage
from sotto.protocol.record import SessionRecord
from sotto.protocol.values import new_tuple
from tests.protocol.parties import established_pair


def _named_tuples(value: object) -> list[Any]:
    """Every NamedTuple inside ``value`` (itself included), depth first."""
    found: list[Any] = []
    if isinstance(value, tuple):
        if hasattr(type(value), "_fields"):
            found.append(value)
        for item in value:
            found += _named_tuples(item)
    return found


def _assert_complete(value: Any) -> None:
    fields = type(value)._fields
    name = type(value).__name__
    assert len(value) == len(fields), f"{name} built with {len(value)} of {len(fields)} fields"
    assert type(value)(*value) == value


class _Pair(NamedTuple):
    first: int
    second: bytes


def test_new_tuple_builds_what_the_constructor_builds() -> None:
    assert new_tuple(_Pair, (1, b"x")) == _Pair(1, b"x")
    assert type(new_tuple(_Pair, (1, b"x"))) is _Pair


def test_a_short_tuple_is_caught_by_the_check() -> None:
    # The check below is what would find a call site that forgot a field.
    short = new_tuple(_Pair, (1,))
    assert len(short) != len(_Pair._fields)


def test_every_value_on_the_message_paths_is_complete() -> None:
    alice, bob = established_pair(seed=41)
    late = alice.encrypt(bob, b"late")
    seen: list[Any] = []
    for round_ in range(3):
        for i in range(3):  # in order on one chain
            message = alice.encrypt(bob, b"a%d" % i)
            assert isinstance(message, CiphertextMessage)
            seen.append(message)
            seen.append(SignalMessage.decode(message.body))
            assert bob.decrypt(alice, message) == b"a%d" % i
        if round_ == 1:
            assert bob.decrypt(alice, late) == b"late"  # a skipped key, from an older chain
        assert alice.decrypt(bob, bob.encrypt(alice, b"b")) == b"b"  # a DH ratchet step each way
    for party in (alice, bob):
        for record in party.sessions.values():
            assert isinstance(record, SessionRecord)
            seen.append(record)
    values = [v for item in seen for v in _named_tuples(item)]
    names = {type(v).__name__ for v in values}
    assert {"SessionRecord", "SessionState", "SenderChain", "ReceiverChain", "ChainKey", "SpqrChain"} <= names
    assert {"SignalMessage", "CiphertextMessage"} <= names
    for value in values:
        _assert_complete(value)
