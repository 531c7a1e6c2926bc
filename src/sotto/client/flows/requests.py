"""Message requests: someone who came to us through one of our invites is a request until we
accept them (or write to them first), as Signal shows a first message from someone new.

The client answers their contact request at once either way (the invite was ours to give);
what a request changes is up to the app: it keeps them out of the conversations and sends
them no read receipts or typing until they are accepted. The set of requests is one value in
the store's encrypted settings.
"""

from __future__ import annotations

from sotto.store.interfaces import Transaction
from sotto.store.model import ContactId

KEY = "message-requests"
ID_BYTES = 8


def pending(tx: Transaction) -> set[ContactId]:
    """The contacts that are requests (removed and blocked ones included: callers filter)."""
    value = tx.settings.get(KEY) or b""
    return {ContactId(int.from_bytes(value[i : i + ID_BYTES], "big")) for i in range(0, len(value), ID_BYTES)}


def _keep(tx: Transaction, ids: set[ContactId]) -> None:
    if ids:
        tx.settings.put(KEY, b"".join(i.to_bytes(ID_BYTES, "big") for i in sorted(ids)))
    else:
        tx.settings.delete(KEY)


def mark(tx: Transaction, contact_id: ContactId) -> None:
    """``contact_id`` came through one of our invites: a request until accepted."""
    _keep(tx, pending(tx) | {contact_id})


def settle(tx: Transaction, contact_id: ContactId) -> bool:
    """``contact_id`` is no request (any more); True if it was one."""
    ids = pending(tx)
    if contact_id not in ids:
        return False
    _keep(tx, ids - {contact_id})
    return True
