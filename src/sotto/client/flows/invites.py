"""Both sides of the invite handshake (see :mod:`sotto.client.invite` for the link and keys).

1. The inviter stores an invite; its mailbox and prekey access token already exist on the relay.
2. The acceptor fetches the inviter's bundle with the access token, starts a session (PQXDH),
   creates a mailbox for the inviter and sends a sealed contact request to the invite mailbox:
   its display name, that mailbox, and a proof that it read the link (:func:`accept_invite`).
3. The inviter checks the request, adds the contact, answers with a mailbox of its own inside
   the session, and retires the invite: one invite, one contact (:func:`receive_contact_request`).
   If the requester is already a contact (two people accepted each other's invites at the same
   time), the request only exchanges mailboxes.
4. The acceptor takes the answer (:mod:`.receiving`), and its held texts go out.
"""

from __future__ import annotations

from dataclasses import replace

from sotto.client import content as c
from sotto.client.events import ContactAccepted, ContactAdded, ContactMailboxChanged, RejectReason
from sotto.client.flows import requests
from sotto.client.flows.contacts import revive
from sotto.client.flows.context import (
    Command,
    Context,
    Outcome,
    RefillPreKeys,
    account_id_of,
    address_for,
    decode_plaintext,
    reject,
    same_key,
)
from sotto.client.flows.mailboxes import address_of, new_mailbox, register, retire_current
from sotto.client.flows.prekeys import decrypt_prekey_message
from sotto.client.flows.sending import release_held, seal_to_contact, send_control
from sotto.client.invite import InviteLink, derive_invite_keys, invite_proof, proof_is_valid
from sotto.crypto.kdf import bytes_equal
from sotto.crypto.keys import PublicKey
from sotto.errors import DecodeError, InviteError, ProtocolError, UntrustedIdentityError
from sotto.protocol import session
from sotto.protocol.bundle import PreKeyBundle
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender import UnidentifiedSenderMessageContent
from sotto.store.model import Contact, IdentityChange, Invite, MailboxId, MessageId, TheirMailbox

INVITE_LIFETIME_MS = 7 * 86_400_000
"""An unused invite (its mailbox and prekey access token) expires after a week."""


def create_invite(ctx: Context, secret: bytes) -> tuple[Invite, str]:
    """Store an invite made from ``secret``; returns it with its link."""
    keys = derive_invite_keys(secret)
    invite = ctx.tx.invites.add(
        secret=secret,
        mailbox_id=MailboxId(keys.mailbox_id),
        signing_seed=keys.mailbox_key.seed(),
        delivery_token=keys.delivery_token,
        access_token=keys.access_token,
        created_ms=ctx.now_ms,
        expires_ms=ctx.now_ms + INVITE_LIFETIME_MS,
    )
    account = ctx.me.account
    return invite, InviteLink(account.server_url, account.account_id, secret).encode()


def unique_name(ctx: Context, wanted: str) -> str:
    """``wanted``, or ``wanted (2)``, ``(3)``… if a contact already has that local name."""
    base = wanted.strip() or "contact"
    name, n = base, 1
    while ctx.tx.contacts.by_name(name) is not None:
        n += 1
        name = f"{base} ({n})"
    return name


def name_is_free(named: Contact | None, existing: Contact | None, name: str) -> bool:
    """Whether ``name`` may be given to the account whose (removed) contact is ``existing``:
    no other contact holds it (``named``: the one that does)."""
    if not name.strip():
        return False
    return named is None or (existing is not None and named.contact_id == existing.contact_id)


def their_mailbox(contact: Contact, address: c.MailboxAddress, now_ms: int) -> TheirMailbox:
    return TheirMailbox(
        contact_id=contact.contact_id,
        server_url=address.server_url,
        mailbox_id=MailboxId(address.mailbox_id),
        delivery_token=address.delivery_token,
        received_ms=now_ms,
    )


def accept_invite(
    ctx: Context, link: InviteLink, bundle: PreKeyBundle, contact_name: str
) -> tuple[Contact, Outcome]:
    """Start a session from the inviter's bundle and queue the sealed contact request.

    Raises InviteError (our own link, the name taken), UntrustedIdentityError (we trust another
    key for that account), InvalidPreKeyBundleError. A removed contact is brought back (its
    history kept) under ``contact_name``. An invite from someone who is a contact already (they
    may have removed us) runs the handshake again: a new session, our old mailboxes for them
    retire, and what we write waits for their answer.
    """
    tx, me = ctx.tx, ctx.me
    if bytes_equal(link.account_id, me.account.account_id):
        raise InviteError("this invite is our own")
    existing = tx.contacts.by_account(link.account_id)
    if not name_is_free(tx.contacts.by_name(contact_name), existing, contact_name):
        raise InviteError(f"choose another name than {contact_name!r}")
    address = address_for(link.account_id)
    if tx.identities.observe(address.name, bundle.identity_key, ctx.now_ms) is IdentityChange.CHANGED:
        raise UntrustedIdentityError("the inviter's identity key differs from the one we trust")
    record = session.process_prekey_bundle(
        tx.sessions.get(address),
        our_identity=me.identity,
        our_registration_id=me.account.registration_id,
        our_address=me.address,
        their_address=address,
        bundle=bundle,
        now_ms=ctx.now_ms,
        rng=ctx.rng,
    )
    tx.sessions.put(address, record)
    if existing is None:
        contact = tx.contacts.add(
            name=contact_name, account_id=link.account_id, address=address, now_ms=ctx.now_ms
        )
    else:
        contact = revive(tx, existing, address=address, name=contact_name)
        if not existing.removed:
            tx.their_mailboxes.delete(contact.contact_id)  # until they answer on the new session
            retire_current(ctx, contact)
    mailbox = new_mailbox(ctx, contact)
    keys = derive_invite_keys(link.secret)
    proof = invite_proof(keys, me.account.account_id, me.identity.public)
    request = c.ContactRequest(me.account.display_name, address_of(mailbox), proof)
    tx.outbox.enqueue(
        server_url=link.server_url,
        mailbox_id=MailboxId(keys.mailbox_id),
        delivery_token=keys.delivery_token,
        message_id=MessageId(ctx.random_id()),
        payload=seal_to_contact(ctx, contact, request),
        created_ms=ctx.now_ms,
    )
    return contact, Outcome(commands=[register(mailbox)])


def receive_contact_request(
    ctx: Context,
    invite: Invite,
    sender_name: str,
    sender_identity: PublicKey,
    usmc: UnidentifiedSenderMessageContent,
) -> Outcome:
    """The first message through one of our invites: check it, add the contact, answer."""
    tx = ctx.tx
    if invite.used_ms is not None or invite.expires_ms <= ctx.now_ms:
        raise reject(RejectReason.INVITE_REFUSED, "invite already used or expired")
    if usmc.message_type is not CiphertextMessageType.PREKEY:
        raise reject(RejectReason.INVITE_REFUSED, "a contact request starts a session")
    account_id = account_id_of(sender_name)
    if account_id is None:
        raise reject(RejectReason.UNSEALABLE, "certificate names no Sotto account")
    existing = tx.contacts.by_account(account_id)
    address = address_for(account_id)
    known = tx.identities.get(address.name)
    if known is not None and not same_key(known.identity_key, sender_identity):
        raise reject(RejectReason.UNTRUSTED_IDENTITY, "identity key differs from one we trusted")
    try:
        plaintext = decrypt_prekey_message(ctx, address, usmc.content, sender_identity)
    except (ProtocolError, DecodeError) as e:
        raise reject(RejectReason.UNDECRYPTABLE, e) from None
    request = decode_plaintext(plaintext)
    if not isinstance(request, c.ContactRequest):
        raise reject(RejectReason.INVITE_REFUSED, "the first message must be a contact request")
    keys = derive_invite_keys(invite.secret)
    if not proof_is_valid(keys, account_id, sender_identity, request.invite_proof):
        raise reject(RejectReason.INVITE_REFUSED, "invite proof does not verify")

    tx.invites.mark_used(invite.invite_id, ctx.now_ms)
    # The used invite's mailbox and access token go when the housekeeping retires it.
    retire_invite: list[Command] = [RefillPreKeys()]
    if existing is not None and not existing.removed:
        return _crossed_invites(ctx, existing, request).extend(Outcome(commands=retire_invite))
    tx.identities.observe(address.name, sender_identity, ctx.now_ms)
    if existing is None:
        contact = tx.contacts.add(
            name=unique_name(ctx, request.display_name),
            account_id=account_id,
            address=address,
            now_ms=ctx.now_ms,
            display_name=request.display_name,
        )
    else:  # removed before: the same row (and history) again, with a new session
        contact = revive(tx, existing, address=address, display_name=request.display_name)
    tx.their_mailboxes.put(their_mailbox(contact, request.reply_to, ctx.now_ms))
    requests.mark(tx, contact.contact_id)
    mailbox = new_mailbox(ctx, contact)
    send_control(ctx, contact, c.ContactAccepted(ctx.me.account.display_name, address_of(mailbox)))
    return Outcome(events=[ContactAdded(contact)], commands=[register(mailbox), *retire_invite])


def _crossed_invites(ctx: Context, contact: Contact, request: c.ContactRequest) -> Outcome:
    """A request from someone who is already our contact: we accepted an invite of theirs while
    they accepted one of ours (or they lost our answer). Take the mailbox they offer and answer
    with ours, so neither side waits for an acceptance that will not come."""
    tx = ctx.tx
    first = tx.their_mailboxes.get(contact.contact_id) is None
    tx.their_mailboxes.put(their_mailbox(contact, request.reply_to, ctx.now_ms))
    updated = replace(contact, display_name=request.display_name)
    tx.contacts.update(updated)
    outcome = Outcome()
    mailbox = tx.mailboxes.current(contact.contact_id)
    if mailbox is None:
        mailbox = new_mailbox(ctx, contact)
        outcome.commands.append(register(mailbox))
    send_control(ctx, updated, c.ContactAccepted(ctx.me.account.display_name, address_of(mailbox)))
    release_held(ctx, updated)
    outcome.events.append(ContactAccepted(updated) if first else ContactMailboxChanged(updated))
    return outcome
