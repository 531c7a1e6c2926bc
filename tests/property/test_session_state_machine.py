"""The 1:1 session as a state machine: random sends both ways, drops, reordering, duplicates,
restores of old state and new sessions, with invariants checked after every step. Each party's
state lives in the reference store (sotto.protocol.store), so the bookkeeping exercised is the
library's own.

Model: every message has an id; a message is "fresh" for its receiver until it decrypts. A
fresh message must decrypt to its plaintext, unless its sender's ratchet key was pushed out of
the receiver's 5 receiver chains (then DecryptionError, as in libsignal). A message that
already decrypted is a DuplicateMessageError. A failed decryption leaves the record's bytes as
they were. A restore rolls a party back to a snapshot of its stores (records, prekeys, the
last-resort set); it is only allowed while the party has sent nothing since the snapshot, so
no peer holds keys from the discarded future.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sotto.crypto.random import seeded_rng
from sotto.errors import DecryptionError, DuplicateMessageError
from sotto.protocol import session
from sotto.protocol.bundle import PreKeyRecord
from sotto.protocol.limits import MAX_RECEIVER_CHAINS
from sotto.protocol.messages import (
    CiphertextMessage,
    CiphertextMessageType,
    PreKeySignalMessage,
    SignalMessage,
)
from sotto.protocol.record import SessionRecord
from sotto.protocol.store import InMemoryProtocolStore
from tests.protocol.parties import ALICE_NAME, BOB_NAME, NOW_MS, Party


@dataclass(frozen=True)
class Sent:
    id: int
    sender: str
    message: CiphertextMessage
    plaintext: bytes
    session: bytes  # the session's alice base key
    ratchet_key: bytes


@dataclass
class View:
    """What the model knows about one receiving party."""

    delivered: set[int] = field(default_factory=set)
    seen: dict[bytes, list[bytes]] = field(default_factory=dict)  # session -> ratchet keys, in order


@dataclass
class Snapshot:
    record: bytes | None
    store: InMemoryProtocolStore
    """The party's whole reference store as it was (prekeys, the last-resort use set, identities)."""
    view: View


def _inner(message: CiphertextMessage) -> SignalMessage:
    if message.type == CiphertextMessageType.PREKEY:
        return PreKeySignalMessage.decode(message.body).message
    return SignalMessage.decode(message.body)


class SessionMachine(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**32 - 1))
    def start(self, seed: int) -> None:
        rng = seeded_rng(seed)
        self.parties = {"alice": Party(ALICE_NAME, 1, rng), "bob": Party(BOB_NAME, 2, rng)}
        self.views = {"alice": View(), "bob": View()}
        self.snapshots: dict[str, Snapshot] = {}
        self.sent_since_snapshot = {"alice": False, "bob": False}
        self.in_flight: list[Sent] = []
        self.delivered_pool: list[Sent] = []
        self.next_id = 0
        self.published: dict[str, dict[int, PreKeyRecord]] = {"alice": {}, "bob": {}}
        self._new_session("alice")

    def _peer(self, name: str) -> str:
        return "bob" if name == "alice" else "alice"

    def _new_session(self, initiator: str) -> None:
        me, them = self.parties[initiator], self.parties[self._peer(initiator)]
        me.start_session(them)
        self.published[self._peer(initiator)].update(them.one_time)
        state = me.sessions[them.address].current
        assert state is not None
        # The initiator's first receiver chain is the peer's signed prekey.
        self.views[initiator].seen[state.alice_base_key.to_bytes()] = [
            state.receiver_chains[0].ratchet_key.raw
        ]

    def _record(self, name: str) -> SessionRecord | None:
        me, them = self.parties[name], self.parties[self._peer(name)]
        return me.sessions.get(them.address)

    @rule(initiator=st.sampled_from(["alice", "bob"]))
    def new_session(self, initiator: str) -> None:
        self._new_session(initiator)

    @rule(sender=st.sampled_from(["alice", "bob"]), count=st.integers(1, 4), size=st.integers(0, 60))
    def send(self, sender: str, count: int, size: int) -> None:
        if not session.has_usable_session(self._record(sender), NOW_MS):
            return
        me, them = self.parties[sender], self.parties[self._peer(sender)]
        for _ in range(count):
            plaintext = bytes([self.next_id % 256]) * size
            message = me.encrypt(them, plaintext)
            state = me.sessions[them.address].current
            assert state is not None
            inner = _inner(message)
            self.in_flight.append(
                Sent(
                    self.next_id,
                    sender,
                    message,
                    plaintext,
                    state.alice_base_key.to_bytes(),
                    inner.ratchet_key.raw,
                )
            )
            self.next_id += 1
        self.sent_since_snapshot[sender] = True

    @precondition(lambda self: bool(self.in_flight))
    @rule(pick=st.integers(0, 10**6))
    def deliver(self, pick: int) -> None:
        self._deliver(self.in_flight.pop(pick % len(self.in_flight)))

    @precondition(lambda self: bool(self.in_flight))
    @rule(pick=st.integers(0, 10**6))
    def drop(self, pick: int) -> None:
        self.in_flight.pop(pick % len(self.in_flight))

    @precondition(lambda self: bool(self.delivered_pool))
    @rule(pick=st.integers(0, 10**6))
    def duplicate(self, pick: int) -> None:
        self._deliver(self.delivered_pool[pick % len(self.delivered_pool)])

    @rule(name=st.sampled_from(["alice", "bob"]))
    def snapshot(self, name: str) -> None:
        me = self.parties[name]
        record = self._record(name)
        view = self.views[name]
        self.snapshots[name] = Snapshot(
            None if record is None else record.to_bytes(),
            me.store.snapshot(),
            View(set(view.delivered), {k: list(v) for k, v in view.seen.items()}),
        )
        self.sent_since_snapshot[name] = False

    @precondition(
        lambda self: any(n in self.snapshots and not self.sent_since_snapshot[n] for n in ("alice", "bob"))
    )
    @rule(first=st.booleans())
    def restore(self, first: bool) -> None:
        names = [n for n in ("alice", "bob") if n in self.snapshots and not self.sent_since_snapshot[n]]
        name = names[0] if first else names[-1]
        snap = self.snapshots[name]
        me, them = self.parties[name], self.parties[self._peer(name)]
        restored = snap.store.snapshot()
        # The record comes back through its stored bytes, as a restored backup's would.
        if snap.record is None:
            restored.sessions.pop(them.address, None)
        else:
            restored.sessions[them.address] = SessionRecord.from_bytes(snap.record)
        # Every prekey ever published comes back: the restored record may need any of them again.
        restored.pre_keys = dict(self.published[name])
        # Ids are never handed out twice, so a published id always names one key.
        restored.next_pre_key_id = me.store.next_pre_key_id
        me.store = restored
        self.views[name] = View(set(snap.view.delivered), {k: list(v) for k, v in snap.view.seen.items()})

    def _deliver(self, sent: Sent) -> None:
        receiver = self._peer(sent.sender)
        me, them = self.parties[receiver], self.parties[sent.sender]
        view = self.views[receiver]
        seen = view.seen.get(sent.session, [])
        evicted = sent.ratchet_key in seen and sent.ratchet_key not in seen[-MAX_RECEIVER_CHAINS:]
        before = self._record(receiver)
        before_bytes = None if before is None else before.to_bytes()
        try:
            plaintext = me.decrypt(them, sent.message)
        except DuplicateMessageError:
            assert sent.id in view.delivered, f"fresh message {sent.id} refused as a duplicate"
            self._unchanged(receiver, before, before_bytes)
            return
        except DecryptionError:
            assert evicted, f"message {sent.id} failed to decrypt"
            self._unchanged(receiver, before, before_bytes)
            return
        assert sent.id not in view.delivered, f"message {sent.id} decrypted twice"
        assert not evicted, f"message {sent.id} decrypted on an evicted chain"
        assert plaintext == sent.plaintext
        view.delivered.add(sent.id)
        keys = view.seen.setdefault(sent.session, [])
        if sent.ratchet_key not in keys:
            keys.append(sent.ratchet_key)
        self.delivered_pool.append(sent)

    def _unchanged(self, name: str, before: SessionRecord | None, before_bytes: bytes | None) -> None:
        after = self._record(name)
        assert after is before
        assert (None if after is None else after.to_bytes()) == before_bytes

    @invariant()
    def records_round_trip(self) -> None:
        for name in ("alice", "bob"):
            record = self._record(name)
            if record is not None:
                assert len(record.previous) <= 40
                if record.current is not None:
                    assert len(record.current.receiver_chains) <= MAX_RECEIVER_CHAINS


SessionMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSessionStateMachine = SessionMachine.TestCase
