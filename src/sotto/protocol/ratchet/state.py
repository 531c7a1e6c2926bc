"""One Double Ratchet + SPQR session with one peer device, as an immutable value.

A :class:`SessionState` is never changed in place: encryption and decryption return a new
state, sharing every part they did not touch (a receiver chain that was not used, its skipped
keys, the identities). So a failed decryption cannot leave half-applied changes behind, and
"keep the old state" costs nothing.

Each type here is a ``NamedTuple`` rather than a frozen dataclass: as immutable, and building
one, which every message sent or received does, costs a quarter as much.

Spec symbols: ``RK`` = :attr:`SessionState.root_key`, ``DHs``/``CKs`` = :attr:`sender_chain`,
``DHr``/``CKr`` = the newest of :attr:`receiver_chains` (older ones are kept so late messages
from earlier ratchet steps still decrypt), ``MKSKIPPED`` = each chain's ``skipped``.
"""

from __future__ import annotations

from typing import NamedTuple

from sotto.crypto.keys import KeyPair, PublicKey
from sotto.protocol.limits import MAX_UNACKNOWLEDGED_SESSION_AGE_MS
from sotto.protocol.ratchet.chain import ChainKey
from sotto.protocol.ratchet.root import RootKey
from sotto.protocol.ratchet.skipped import SkippedKeys
from sotto.protocol.ratchet.spqr import SpqrChain


class SenderChain(NamedTuple):
    """Our current ratchet key pair (``DHs``) and sending chain key (``CKs``)."""

    ratchet_key: KeyPair
    chain_key: ChainKey

    def __repr__(self) -> str:
        return f"SenderChain(ratchet_key={self.ratchet_key.public!r}, index={self.chain_key.index})"


class ReceiverChain(NamedTuple):
    """A peer ratchet key (``DHr``), its receiving chain key (``CKr``) and the seeds it skipped."""

    ratchet_key: PublicKey
    chain_key: ChainKey
    skipped: SkippedKeys

    def __repr__(self) -> str:
        return (
            f"ReceiverChain(ratchet_key={self.ratchet_key!r}, index={self.chain_key.index}, "
            f"skipped={len(self.skipped)})"
        )


class PendingPreKey(NamedTuple):
    """What the initiator repeats in every message until the peer answers (no secrets)."""

    pre_key_id: int | None
    signed_pre_key_id: int
    kyber_pre_key_id: int
    kyber_ciphertext: bytes
    base_key: PublicKey
    timestamp_ms: int

    def __repr__(self) -> str:
        return (
            f"PendingPreKey(pre_key_id={self.pre_key_id}, signed_pre_key_id={self.signed_pre_key_id}, "
            f"kyber_pre_key_id={self.kyber_pre_key_id}, timestamp_ms={self.timestamp_ms})"
        )


class SessionState(NamedTuple):
    """Everything one session needs; see the module docstring for the spec's names."""

    version: int
    local_identity: PublicKey
    remote_identity: PublicKey
    root_key: RootKey
    sender_chain: SenderChain
    receiver_chains: tuple[ReceiverChain, ...]
    """Oldest first; at most :data:`~sotto.protocol.limits.MAX_RECEIVER_CHAINS`."""
    previous_counter: int
    spqr: SpqrChain
    local_registration_id: int
    remote_registration_id: int
    alice_base_key: PublicKey
    """The initiator's PQXDH base key: identifies the session when a PreKey message repeats."""
    self_session: bool
    """A session with our own account (same ServiceId and identity): no forward-jump limit."""
    pending_prekey: PendingPreKey | None

    def receiver_chain_index(self, their_ratchet_key: PublicKey) -> int | None:
        # Newest first: most messages arrive on the peer's current ratchet key. Each key has
        # at most one chain, so the search order does not change the answer. Ratchet keys travel
        # in the clear in every message, so their raw bytes are compared directly.
        chains = self.receiver_chains
        raw = their_ratchet_key.raw
        for i in range(len(chains) - 1, -1, -1):
            if chains[i].ratchet_key.raw == raw:
                return i
        return None

    def is_stale(self, now_ms: int) -> bool:
        """An initiator's session that got no reply for 30 days is not used for sending."""
        pending = self.pending_prekey
        return pending is not None and pending.timestamp_ms + MAX_UNACKNOWLEDGED_SESSION_AGE_MS < now_ms

    def __repr__(self) -> str:
        return (
            f"SessionState(version={self.version}, remote_identity={self.remote_identity!r}, "
            f"sender={self.sender_chain!r}, receiver_chains={len(self.receiver_chains)}, "
            f"pending_prekey={self.pending_prekey is not None}, <secret>)"
        )
