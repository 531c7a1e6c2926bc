"""Groups: sender keys handed out over 1:1 sessions, one encryption per message, one sealed
envelope per member's mailbox (the relay does no fan-out and sees unrelated envelope ids).

Who is in a group, who runs it and what it is called follow :mod:`sotto.client.group_membership`:
each change (add, remove, make admin, leave, rename) travels 1:1 to every member the changer
knows in the group, the removed one included, and every client applies the same rule, so the
members who hold the same changes agree; a change the rule refuses (a non-admin adding or
removing, say) is dropped by every client with the refusal as the rejection's detail. The relay
sees only sealed envelopes, one per member's mailbox, as for any message.

Membership is who we can reach: the group's state lists account ids, and each member keeps those
that are its contacts. A member who is not our contact does not get our messages (and we cannot
read theirs). A newcomer reads from the point it joined: our chain is handed over from where it is
(``create_distribution`` reuses it). When anyone leaves or is removed, every remaining member
makes a new sender key (a new distribution id) and hands it to the remaining members only, so
what is written from then on is under keys the one who left never had.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from sotto.client import content as c
from sotto.client import group_membership as gm
from sotto.client.attachment_pointer import AttachmentPointer
from sotto.client.events import GroupMessageReceived, GroupUpdated, RejectReason
from sotto.client.flows import attachments, changes
from sotto.client.flows.context import Context, Outcome, decode_plaintext, reject
from sotto.client.flows.sending import enqueue, hold_group_message, send_control
from sotto.errors import ClientError, CryptoError, DecodeError, ProtocolError, StoreCorruptedError
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

_MEMBERSHIP_KEY = "group-membership:"


class GroupChangeRefusedError(ClientError):
    """Our own change to a group would do nothing under the membership rule: ``reason`` says why."""

    def __init__(self, reason: gm.Refusal) -> None:
        super().__init__(f"the group change is refused: {reason.value}")
        self.reason = reason


def membership(ctx: Context, group: Group) -> gm.Membership:
    """What we hold of the group's membership. A group from before admins and versions starts
    from its members as we know them, each of them an admin."""
    raw = ctx.tx.settings.get(_MEMBERSHIP_KEY + group.group_id.hex())
    if raw is not None:
        try:
            return gm.decode_membership(raw)
        except DecodeError:
            raise StoreCorruptedError("a group's membership does not parse") from None
    accounts = [ctx.me.account.account_id]
    for member in ctx.tx.groups.members(group.group_id):
        contact = ctx.tx.contacts.get(member.contact_id)
        if contact is not None:
            accounts.append(contact.account_id)
    everyone = frozenset(accounts)
    return gm.Membership(gm.Roster(everyone, everyone, group.name), 0)


def roster(ctx: Context, group: Group) -> gm.Roster:
    """The group's members, admins, name and description as the rule resolves them now."""
    return gm.resolve(membership(ctx, group))[0]


def _save(ctx: Context, group: Group, held: gm.Membership) -> None:
    ctx.tx.settings.put(_MEMBERSHIP_KEY + group.group_id.hex(), gm.encode_membership(held))


def _sync(ctx: Context, group: Group, before: gm.Roster, after: gm.Roster) -> Group:
    """Bring the store's members and name in line with ``after``; when anyone left, a new sender
    key handed to the remaining members only."""
    tx, me = ctx.tx, ctx.me.account.account_id
    if after.name != group.name:
        tx.groups.rename(group.group_id, after.name)
        group = replace(group, name=after.name)
    wanted = set()
    if me in after.members:
        for account_id in after.members - {me}:
            contact = tx.contacts.by_account(account_id)
            if contact is not None and not contact.removed:
                wanted.add(contact.contact_id)
    held = {m.contact_id for m in tx.groups.members(group.group_id)}
    for contact_id in held - wanted:
        tx.groups.remove_member(group.group_id, contact_id)
    for contact_id in sorted(wanted - held):
        tx.groups.add_member(group.group_id, contact_id)
    if me not in after.members:
        return group
    if before.members - after.members:
        fresh = uuid.UUID(bytes=ctx.random_id(), version=4)
        tx.groups.set_distribution(group.group_id, fresh)
        group = replace(group, distribution_id=fresh)
    distribute_sender_key(ctx, group)
    return group


def change_group(
    ctx: Context,
    group: Group,
    action: gm.Action,
    *,
    target: bytes = b"",
    name: str = "",
    description: str = "",
) -> Group:
    """Make one change to the group and tell every member we know in it (the removed one too).

    GroupChangeRefusedError if the rule would refuse it (we are no admin, say); ValueError if a
    field is out of its limits."""
    held = membership(ctx, group)
    me = ctx.me.account.account_id
    before = gm.resolve(held)[0]
    change = gm.propose(held, me, action, target=target, name=name, description=description)
    if isinstance(change, gm.Refusal):
        raise GroupChangeRefusedError(change)
    after_held = gm.receive(held, change)
    assert isinstance(after_held, gm.Membership)  # propose checked it
    _save(ctx, group, after_held)
    wire = c.GroupChange(group.group_id, change.version, action, target, name, description)
    for account_id in sorted(before.members - {me}):
        contact = ctx.tx.contacts.by_account(account_id)
        if contact is not None and not contact.removed:
            send_control(ctx, contact, wire)
    return _sync(ctx, group, before, gm.resolve(after_held)[0])


def receive_group_change(ctx: Context, sender: Contact, message: c.GroupChange) -> Outcome:
    """Apply a member's change under the rule (rejections: UNEXPECTED for a group we do not
    know or a refused change other than by who made it, WRONG_SENDER for a non-member's or a
    non-admin's; the detail is the :class:`~sotto.client.group_membership.Refusal`)."""
    group = ctx.tx.groups.get(GroupId(message.group_id))
    if group is None:
        raise reject(RejectReason.UNEXPECTED, "a change to a group we do not know")
    try:
        change = gm.Change(
            message.version,
            sender.account_id,
            message.action,
            message.target,
            message.name,
            message.description,
        )
    except ValueError:
        raise reject(RejectReason.MALFORMED, "a malformed group change") from None
    held = membership(ctx, group)
    after_held = gm.receive(held, change)
    if after_held is gm.Refusal.STALE:
        return Outcome()  # older than the state we joined with, which holds it
    if isinstance(after_held, gm.Refusal):
        who = after_held in (gm.Refusal.NOT_A_MEMBER, gm.Refusal.NOT_AN_ADMIN)
        raise reject(RejectReason.WRONG_SENDER if who else RejectReason.UNEXPECTED, after_held.value)
    _save(ctx, group, after_held)
    group = _sync(ctx, group, gm.resolve(held)[0], gm.resolve(after_held)[0])
    return Outcome(events=[GroupUpdated(group, sender, False)])


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
    """The group's state as we hold it, for a member who joins from it, with our sender key."""
    held = membership(ctx, group)
    state = gm.resolve(held)[0]
    me = ctx.me.account.account_id
    others = tuple(sorted(state.members - {me}))
    return c.GroupUpdate(
        group.group_id,
        state.name,
        (me, *others),
        distribution,
        tuple(sorted(state.admins)),
        state.description,
        held.version,
    )


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
    """A new group of us and ``contacts``, us its admin; each gets its state and our sender key."""
    c.encode(c.GroupUpdate(bytes(ID_LENGTH), name, ()))  # an oversized name is refused up front
    group = ctx.tx.groups.create(
        group_id=GroupId(ctx.random_id()),
        name=name,
        distribution_id=uuid.UUID(bytes=ctx.random_id(), version=4),
        created_ms=ctx.now_ms,
    )
    me = ctx.me.account.account_id
    everyone = frozenset({me, *(contact.account_id for contact in contacts)})
    _save(ctx, group, gm.Membership(gm.Roster(everyone, frozenset({me}), name), 0))
    for contact in contacts:
        ctx.tx.groups.add_member(group.group_id, contact.contact_id)
    distribute_sender_key(ctx, group)
    return group


def add_to_group(ctx: Context, group: Group, contact: Contact) -> bool:
    """Add a contact (admins only: GroupChangeRefusedError otherwise): the others learn of the
    change, the newcomer gets the group's state and our sender key.

    False if they were a member already.
    """
    if contact.account_id in roster(ctx, group).members:
        if not ctx.tx.groups.add_member(group.group_id, contact.contact_id):
            return False
        distribute_sender_key(ctx, group)
        return True
    change_group(ctx, group, gm.Action.ADD, target=contact.account_id)
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
    if ctx.me.account.account_id not in roster(ctx, group).members:
        raise ClientError("you are no longer in this group")
    distribute_sender_key(ctx, group)
    record, _ = _our_sender_key(ctx, group)
    record, skm = group_encrypt(record, plaintext, ctx.rng)
    tx.sender_keys.put(ctx.me.address, record)
    usmc = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.SENDER_KEY, ctx.me.certificate, skm, group_id=group.group_id
    )
    for contact, has_key in members(ctx, group.group_id):
        theirs = tx.their_mailboxes.get(contact.contact_id)
        trusted = tx.identities.get(contact.address.name)
        if theirs is None or trusted is None:
            continue
        if not has_key:  # no session to hand them our sender key on (a restore): later
            hold_group_message(ctx, contact, group.group_id, c.encode(content))
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
    """Join a group from a member's update, or take their sender key in one we know (its state
    changes only by :func:`receive_group_change`)."""
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
        everyone = frozenset(update.members)
        admins = frozenset(update.admins) or everyone  # from before admins: everyone runs it
        base = gm.Roster(everyone, admins, update.name, update.description)
        _save(ctx, group, gm.Membership(base, update.version))
        for account_id in update.members:
            contact = tx.contacts.by_account(account_id)
            if contact is not None and not contact.removed:
                tx.groups.add_member(group_id, contact.contact_id)
    elif not is_member(ctx, group_id, sender):
        raise reject(RejectReason.WRONG_SENDER, "only members update a group")
    if distribution is not None:
        known = tx.sender_keys.get(sender.address, distribution.distribution_id)
        tx.sender_keys.put(sender.address, process_distribution(known, distribution))
    return Outcome(events=[GroupUpdated(group, sender, joined)])
