"""The client SDK: one :class:`Client` per account, over an encrypted local store and a relay.

The public face is :class:`Client` (and the :class:`Invite` it hands out) and the events it
reports (:data:`Event` is their union); :mod:`.content` holds what travels inside a message.
:mod:`.flows` (the protocol flows, written once and driven by any transport), :mod:`.runtime`
and :mod:`.transport` are internal and may change.
"""

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sotto.client import content, events
    from sotto.client.events import (
        ConnectionChanged,
        ContactAccepted,
        ContactAdded,
        ContactMailboxChanged,
        DeliveryReceiptReceived,
        EnvelopeRejected,
        Event,
        GroupMessageReceived,
        GroupUpdated,
        IdentityChanged,
        MessageReceived,
        MessageSent,
        ReadReceiptReceived,
        RejectReason,
        SendFailed,
        SendHeld,
        SessionRepaired,
        TypingChanged,
    )
    from sotto.client.sdk import Client, Invite, Trust

_MODULES = frozenset({"content", "events"})
_LAZY = {"Client": "sdk", "Invite": "sdk", "Trust": "sdk"} | dict.fromkeys(
    (
        "ConnectionChanged",
        "ContactAccepted",
        "ContactAdded",
        "ContactMailboxChanged",
        "DeliveryReceiptReceived",
        "EnvelopeRejected",
        "Event",
        "GroupMessageReceived",
        "GroupUpdated",
        "IdentityChanged",
        "MessageReceived",
        "MessageSent",
        "ReadReceiptReceived",
        "RejectReason",
        "SendFailed",
        "SendHeld",
        "SessionRepaired",
        "TypingChanged",
    ),
    "events",
)

__all__ = [
    "Client",
    "ConnectionChanged",
    "ContactAccepted",
    "ContactAdded",
    "ContactMailboxChanged",
    "DeliveryReceiptReceived",
    "EnvelopeRejected",
    "Event",
    "GroupMessageReceived",
    "GroupUpdated",
    "IdentityChanged",
    "Invite",
    "MessageReceived",
    "MessageSent",
    "ReadReceiptReceived",
    "RejectReason",
    "SendFailed",
    "SendHeld",
    "SessionRepaired",
    "Trust",
    "TypingChanged",
    "content",
    "events",
]


def __getattr__(name: str) -> ModuleType | Any:
    # Loaded on first use: ``events`` or ``content`` alone should not start the SDK's HTTP stack.
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
