"""The designs the benchmark compares, as policies the simulated clients and relay follow.

Each design says what the relay is told (an account or only a mailbox; a sender or not), how
clients connect (one connection draining every mailbox, or one per mailbox; sends on the app's
session connection or each on its own), and the client behaviours the issue asks to switch off one
at a time (mailbox rotation, receipt batching, padding).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from sotto.audit.leakage.sizes import Padding


class Addressing(enum.Enum):
    ACCOUNT = "account"
    """One inbox per account, named by the account (WhatsApp, Signal)."""
    PER_CONTACT = "per-contact"
    """One anonymous mailbox per (owner, contact), as Sotto."""


class Sender(enum.Enum):
    IDENTIFIED = "identified"
    """Sends are authenticated: the relay sees the sender's account."""
    SEALED = "sealed"
    """The relay sees only the destination and a delivery token."""


class SendPath(enum.Enum):
    SESSION = "session"
    """One send connection per app session, opened at the first send (Sotto's send WebSocket)."""
    PER_ENVELOPE = "per-envelope"
    """Every envelope on its own fresh, anonymous connection."""


class DrainPath(enum.Enum):
    ONE_CONNECTION = "one-connection"
    """One connection drains every mailbox of the device while the app runs (Sotto today)."""
    PER_MAILBOX = "per-mailbox"
    """Each mailbox drained on its own connection, opened with its own random delay."""
    TICKS = "ticks"
    """Each mailbox polled once per cadence tick on its own short connection, whatever the app does."""


class Receipts(enum.Enum):
    IMMEDIATE = "immediate"
    """One delivery receipt per message, about 0.3 s after delivery (Signal)."""
    BATCHED = "batched"
    """Sotto's runtime: the first owed receipt starts a timer of delay × U(0.5, 1.5); when it
    fires, one receipt message per contact carries every id owed."""
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Design:
    name: str
    label: str
    addressing: Addressing
    sender: Sender
    send_path: SendPath
    drain_path: DrainPath
    receipts: Receipts
    padding: Padding
    receipt_delay_s: float = 10.0
    rotation_days: float | None = None
    rotation_grace_days: float = 7.0
    send_tick_s: float | None = None
    """Outgoing envelopes wait for the sender's next tick (random phase per user)."""
    drain_jitter_s: float = 0.0
    """Per-mailbox connections open (and close) up to this many seconds after (before) the app."""
    cadence_tick_s: float | None = None
    """Cadence mode (``Client.open(cadence=True)``): on an always-on device, every tick of this
    many seconds (aligned for all users), one envelope to every contact — the oldest queued, else
    owed receipts, else cover — and one poll of every mailbox, each on its own connection at its
    own uniformly random moment in the tick. Typing indicators are not sent."""
    note: str = ""

    def but(self, name: str, label: str, **changes: object) -> Design:
        return replace(self, name=name, label=label, **changes)  # type: ignore[arg-type]


WHATSAPP = Design(
    "whatsapp-like",
    "WhatsApp-like (sender, recipient, time)",
    Addressing.ACCOUNT,
    Sender.IDENTIFIED,
    SendPath.SESSION,
    DrainPath.ONE_CONNECTION,
    Receipts.IMMEDIATE,
    Padding.IDENTIFIED,
    note="authenticated sends into per-account inboxes; the server also keeps a message log",
)

SIGNAL = Design(
    "sealed-immediate",
    "Sealed sender, immediate receipts (Signal)",
    Addressing.ACCOUNT,
    Sender.SEALED,
    SendPath.PER_ENVELOPE,
    DrainPath.ONE_CONNECTION,
    Receipts.IMMEDIATE,
    Padding.SIGNAL160,
    note="per-account inboxes drained by the authenticated account; each sealed send anonymous",
)

SOTTO = Design(
    "sotto",
    "Sotto default",
    Addressing.PER_CONTACT,
    Sender.SEALED,
    SendPath.SESSION,
    DrainPath.ONE_CONNECTION,
    Receipts.BATCHED,
    Padding.BUCKETS,
    rotation_days=7.0,
    note="per-contact mailboxes on one drain connection, a send connection per session, "
    "receipts batched 10 s × U(0.5, 1.5), bucket padding, weekly mailbox rotation",
)

SOTTO_NO_ROTATION = SOTTO.but("sotto-no-rotation", "Sotto, rotation off", rotation_days=None)
SOTTO_NO_BATCHING = SOTTO.but("sotto-no-batching", "Sotto, receipt batching off", receipts=Receipts.IMMEDIATE)
SOTTO_NO_PADDING = SOTTO.but("sotto-no-padding", "Sotto, padding off", padding=Padding.NONE)

SOTTO_ISOLATED = SOTTO.but(
    "sotto-isolated",
    "Sotto + isolated connections (proposal)",
    send_path=SendPath.PER_ENVELOPE,
    drain_path=DrainPath.PER_MAILBOX,
    drain_jitter_s=30.0,
    note="each send on a fresh connection, each mailbox drained on its own connection opened "
    "within 30 s of the app (simulation policy only)",
)

SOTTO_ISOLATED_TICKS = SOTTO_ISOLATED.but(
    "sotto-isolated-ticks",
    "Sotto + isolated connections + 5-min send ticks (proposal)",
    send_tick_s=300.0,
    receipts=Receipts.OFF,
    note="as sotto-isolated, receipts off, and sends released on per-user 5-minute ticks "
    "(simulation policy only)",
)

SOTTO_CADENCE = SOTTO.but(
    "sotto-cadence",
    "Sotto cadence mode (5-min ticks, cover traffic)",
    send_path=SendPath.PER_ENVELOPE,
    drain_path=DrainPath.TICKS,
    cadence_tick_s=300.0,
    note="the client's cadence mode: every 5 minutes one envelope per contact (real or cover) and "
    "one poll per mailbox, each on its own connection at a random moment of the tick; receipts ride "
    "in the next envelope; the device (or an always-on one for it) runs around the clock",
)

SOTTO_CADENCE_NO_ROTATION = SOTTO_CADENCE.but(
    "sotto-cadence-no-rotation", "Sotto cadence mode, rotation off", rotation_days=None
)

BASELINES: tuple[Design, ...] = (WHATSAPP, SIGNAL)
SOTTO_FAMILY: tuple[Design, ...] = (SOTTO, SOTTO_NO_ROTATION, SOTTO_NO_BATCHING, SOTTO_NO_PADDING)
PROPOSALS: tuple[Design, ...] = (SOTTO_ISOLATED, SOTTO_ISOLATED_TICKS)
DEFAULT_DESIGNS: tuple[Design, ...] = BASELINES + SOTTO_FAMILY + PROPOSALS
CADENCE: tuple[Design, ...] = (SOTTO_CADENCE, SOTTO_CADENCE_NO_ROTATION)
"""Cadence mode sends an envelope per contact every tick, so its runs cost about a hundred times
the envelopes of the others: it runs when asked for (``--design sotto-cadence``) at a size that
fits (``bench/leakage.py --cadence``)."""
BY_NAME = {d.name: d for d in DEFAULT_DESIGNS + CADENCE}
