"""What the adversary holds (the tap and the dump) and what only the simulation knows (truth).

The three are separate types on purpose: attack code takes a :class:`Tap` or a :class:`Dump`
and never a :class:`Truth`; only scoring joins an attack's answer with the truth.

* :class:`Tap`: every request the live relay observed, per connection: deposits (time, mailbox,
  size, the connection that carried it, and the sender's account when sends are authenticated),
  pushes to drain connections, and each drain connection's lifetime and subscriptions. Mailboxes
  and accounts appear as the indexes of the ids the tap saw, in order of first sight.
* :class:`Dump`: one snapshot per simulated midnight of every table row the relay stored and
  every log line it wrote (plus, for the WhatsApp-like baseline, the message log such a server
  keeps).
* :class:`Truth`: owners of mailboxes, the sender and kind of each envelope, latencies.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from sotto.server.storage.base import ExportValue

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


def _f64(values: array[float]) -> F64:
    return np.frombuffer(values, dtype=np.float64).copy() if len(values) else np.zeros(0)


def _i64(values: array[int]) -> I64:
    return np.frombuffer(values, dtype=np.int64).copy() if len(values) else np.zeros(0, dtype=np.int64)


class Interner:
    """Ids as the observer numbers them: in order of first sight."""

    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}
        self.ids: list[bytes] = []

    def __call__(self, value: bytes) -> int:
        found = self.index.get(value)
        if found is None:
            found = self.index[value] = len(self.ids)
            self.ids.append(value)
        return found


@dataclass(slots=True)
class TapRecorder:
    """Filled by the driver as the relay handles requests; :meth:`freeze` makes the :class:`Tap`."""

    mailboxes: Interner = field(default_factory=Interner)
    accounts: Interner = field(default_factory=Interner)
    dep_t: array[float] = field(default_factory=lambda: array("d"))
    dep_mailbox: array[int] = field(default_factory=lambda: array("q"))
    dep_size: array[int] = field(default_factory=lambda: array("q"))
    dep_conn: array[int] = field(default_factory=lambda: array("q"))
    dep_account: array[int] = field(default_factory=lambda: array("q"))
    push_t: array[float] = field(default_factory=lambda: array("d"))
    push_mailbox: array[int] = field(default_factory=lambda: array("q"))
    push_conn: array[int] = field(default_factory=lambda: array("q"))
    push_size: array[int] = field(default_factory=lambda: array("q"))
    drain_open: array[float] = field(default_factory=lambda: array("d"))
    drain_close: array[float] = field(default_factory=lambda: array("d"))
    drain_account: array[int] = field(default_factory=lambda: array("q"))
    sub_conn: array[int] = field(default_factory=lambda: array("q"))
    sub_mailbox: array[int] = field(default_factory=lambda: array("q"))
    sub_t: array[float] = field(default_factory=lambda: array("d"))
    send_open: array[float] = field(default_factory=lambda: array("d"))
    send_close: array[float] = field(default_factory=lambda: array("d"))

    def open_drain(self, t: float, account: bytes | None) -> int:
        self.drain_open.append(t)
        self.drain_close.append(np.inf)
        self.drain_account.append(-1 if account is None else self.accounts(account))
        return len(self.drain_open) - 1

    def open_send(self, t: float) -> int:
        self.send_open.append(t)
        self.send_close.append(np.inf)
        return len(self.send_open) - 1

    def freeze(self, duration_s: float) -> Tap:
        return Tap(
            duration_s=duration_s,
            mailbox_ids=list(self.mailboxes.ids),
            account_ids=list(self.accounts.ids),
            dep_t=_f64(self.dep_t),
            dep_mailbox=_i64(self.dep_mailbox),
            dep_size=_i64(self.dep_size),
            dep_conn=_i64(self.dep_conn),
            dep_account=_i64(self.dep_account),
            push_t=_f64(self.push_t),
            push_mailbox=_i64(self.push_mailbox),
            push_conn=_i64(self.push_conn),
            push_size=_i64(self.push_size),
            drain_open=_f64(self.drain_open),
            drain_close=_f64(self.drain_close),
            drain_account=_i64(self.drain_account),
            sub_conn=_i64(self.sub_conn),
            sub_mailbox=_i64(self.sub_mailbox),
            sub_t=_f64(self.sub_t),
            send_open=_f64(self.send_open),
            send_close=_f64(self.send_close),
        )


@dataclass(frozen=True, slots=True)
class Tap:
    """The live relay's view. ``dep_conn`` is -1 for a send on its own one-off connection;
    ``dep_account`` and ``drain_account`` are -1 where no account was authenticated."""

    duration_s: float
    mailbox_ids: list[bytes]
    account_ids: list[bytes]
    dep_t: F64
    dep_mailbox: I64
    dep_size: I64
    dep_conn: I64
    dep_account: I64
    push_t: F64
    push_mailbox: I64
    push_conn: I64
    push_size: I64
    drain_open: F64
    drain_close: F64
    drain_account: I64
    sub_conn: I64
    sub_mailbox: I64
    sub_t: F64
    send_open: F64
    send_close: F64


Row = dict[str, ExportValue]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything at rest at one simulated midnight: tables (name → rows) and the log so far."""

    day: int
    tables: dict[str, list[Row]]
    log: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dump:
    snapshots: tuple[Snapshot, ...]
    first_day: int


@dataclass(slots=True)
class TruthRecorder:
    """Ground truth the simulated clients know; aligned with the tap's deposit and push order."""

    mailbox_owner: dict[bytes, int] = field(default_factory=dict)
    mailbox_contact: dict[bytes, int] = field(default_factory=dict)
    account_user: dict[bytes, int] = field(default_factory=dict)
    dep_sender: array[int] = field(default_factory=lambda: array("q"))
    dep_recipient: array[int] = field(default_factory=lambda: array("q"))
    dep_kind: array[int] = field(default_factory=lambda: array("q"))
    dep_text: array[int] = field(default_factory=lambda: array("q"))
    dep_unpadded: array[int] = field(default_factory=lambda: array("q"))
    push_sender: array[int] = field(default_factory=lambda: array("q"))
    push_kind: array[int] = field(default_factory=lambda: array("q"))
    push_text: array[int] = field(default_factory=lambda: array("q"))
    drain_user: array[int] = field(default_factory=lambda: array("q"))
    send_user: array[int] = field(default_factory=lambda: array("q"))
    envelope_message: dict[bytes, int] = field(default_factory=dict)
    """Pending envelopes' message id → deposit index (dropped once delivered)."""
    snapshot_kinds: dict[bytes, int] = field(default_factory=dict)
    """Kind of every envelope that was pending at some snapshot (to score the dump)."""

    def freeze(self, texts: int, text_sent: F64, text_deposit: F64, text_push: F64) -> Truth:
        return Truth(
            mailbox_owner=dict(self.mailbox_owner),
            mailbox_contact=dict(self.mailbox_contact),
            account_user=dict(self.account_user),
            dep_sender=_i64(self.dep_sender),
            dep_recipient=_i64(self.dep_recipient),
            dep_kind=_i64(self.dep_kind),
            dep_text=_i64(self.dep_text),
            dep_unpadded=_i64(self.dep_unpadded),
            push_sender=_i64(self.push_sender),
            push_kind=_i64(self.push_kind),
            push_text=_i64(self.push_text),
            drain_user=_i64(self.drain_user),
            send_user=_i64(self.send_user),
            text_sent=text_sent,
            text_deposit=text_deposit,
            text_push=text_push,
            snapshot_kinds=dict(self.snapshot_kinds),
        )


@dataclass(frozen=True, slots=True)
class Truth:
    mailbox_owner: dict[bytes, int]
    mailbox_contact: dict[bytes, int]
    """Mailbox id → the one contact who writes to it (-1 for a per-account inbox)."""
    account_user: dict[bytes, int]
    dep_sender: I64
    dep_recipient: I64
    dep_kind: I64
    dep_text: I64
    dep_unpadded: I64
    push_sender: I64
    push_kind: I64
    push_text: I64
    drain_user: I64
    send_user: I64
    text_sent: F64
    text_deposit: F64
    text_push: F64
    snapshot_kinds: dict[bytes, int]
    """Message id → kind, for every envelope some snapshot holds."""
