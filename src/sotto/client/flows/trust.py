"""What we know about a contact's identity key: verified or not, and "safety number changed".

A message that comes for a contact under another identity key than the one we trust is refused
(:mod:`~sotto.client.flows.receiving` reports :class:`~sotto.client.events.IdentityChanged`), and
the refusal also sets a lasting flag on the trusted identity (:func:`flag_changes`): the time of
the latest such message. The flag stays across restarts until the user verifies the contact
again (a matching safety number code) or acknowledges the change (:func:`acknowledge`).

Sending is not held by the flag, as in Signal once the change has been shown: what we send is
still encrypted to the key we trust (unlike Signal, Sotto does not switch to the new key; a
contact with a really new key has to be invited again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sotto.client.events import IdentityChanged
from sotto.store.interfaces import Transaction
from sotto.store.model import Contact


@dataclass(frozen=True, slots=True)
class Trust:
    """Our trust in one contact's identity key."""

    verified: bool
    """The user compared safety numbers for the key we trust (and has not unmarked it since)."""
    changed_ms: int | None
    """When a message last came for them under another identity key (it was refused); None
    once the user verified them again or acknowledged it."""

    @property
    def safety_number_changed(self) -> bool:
        return self.changed_ms is not None


NO_TRUST = Trust(verified=False, changed_ms=None)


def trust_of(tx: Transaction, contact: Contact) -> Trust:
    """``contact``'s trust (nothing verified or flagged if we trust no key for them: removed)."""
    trusted = tx.identities.get(contact.address.name)
    if trusted is None:
        return NO_TRUST
    return Trust(verified=trusted.verified, changed_ms=trusted.changed_ms)


def flag_changes(tx: Transaction, events: Iterable[object], now_ms: int) -> None:
    """Set the "safety number changed" flag for each contact an :class:`IdentityChanged` names
    (in the transaction that records the refused envelope)."""
    for event in events:
        if isinstance(event, IdentityChanged) and tx.identities.get(event.contact.address.name):
            tx.identities.set_changed(event.contact.address.name, now_ms)


def set_verified(tx: Transaction, contact: Contact, verified: bool) -> Trust:
    """Mark ``contact`` verified (which also clears the flag: their key was just compared) or
    not verified (the flag stays). MissingRecordError if we trust no key for them."""
    name = contact.address.name
    tx.identities.set_verified(name, verified)
    if verified:
        tx.identities.set_changed(name, None)
    return trust_of(tx, contact)


def acknowledge(tx: Transaction, contact: Contact) -> bool:
    """Clear the flag without verifying; whether it was set."""
    trusted = tx.identities.get(contact.address.name)
    if trusted is None or trusted.changed_ms is None:
        return False
    tx.identities.set_changed(contact.address.name, None)
    return True
