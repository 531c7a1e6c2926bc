"""Groups: sender keys handed out over 1:1 sessions, one encryption per message, one sealed
envelope per member's mailbox (the relay does no fan-out and sees unrelated envelope ids).

Membership is who we can reach: a group lists account ids, and each member keeps those that are
its contacts. A member who is not our contact does not get our messages (and we cannot read
theirs); :meth:`sotto.client.sdk.Client.create_group` takes contacts only. Members are only added,
never removed, and a newcomer reads from the point it joined: our chain is handed over from where
it is (``create_distribution`` reuses it), and every member hands its own key to a newcomer
before its next group message (:func:`distribute_sender_key`).
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from sotto.client import content as c
from sotto.client.attachment_pointer import AttachmentPointer
from sotto.client.events import GroupMessageReceived, GroupUpdated, RejectReason
from sotto.client.flows import attachments, changes
from sotto.client.flows.context import Context, Outcome, decode_plaintext, reject
from sotto.client.flows.sending import enqueue, send_control
from sotto.errors import CryptoError, DecodeError, ProtocolError
from sotto.protocol.group import (
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SenderKeyRecord,
    create_distribution,
    group_decrypt,
    group_encrypt,
    process_distribution,
)
from sotto.protocol.messages import CiphertextMessageType
from sotto.protocol.sealed_sender import UnidentifiedSenderMessageContent, seal_v1
from sotto.store.interfaces import Transaction
from sotto.store.model import (
    Contact,
    Conversation,
    Direction,
    Group,
    GroupId,
    MessageId,
    MessageRowId,
    MessageState,
)
from sotto.wire.limits import ID_LENGTH
from sotto.wire.padding import pad


def members(ctx: Context, group_id: GroupId) -> list[tuple[Contact, bool]]:
    """The group's members as contacts, each with "holds our current sender key"."""
    found = []
    for member in ctx.tx.groups.members(group_id):
        contact = ctx.tx.contacts.get(member.contact_id)
        if contact is not None:
            found.append((contact, member.skdm_sent))
    return found


def is_member(ctx: Context, group_id: GroupId, contact: Contact) -> bool:
    return any(m.contact_id == contact.contact_id for m in ctx.tx.groups.members(group_id))


def _update(ctx: Context, group: Group, distribution: bytes | None) -> c.GroupUpdate:
    accounts = tuple(contact.account_id for contact, _ in members(ctx, group.group_id))
    return c.GroupUpdate(group.group_id, group.name, (ctx.me.account.account_id, *accounts), distribution)


def _our_sender_key(ctx: Context, group: Group) -> tuple[SenderKeyRecord, SenderKeyDistributionMessage]:
    known = ctx.tx.sender_keys.get(ctx.me.address, group.distribution_id)
    record, skdm = create_distribution(known, group.distribution_id, ctx.rng)
    if known is None:
        ctx.tx.sender_keys.put(ctx.me.address, record)
    return record, skdm


def distribute_sender_key(ctx: Context, group: Group) -> int:
    """Hand our sender key, with the group's metadata, to every member who lacks it; how many."""
    pending = [contact for contact, has_key in members(ctx, group.group_id) if not has_key]
    if not pending:
        return 0
    _, skdm = _our_sender_key(ctx, group)
    update = _update(ctx, group, skdm.encode())
    count = 0
    for contact in pending:
        if send_control(ctx, contact, update):
            ctx.tx.groups.mark_skdm_sent(group.group_id, contact.contact_id)
            count += 1
    return count


def create_group(ctx: Context, name: str, contacts: list[Contact]) -> Group:
    """A new group of us and ``contacts``; each gets its metadata and our sender key."""
    c.encode(c.GroupUpdate(bytes(ID_LENGTH), name, ()))  # an oversized name is refused up front
    group = ctx.tx.groups.create(
        group_id=GroupId(ctx.random_id()),
        name=name,
        distribution_id=uuid.UUID(bytes=ctx.random_id(), version=4),
        created_ms=ctx.now_ms,
    )
    for contact in contacts:
        ctx.tx.groups.add_member(group.group_id, contact.contact_id)
    distribute_sender_key(ctx, group)
    return group


def add_to_group(ctx: Context, group: Group, contact: Contact) -> bool:
    """Add a contact: the others learn the member list, the newcomer gets our sender key.

    False if they were a member already.
    """
    if not ctx.tx.groups.add_member(group.group_id, contact.contact_id):
        return False
    update = _update(ctx, group, None)
    for member, _ in members(ctx, group.group_id):
        if member.contact_id != contact.contact_id:
            send_control(ctx, member, update)
    distribute_sender_key(ctx, group)
    return True


def send_group_text(ctx: Context, group: Group, text: str, reply_to: bytes | None = None) -> MessageId:
    """Encrypt once with our sender key, seal the result to each member's mailbox.

    Each envelope has its own random id, so the relay cannot match the copies of one group
    message across mailboxes. Members who have not given us a mailbox yet are skipped.
    ``reply_to`` and the disappearing timer as for a 1:1 text (:mod:`.changes`).
    """
    tx = ctx.tx
    where = Conversation.group(group.group_id)
    message_id = MessageId(ctx.random_id())
    quote = None if reply_to is None else changes.quote_for(ctx, where, reply_to)
    timer = changes.timer_of(tx, where)
    wire_quote = None if quote is None else c.Quote(quote.message_id, quote.author)
    body = c.GroupText(message_id, ctx.now_ms, text, wire_quote, timer)
    c.encode(body)  # an oversized text is refused before anything is stored
    row = tx.messages.add(
        message_id=message_id,
        conversation=where,
        direction=Direction.OUTGOING,
        sender=None,
        text=text,
        sent_ms=ctx.now_ms,
        stored_ms=ctx.now_ms,
        state=MessageState.QUEUED,
        quote=quote,
        expires_ms=changes.expires_at(ctx.now_ms, timer),
    )
    send_group_content(ctx, group, body, row.row_id)
    return message_id


def send_group_attachment(
    ctx: Context, group: Group, pointer: AttachmentPointer, caption: str, server_url: str
) -> MessageId:
    """Store our file's message in the group and send its pointer like a group text: encrypted
    once under our sender key, one sealed envelope per member (the blob was uploaded once)."""
    body, row = attachments.new_attachment(
        ctx, Conversation.group(group.group_id), pointer, caption, server_url
    )
    send_group_content(ctx, group, body, row)
    return MessageId(body.message_id)


def reachable(tx: Transaction, group_id: GroupId) -> int:
    """How many members a group message would go to now (they gave us a mailbox and we trust
    their identity): the fetches the relay waits for before it deletes a group file's blob."""
    count = 0
    for member in tx.groups.members(group_id):
        contact = tx.contacts.get(member.contact_id)
        if contact is None:
            continue
        if tx.their_mailboxes.get(contact.contact_id) and tx.identities.get(contact.address.name):
            count += 1
    return count


def send_group_content(
    ctx: Context, group: Group, content: c.Content, row: MessageRowId | None = None
) -> None:
    """Encrypt ``content`` once under our sender key and queue it to every member who has given
    us a mailbox (``row``: the history row it belongs to, SENT at once if nobody can be sent to)."""
    tx = ctx.tx
    plaintext = pad(c.encode(content))
    distribute_sender_key(ctx, group)
    record, _ = _our_sender_key(ctx, group)
    record, skm = group_encrypt(record, plaintext, ctx.rng)
    tx.sender_keys.put(ctx.me.address, record)
    usmc = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.SENDER_KEY, ctx.me.certificate, skm, group_id=group.group_id
    )
    for contact, _ in members(ctx, group.group_id):
        theirs = tx.their_mailboxes.get(contact.contact_id)
        trusted = tx.identities.get(contact.address.name)
        if theirs is None or trusted is None:
            continue
        payload = pad(seal_v1(ctx.me.identity, trusted.identity_key, usmc, ctx.rng))
        enqueue(ctx, theirs, ctx.random_id(), payload, row=row)
    if row is not None and tx.outbox.remaining_for(row) == 0:
        tx.messages.advance(row, MessageState.SENT)  # nobody to send to: nothing pending


def receive_group_message(ctx: Context, sender: Contact, usmc: UnidentifiedSenderMessageContent) -> Outcome:
    """Decrypt a sender-key message from ``sender`` and store the text (rejections: WRONG_SENDER,
    UNDECRYPTABLE, MALFORMED, UNEXPECTED)."""
    tx = ctx.tx
    group = None if usmc.group_id is None else tx.groups.get(GroupId(usmc.group_id))
    if group is None or not is_member(ctx, group.group_id, sender):
        raise reject(RejectReason.WRONG_SENDER, "not a member of a group we know")
    try:
        skm = SenderKeyMessage.decode(usmc.content)
        record = tx.sender_keys.get(sender.address, skm.distribution_id)
        if record is None:
            raise reject(RejectReason.UNDECRYPTABLE, "no sender key from this member")
        record, plaintext = group_decrypt(record, usmc.content)
    except (ProtocolError, DecodeError, CryptoError) as e:
        raise reject(RejectReason.UNDECRYPTABLE, e) from None
    message = decode_plaintext(plaintext)
    if isinstance(message, c.Edit | c.DeleteForEveryone | c.Reaction | c.Timer):
        tx.sender_keys.put(sender.address, record)
        return changes.apply(ctx, sender, Conversation.group(group.group_id), group, message)
    if isinstance(message, c.Attachment):
        tx.sender_keys.put(sender.address, record)
        if not attachments.keep_received(ctx, sender, message, Conversation.group(group.group_id)):
            return Outcome()
        event = attachments.received_event(
            sender,
            MessageId(message.message_id),
            message.caption,
            message.sent_ms,
            message.pointer,
            group=group,
        )
        return Outcome(events=[event])
    if not isinstance(message, c.GroupText):
        raise reject(
            RejectReason.UNEXPECTED, "only texts, files and changes to them travel under a sender key"
        )
    tx.sender_keys.put(sender.address, record)
    message_id = MessageId(message.message_id)
    if tx.messages.find(sender.contact_id, message_id) is not None:
        return Outcome()
    tx.messages.add(
        message_id=message_id,
        conversation=Conversation.group(group.group_id),
        direction=Direction.INCOMING,
        sender=sender.contact_id,
        text=message.text,
        sent_ms=message.sent_ms,
        stored_ms=ctx.now_ms,
        state=MessageState.RECEIVED,
        quote=changes.quote_of(message),
        expires_ms=changes.expires_at(ctx.now_ms, message.expire_s),
    )
    return Outcome(events=[GroupMessageReceived(group, sender, message_id, message.text, message.sent_ms)])


def apply_group_update(ctx: Context, sender: Contact, update: c.GroupUpdate) -> Outcome:
    """Create, rename or extend a group from a member's update; take their sender key if included."""
    tx = ctx.tx
    if ctx.me.account.account_id not in update.members or sender.account_id not in update.members:
        raise reject(RejectReason.UNEXPECTED, "a group update lists its sender and us")
    distribution = None
    if update.distribution is not None:
        try:
            distribution = SenderKeyDistributionMessage.decode(update.distribution)
        except (DecodeError, ProtocolError) as e:
            raise reject(RejectReason.MALFORMED, e) from None
    group_id = GroupId(update.group_id)
    group = tx.groups.get(group_id)
    joined = group is None
    if group is None:
        group = tx.groups.create(
            group_id=group_id,
            name=update.name,
            distribution_id=uuid.UUID(bytes=ctx.random_id(), version=4),
            created_ms=ctx.now_ms,
        )
    elif not is_member(ctx, group_id, sender):
        raise reject(RejectReason.WRONG_SENDER, "only members update a group")
    elif group.name != update.name:
        tx.groups.rename(group_id, update.name)
        group = replace(group, name=update.name)
    for account_id in update.members:
        contact = tx.contacts.by_account(account_id)
        if contact is not None and not contact.removed:
            tx.groups.add_member(group_id, contact.contact_id)
    if distribution is not None:
        known = tx.sender_keys.get(sender.address, distribution.distribution_id)
        tx.sender_keys.put(sender.address, process_distribution(known, distribution))
    return Outcome(events=[GroupUpdated(group, sender, joined)])
