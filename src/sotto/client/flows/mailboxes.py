"""Per-contact mailboxes: creating, announcing, rotating and retiring the ones we drain.

A mailbox is created on our relay after the transaction that stored it commits
(:class:`~sotto.client.flows.context.RegisterMailbox`); the relay accepts the same creation again,
and the SDK re-registers any stored mailbox the relay refuses when it subscribes, so a crash
between the two heals on the next connection.
"""

from __future__ import annotations

from dataclasses import replace

from sotto.client import content as c
from sotto.client.flows.context import Context, DeleteMailbox, Outcome, RegisterMailbox, RevokeAccessToken
from sotto.client.flows.sending import send_control
from sotto.store.interfaces import Transaction
from sotto.store.model import Contact, MailboxId, OurMailbox
from sotto.wire.limits import DELIVERY_TOKEN_LENGTH

MAILBOX_GRACE_MS = 7 * 86_400_000
"""After a rotation the old mailbox is still drained this long, then deleted."""

ROTATION_MEAN_MS = 7 * 86_400_000
"""Each current mailbox is rotated by itself once it is older than its own rotation age, which
is uniform between half and one and a half times this (so 3.5 to 10.5 days, 7 on average),
drawn from its id: mailboxes made together are not replaced together."""

SEEN_RETENTION_DAYS = 120
"""Envelope ids stay in the dedupe table longer than any envelope can wait on the relay."""


def new_mailbox(ctx: Context, contact: Contact) -> OurMailbox:
    """A fresh mailbox on our relay for one contact, stored (register it after the commit)."""
    mailbox = OurMailbox(
        mailbox_id=MailboxId(ctx.random_id()),
        contact_id=contact.contact_id,
        server_url=ctx.me.account.server_url,
        signing_seed=ctx.rng(32),
        delivery_token=ctx.rng(DELIVERY_TOKEN_LENGTH),
        created_ms=ctx.now_ms,
    )
    ctx.tx.mailboxes.add(mailbox)
    return mailbox


def register(mailbox: OurMailbox) -> RegisterMailbox:
    return RegisterMailbox(mailbox.mailbox_id, mailbox.signing_seed, mailbox.delivery_token)


def address_of(mailbox: OurMailbox) -> c.MailboxAddress:
    """What a contact needs to send to ``mailbox``."""
    return c.MailboxAddress(mailbox.server_url, mailbox.mailbox_id, mailbox.delivery_token)


def rotate_mailbox(ctx: Context, contact: Contact) -> Outcome:
    """Give ``contact`` a new mailbox: store it, announce it in-band, retire the old one later."""
    tx = ctx.tx
    if tx.their_mailboxes.get(contact.contact_id) is None:
        return Outcome()  # they cannot hear us yet; our answer to their request carries a fresh one
    retire_current(ctx, contact)
    mailbox = new_mailbox(ctx, contact)
    send_control(ctx, contact, c.MailboxRotated(address_of(mailbox)))
    return Outcome(commands=[register(mailbox)])


def retire_current(ctx: Context, contact: Contact) -> None:
    """Our current mailbox for ``contact`` is rotated out: drained a while longer, then deleted."""
    for old in ctx.tx.mailboxes.for_contact(contact.contact_id):
        if old.rotated_ms is None:
            retire_at = ctx.now_ms + MAILBOX_GRACE_MS
            ctx.tx.mailboxes.update(replace(old, rotated_ms=ctx.now_ms, retiring_until_ms=retire_at))


def rotation_age_ms(mailbox: OurMailbox) -> int:
    """How old ``mailbox`` grows before it is rotated (see :data:`ROTATION_MEAN_MS`): a uniform
    draw from its random id, the same every time it is asked."""
    fraction = int.from_bytes(mailbox.mailbox_id[:8], "big") / 2**64
    return int(ROTATION_MEAN_MS * (0.5 + fraction))


def rotation_due(tx: Transaction, now_ms: int) -> Contact | None:
    """A contact whose current mailbox has outgrown its rotation age (the oldest overdue), if any."""
    due: list[tuple[int, Contact]] = []
    for contact in tx.contacts.all():
        current = tx.mailboxes.current(contact.contact_id)
        if current is None or tx.their_mailboxes.get(contact.contact_id) is None:
            continue
        overdue = now_ms - current.created_ms - rotation_age_ms(current)
        if overdue >= 0:
            due.append((overdue, contact))
    return max(due, key=lambda pair: pair[0])[1] if due else None


def ensure_mailbox(ctx: Context, contact: Contact) -> Outcome:
    """A contact whose current mailbox is missing (never made, or deleted) gets one announced."""
    if ctx.tx.mailboxes.current(contact.contact_id) is not None:
        return Outcome()
    return rotate_mailbox(ctx, contact)


def retire(ctx: Context) -> Outcome:
    """Ask for the deletion of mailboxes whose grace period ended and of invites that were used
    or expired; prune the dedupe table.

    The rows stay in the store until the relay confirms the deletion (:func:`deleted`): the
    deletions wait for chore instants, and a client closed or killed before then asks again
    next time, and meanwhile still exports (and drains) what the relay holds for it."""
    tx = ctx.tx
    outcome = Outcome()
    for mailbox in tx.mailboxes.all():
        if mailbox.retiring_until_ms is not None and mailbox.retiring_until_ms <= ctx.now_ms:
            outcome.commands.append(DeleteMailbox(mailbox.mailbox_id, mailbox.signing_seed))
    for invite in tx.invites.all():
        if invite.used_ms is not None or invite.expires_ms <= ctx.now_ms:
            outcome.commands.append(DeleteMailbox(invite.mailbox_id, invite.signing_seed))
            outcome.commands.append(RevokeAccessToken(invite.access_token))
    tx.seen.prune(ctx.day - SEEN_RETENTION_DAYS)
    return outcome


def deleted(tx: Transaction, mailbox_id: MailboxId) -> None:
    """The relay no longer holds ``mailbox_id`` (deleted, or already gone): forget it, and the
    invite it belonged to."""
    tx.mailboxes.delete(mailbox_id)
    for invite in tx.invites.all():
        if invite.mailbox_id == mailbox_id:
            tx.invites.delete(invite.invite_id)


def held(tx: Transaction, now_ms: int) -> dict[MailboxId, bytes]:
    """Every mailbox the relay may hold for us (what we drain, and mailboxes and invites whose
    deletion has not been confirmed yet): id → key seed."""
    every = to_drain(tx, now_ms)
    every.update({i.mailbox_id: i.signing_seed for i in tx.invites.all()})
    return every


def to_drain(tx: Transaction, now_ms: int) -> dict[MailboxId, bytes]:
    """Every mailbox we read (contacts' current and retiring ones, open invites): id → key seed."""
    drain = {m.mailbox_id: m.signing_seed for m in tx.mailboxes.all()}
    drain.update({i.mailbox_id: i.signing_seed for i in tx.invites.open(now_ms)})
    return drain


def registration_for(tx: Transaction, mailbox_id: MailboxId, now_ms: int) -> RegisterMailbox | None:
    """How to re-create one of our mailboxes the relay refused (expired, or never created)."""
    ours = tx.mailboxes.get(mailbox_id)
    if ours is not None:
        return register(ours)
    invite = tx.invites.by_mailbox(mailbox_id)
    if invite is not None and invite.used_ms is None and invite.expires_ms > now_ms:
        return RegisterMailbox(invite.mailbox_id, invite.signing_seed, invite.delivery_token)
    return None
