"""Changes to messages already sent: edits, deletion for everyone, reactions, disappearing timers.

Each is an end-to-end content message (:mod:`sotto.client.content`) naming its message by the
id both sides store, sent like a text: 1:1 on the session, in a group under the sender key. The
rules are Signal's:

* **Edit** and **delete for everyone**: only one's own messages, and only within
  :data:`CHANGE_WINDOW_MS` (24 hours) of sending. The sender is refused with a
  :class:`~sotto.errors.ClientError` that says why; a receiver checks the same (the change's
  time against the message's, both from inside the encryption, since the relay's time is not
  ours to see) and ignores a change that fails, reporting
  :class:`~sotto.client.events.MessageChangeIgnored` without a reason.
* **Reactions**: one per person per message; a later one replaces an earlier, an empty one
  removes it. Not on a message deleted for everyone.
* **Disappearing timer**: set by either side for the whole conversation (kept in the store's
  settings); both keep a notice of it in the history. Every text written while it is on carries
  it, and both stores delete the text that long after they stored it
  (:meth:`~sotto.store.interfaces.MessageRepository.expire`).
"""

from __future__ import annotations

from sotto.client import content as c
from sotto.client.events import (
    Event,
    MessageChangeIgnored,
    MessageDeleted,
    MessageEdited,
    ReactionChanged,
    TimerChanged,
)
from sotto.client.flows.context import Context, Outcome
from sotto.errors import ClientError
from sotto.store.interfaces import Transaction
from sotto.store.model import (
    Contact,
    Conversation,
    Direction,
    Group,
    Message,
    MessageId,
    MessageState,
    Quote,
)

CHANGE_WINDOW_MS = 24 * 3_600_000
"""How long after sending a message may be edited or deleted for everyone (Signal's limit)."""

Change = c.Edit | c.DeleteForEveryone | c.Reaction | c.Timer


# --------------------------------------------------------------------------- timers
def timer_key(where: Conversation) -> str:
    if where.group_id is not None:
        return f"timer:g:{where.group_id.hex()}"
    return f"timer:c:{where.contact_id}"


def timer_of(tx: Transaction, where: Conversation) -> int:
    """The conversation's disappearing timer in seconds (0: off)."""
    found = tx.settings.get(timer_key(where))
    return 0 if found is None else int.from_bytes(found)


def _set_timer(tx: Transaction, where: Conversation, seconds: int) -> None:
    if seconds:
        tx.settings.put(timer_key(where), seconds.to_bytes(4))
    else:
        tx.settings.delete(timer_key(where))


def expires_at(now_ms: int, seconds: int) -> int | None:
    return now_ms + 1000 * seconds if seconds else None


def set_timer(ctx: Context, where: Conversation, seconds: int) -> tuple[Message, c.Timer]:
    """Set our side's timer, keep the notice; the content to send to the conversation."""
    notice = c.Timer(ctx.random_id(), ctx.now_ms, seconds)
    c.encode(notice)  # an out-of-range timer is refused before anything is stored
    _set_timer(ctx.tx, where, seconds)
    row = ctx.tx.messages.add(
        message_id=MessageId(notice.message_id),
        conversation=where,
        direction=Direction.OUTGOING,
        sender=None,
        text="",
        sent_ms=ctx.now_ms,
        stored_ms=ctx.now_ms,
        state=MessageState.SENT,
        timer_s=seconds,
    )
    return row, notice


# --------------------------------------------------------------------------- ours, before sending
def quote_for(ctx: Context, where: Conversation, message_id: bytes) -> Quote:
    """The quote of a message of this conversation (ours or a contact's) for a reply to it."""
    target = _in_conversation(ctx.tx, where, message_id)
    if target is None or target.deleted or target.timer_s is not None:
        raise ClientError("no such message in this conversation to reply to")
    return Quote(target.message_id, _author(ctx, target))


def edit(ctx: Context, where: Conversation, message_id: bytes, text: str) -> c.Edit:
    """Edit one of our messages (stored now); the content to send."""
    change = c.Edit(message_id, ctx.now_ms, text)
    c.encode(change)  # an oversized text is refused before anything is stored
    target = _ours_to_change(ctx, where, message_id, "edit")
    ctx.tx.messages.edit(target.row_id, text, ctx.now_ms)
    return change


def delete_for_everyone(ctx: Context, where: Conversation, message_id: bytes) -> c.DeleteForEveryone:
    """Delete one of our messages for everyone (its text goes from our store now)."""
    target = _ours_to_change(ctx, where, message_id, "delete for everyone")
    ctx.tx.messages.delete_for_everyone(target.row_id, ctx.now_ms)
    return c.DeleteForEveryone(message_id, ctx.now_ms)


def react(ctx: Context, where: Conversation, message_id: bytes, emoji: str) -> c.Reaction:
    """Our one reaction to a message of the conversation ("" takes it back)."""
    target = _in_conversation(ctx.tx, where, message_id)
    if target is None or target.timer_s is not None:
        raise ClientError("no such message in this conversation")
    if target.deleted:
        raise ClientError("that message was deleted")
    change = c.Reaction(message_id, _author(ctx, target), emoji, ctx.now_ms)
    c.encode(change)  # refuses what is not one short emoji
    ctx.tx.messages.react(target.row_id, None, emoji, ctx.now_ms)
    return change


def _ours_to_change(ctx: Context, where: Conversation, message_id: bytes, what: str) -> Message:
    target = ctx.tx.messages.find(None, MessageId(message_id))
    if target is None or target.conversation != where or target.timer_s is not None:
        mine = _in_conversation(ctx.tx, where, message_id) is not None
        raise ClientError(
            f"you can {what} only your own messages" if mine else "no such message of yours here"
        )
    if target.deleted:
        raise ClientError("that message was deleted")
    if ctx.now_ms - target.sent_ms > CHANGE_WINDOW_MS:
        raise ClientError(f"you can {what} a message only within 24 hours of sending it")
    return target


def _in_conversation(tx: Transaction, where: Conversation, message_id: bytes) -> Message | None:
    """The message of this conversation with this id, ours or any member's."""
    wanted = MessageId(bytes(message_id))
    ours = tx.messages.find(None, wanted)
    if ours is not None and ours.conversation == where:
        return ours
    if where.contact_id is not None:
        senders = [where.contact_id]
    else:
        assert where.group_id is not None
        senders = [m.contact_id for m in tx.groups.members(where.group_id)]
    for sender in senders:
        found = tx.messages.find(sender, wanted)
        if found is not None and found.conversation == where:
            return found
    return None


def _author(ctx: Context, message: Message) -> bytes:
    if message.sender is None:
        return ctx.me.account.account_id
    contact = ctx.tx.contacts.get(message.sender)
    if contact is None:
        raise ClientError("the author of that message is no longer a contact")
    return contact.account_id


# --------------------------------------------------------------------------- theirs, received
def quote_of(text: c.Text | c.GroupText) -> Quote | None:
    """The quote a received text carries, as stored (whether or not we hold the quoted message)."""
    if text.quote is None:
        return None
    return Quote(MessageId(text.quote.message_id), text.quote.author)


def apply(ctx: Context, sender: Contact, where: Conversation, group: Group | None, change: Change) -> Outcome:
    """Apply a change ``sender`` sent to conversation ``where`` (a group's when ``group``)."""
    tx = ctx.tx
    ignored = Outcome(events=[MessageChangeIgnored(sender, group)])
    match change:
        case c.Timer(message_id, sent_ms, seconds):
            if tx.messages.find(sender.contact_id, MessageId(message_id)) is not None:
                return Outcome()  # the same notice again
            _set_timer(tx, where, seconds)
            notice = tx.messages.add(
                message_id=MessageId(message_id),
                conversation=where,
                direction=Direction.INCOMING,
                sender=sender.contact_id,
                text="",
                sent_ms=sent_ms,
                stored_ms=ctx.now_ms,
                state=MessageState.RECEIVED,
                timer_s=seconds,
            )
            tx.messages.mark_reported([notice.row_id])  # the event below reports it, not as a text
            return Outcome(events=[TimerChanged(sender, seconds, group)])
        case c.Reaction(message_id, author, emoji, sent_ms):
            target = _target_by_author(ctx, author, message_id)
            if target is None or target.conversation != where or target.deleted or target.timer_s is not None:
                return ignored
            if tx.messages.react(target.row_id, sender.contact_id, emoji, sent_ms):
                return Outcome(events=[ReactionChanged(sender, target.message_id, emoji, group)])
            return Outcome()
        case c.Edit(message_id, sent_ms, _) | c.DeleteForEveryone(message_id, sent_ms):
            target = tx.messages.find(sender.contact_id, MessageId(message_id))
            if target is not None and target.deleted and isinstance(change, c.DeleteForEveryone):
                return Outcome()  # deleted already (the same deletion sent again)
            if (
                target is None
                or target.conversation != where
                or target.deleted
                or target.timer_s is not None
                or not 0 <= sent_ms - target.sent_ms <= CHANGE_WINDOW_MS
            ):
                return ignored
            events: list[Event]
            if isinstance(change, c.Edit):
                if target.edited_ms is not None and target.edited_ms >= sent_ms:
                    return Outcome()  # a later edit is held already
                tx.messages.edit(target.row_id, change.text, sent_ms)
                events = [MessageEdited(sender, target.message_id, change.text, group)]
            else:
                tx.messages.delete_for_everyone(target.row_id, sent_ms)
                events = [MessageDeleted(sender, target.message_id, group)]
            return Outcome(events=events)
    raise TypeError(f"not a change: {type(change).__name__}")


def _target_by_author(ctx: Context, author: bytes, message_id: bytes) -> Message | None:
    wanted = MessageId(bytes(message_id))
    if author == ctx.me.account.account_id:
        return ctx.tx.messages.find(None, wanted)
    contact = ctx.tx.contacts.by_account(author)
    return None if contact is None else ctx.tx.messages.find(contact.contact_id, wanted)


__all__ = [
    "CHANGE_WINDOW_MS",
    "Change",
    "apply",
    "delete_for_everyone",
    "edit",
    "expires_at",
    "quote_for",
    "quote_of",
    "react",
    "set_timer",
    "timer_of",
]
