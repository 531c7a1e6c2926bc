"""One's own history as a file to keep, read and search: JSON for programs, HTML for people.

:func:`collect` reads every conversation (or one) from the store in one transaction into a
:class:`HistoryExport`; :func:`to_json` and :func:`to_html` turn that into text. Both show what
the history shows: each message's id (as ``sotto history`` prints it), sender, time, text, state,
the message it replies to, edits, deletions for everyone, reactions, disappearing timers, and
for a file its name, size, type and whether (and when) we saved it. Never what opens a file:
its key, digest, relay id or relay address stay in the store.

The HTML is one self-contained page: every value written into it goes through
:func:`html.escape` (a text is text, never markup), and its Content-Security-Policy allows no
script, no fetch and no image, so even a browser that found markup in it would run nothing and
load nothing. Search is the browser's own find (Ctrl-F); each conversation has an anchor.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from typing import Any

from sotto.client.flows.attachments import StoredAttachment, stored
from sotto.client.flows.changes import timer_of
from sotto.store.interfaces import Transaction
from sotto.store.model import Account, Contact, Conversation, Group, Message, MessageState

FORMAT = "sotto-history"
VERSION = 1
SCAN_LIMIT = 1_000_000
"""Messages read per conversation (every one, in practice)."""


@dataclass(frozen=True, slots=True, repr=False)
class ConversationExport:
    kind: str
    """``contact`` or ``group``."""
    name: str
    peer_id: str
    """The contact's account id or the group's id, in hex."""
    members: tuple[str, ...]
    timer_s: int
    messages: tuple[dict[str, Any], ...]

    def __repr__(self) -> str:
        return f"ConversationExport(kind={self.kind}, messages={len(self.messages)})"


@dataclass(frozen=True, slots=True, repr=False)
class HistoryExport:
    account_name: str
    account_id: str
    exported_ms: int
    conversations: tuple[ConversationExport, ...]

    def __repr__(self) -> str:
        return f"HistoryExport(conversations={len(self.conversations)})"


def collect(
    tx: Transaction, account: Account, now_ms: int, only: Contact | Group | None = None
) -> HistoryExport:
    """Everything the store holds of our conversations (or of ``only``), messages oldest first."""
    contacts = tx.contacts.all()
    names = {c.contact_id: c.name for c in contacts}
    accounts = {c.account_id: c.name for c in contacts}
    accounts[account.account_id] = "you"
    wanted: list[Contact | Group] = [only] if only is not None else [*contacts, *tx.groups.all()]
    conversations = []
    for item in wanted:
        if isinstance(item, Group):
            where = Conversation.group(item.group_id)
            members = tuple(names.get(m.contact_id, "?") for m in tx.groups.members(item.group_id))
            kind, peer = "group", item.group_id.hex()
        else:
            where = Conversation.direct(item.contact_id)
            members, kind, peer = (item.name,), "contact", item.account_id.hex()
        messages = tx.messages.conversation(where, limit=SCAN_LIMIT)
        if not messages and only is None and isinstance(item, Contact) and item.removed:
            continue
        conversations.append(
            ConversationExport(
                kind,
                item.name,
                peer,
                members,
                timer_of(tx, where),
                tuple(_message(m, names, accounts, stored(tx, m)) for m in messages),
            )
        )
    return HistoryExport(account.display_name, account.account_id.hex(), now_ms, tuple(conversations))


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _message(
    m: Message, names: dict[Any, str], accounts: dict[bytes, str], file: StoredAttachment | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": m.message_id.hex(),
        "from": "you" if m.sender is None else names.get(m.sender, "?"),
        "sent_ms": m.sent_ms,
        "sent": _iso(m.sent_ms),
        "text": m.text,
    }
    if m.sender is None and m.timer_s is None:
        entry["state"] = m.state.name.lower()
    elif m.state is MessageState.READ:
        entry["state"] = "read"
    if m.timer_s is not None:
        entry["timer_set_s"] = m.timer_s
    if m.quote is not None:
        entry["reply_to"] = {
            "id": m.quote.message_id.hex(),
            "author": accounts.get(m.quote.author, m.quote.author.hex()),
        }
    if m.edited_ms is not None and not m.deleted:
        entry["edited"] = _iso(m.edited_ms)
    if m.deleted:
        entry["deleted"] = True
    if m.reactions:
        entry["reactions"] = [
            {"from": "you" if r.reactor is None else names.get(r.reactor, "?"), "emoji": r.emoji}
            for r in m.reactions
        ]
    if m.expires_ms is not None:
        entry["expires"] = _iso(m.expires_ms)
    if file is not None:
        entry["file"] = _file(m, file)
    return entry


def _file(m: Message, file: StoredAttachment) -> dict[str, Any]:
    """What the export says of a file: never its key, digest or where its blob is."""
    described: dict[str, Any] = {
        "name": file.file_name,
        "size": file.size,
        "content_type": file.pointer.content_type,
    }
    if m.sender is not None:
        described["saved"] = file.saved_ms is not None
        if file.saved_ms is not None:
            described["saved_at"] = _iso(file.saved_ms)
    return described


def to_json(export: HistoryExport) -> str:
    document = {
        "format": FORMAT,
        "version": VERSION,
        "exported": _iso(export.exported_ms),
        "account": {"name": export.account_name, "account_id": export.account_id},
        "conversations": [
            {
                "kind": c.kind,
                "name": c.name,
                "id": c.peer_id,
                "members": list(c.members),
                "disappearing_timer_s": c.timer_s,
                "messages": list(c.messages),
            }
            for c in export.conversations
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
"""No script, no fetch, no image, no frame: only the page's own style."""

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:2em}
.m{margin:.35em 0;padding:.3em .6em;border-radius:.5em;background:#f3f3f3;white-space:pre-wrap}
.m.you{background:#e3f0ff;margin-left:4em}.m.them{margin-right:4em}
.meta,.q,.r,.note,.id{color:#666;font-size:.85em}.q{border-left:3px solid #aaa;padding-left:.5em}
.del{font-style:italic;color:#888}.f{margin-bottom:.2em}.note{text-align:center;margin:.6em 0}
nav a{margin-right:1em}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def to_html(export: HistoryExport) -> str:
    """One page; every value escaped; no script can run in it (see the module docstring)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="und"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>Sotto history of {_e(export.account_name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Sotto history of {_e(export.account_name)}</h1>",
        f'<p class="meta">Exported {_e(_iso(export.exported_ms))}. '
        "Search with your browser's find (Ctrl-F or ⌘-F).</p>",
        "<nav>",
    ]
    for index, c in enumerate(export.conversations):
        label = c.name if c.kind == "contact" else f"#{c.name}"
        out.append(f'<a href="#c{index}">{_e(label)}</a>')
    out.append("</nav>")
    for index, c in enumerate(export.conversations):
        label = c.name if c.kind == "contact" else f"#{c.name}"
        out.append(f'<section id="c{index}"><h2>{_e(label)}</h2>')
        if c.kind == "group":
            out.append(f'<p class="meta">Members: you, {_e(", ".join(c.members))}</p>')
        if c.timer_s:
            out.append(f'<p class="meta">Disappearing messages: {_e(c.timer_s)} s</p>')
        by_id = {m["id"]: m for m in c.messages}
        for m in c.messages:
            out.append(_message_html(m, by_id))
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _message_html(m: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> str:
    who = m["from"]
    if "timer_set_s" in m:
        seconds = m["timer_set_s"]
        said = f"set disappearing messages to {seconds} s" if seconds else "turned disappearing messages off"
        return f'<p class="note">{_e(m["sent"])} · {_e(who)} {_e(said)}</p>'
    parts = [f'<div class="m {"you" if who == "you" else "them"}" id="m{_e(m["id"])}">']
    meta = f'<span class="id">{_e(m["id"][:8])}</span> {_e(m["sent"])} · <b>{_e(who)}</b>'
    if "state" in m:
        meta += f" · {_e(m['state'])}"
    if "edited" in m:
        meta += f" · edited {_e(m['edited'])}"
    if "expires" in m:
        meta += f" · disappears {_e(m['expires'])}"
    parts.append(f'<div class="meta">{meta}</div>')
    if "reply_to" in m:
        quoted = by_id.get(m["reply_to"]["id"])
        if quoted is None:
            said = "a message no longer here"
        elif quoted.get("deleted"):
            said = "a deleted message"
        else:
            first = quoted["text"].splitlines()[0] if quoted["text"] else ""
            said = f"{quoted['from']}: {first[:80]}"
        parts.append(f'<div class="q">replying to {_e(said)}</div>')
    if m.get("deleted"):
        parts.append('<div class="del">This message was deleted.</div>')
    else:
        if "file" in m:
            parts.append(_file_html(m["file"]))
        if m["text"] or "file" not in m:
            parts.append(f"<div>{_e(m['text'])}</div>")
    if "reactions" in m:
        shown = " · ".join(f"{r['emoji']} {r['from']}" for r in m["reactions"])
        parts.append(f'<div class="r">{_e(shown)}</div>')
    parts.append("</div>")
    return "".join(parts)


def _file_html(file: dict[str, Any]) -> str:
    name = file["name"] or "a file without a name"
    about = [f"{file['size']:,} bytes"]
    if file["content_type"]:
        about.append(file["content_type"])
    if "saved" in file:
        about.append(f"saved {file['saved_at']}" if file["saved"] else "not saved")
    return f'<div class="f">📎 <b>{_e(name)}</b> <span class="meta">{_e(" · ".join(about))}</span></div>'


__all__ = ["ConversationExport", "HistoryExport", "collect", "to_html", "to_json"]
