"""A writer the crash tests kill: each transaction stores a message, an outbox entry, a seen id and a
counter for step ``i``, then prints ``acked i`` (what a client would do before acknowledging).

``python -m tests.store.crash_writer PATH run``: write until killed.
``python -m tests.store.crash_writer PATH suicide N``: commit N steps, then SIGKILL itself halfway
through step N + 1.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid

from sotto.protocol.address import ProtocolAddress
from sotto.store.interfaces import Transaction
from sotto.store.model import Contact, Conversation, Direction, MailboxId, MessageId, MessageState
from sotto.store.sqlite import SqliteStore

PASSPHRASE = "crash test"
MAILBOX = MailboxId(b"M" * 16)


def envelope_id(step: int) -> MessageId:
    return MessageId(step.to_bytes(16, "big"))


def first_half(tx: Transaction, contact: Contact, step: int) -> None:
    tx.messages.add(
        message_id=envelope_id(step),
        conversation=Conversation.direct(contact.contact_id),
        direction=Direction.INCOMING,
        sender=contact.contact_id,
        text=f"step {step} " + "x" * 300,
        sent_ms=step,
        stored_ms=step,
        state=MessageState.RECEIVED,
    )
    tx.outbox.enqueue(
        server_url="http://relay",
        mailbox_id=MAILBOX,
        delivery_token=b"t" * 32,
        message_id=envelope_id(step),
        payload=os.urandom(1024),
        created_ms=step,
    )


def second_half(tx: Transaction, step: int) -> None:
    tx.seen.add(MAILBOX, envelope_id(step), 1)
    tx.settings.put("last", step.to_bytes(8, "big"))


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    store = SqliteStore.open(path, PASSPHRASE)
    with store.transaction() as tx:
        contact = tx.contacts.by_name("peer") or tx.contacts.add(
            name="peer",
            account_id=b"a" * 16,
            address=ProtocolAddress(str(uuid.UUID(bytes=b"a" * 16)), 1),
            now_ms=0,
        )
        last = tx.settings.get("last")
    step = 0 if last is None else int.from_bytes(last, "big")
    print("ready", flush=True)
    limit = int(sys.argv[3]) if mode == "suicide" else 1 << 62
    while True:
        step += 1
        with store.transaction() as tx:
            first_half(tx, contact, step)
            if step > limit:
                os.kill(os.getpid(), signal.SIGKILL)
            second_half(tx, step)
        print(f"acked {step}", flush=True)


if __name__ == "__main__":
    main()
