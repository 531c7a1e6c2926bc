"""The history export: JSON that reads back to what the store holds, and HTML in which hostile
texts and names stay text (no markup, no script, nothing loaded)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from sotto.client import history_export
from sotto.client.flows import changes, sending
from sotto.client.flows.context import Context
from sotto.store.model import Conversation, MessageId
from tests.client.peers import Person, connect, people

HOSTILE = [
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "</div></section><iframe src='https://evil.example'></iframe>",
    "&lt;already escaped&gt; & ampersands",
    "<style>body{display:none}</style>",
    "line one\nline two <b>bold?</b>",
    "ünïcödé · 日本語 · 🎉",
]
ALLOWED_TAGS = set(
    [
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "p",
        "nav",
        "a",
        "section",
        "div",
        "span",
        "b",
    ]
)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs
        self.style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self.style = False

    def handle_data(self, data: str) -> None:
        if not self.style:
            self.text.append(data)


def _hostile_pair() -> tuple[Person, Person]:
    _, (alice, bob) = people("<b>Alice</b>", "Bob", seed=23)
    bob_c, alice_c = connect(alice, bob)
    where = Conversation.direct(bob_c.contact_id)
    ids = []
    for text in HOSTILE:

        def send(ctx: Context, text: str = text) -> MessageId:
            return sending.send_text(ctx, bob_c, text)

        ids.append(alice.act(send))
    alice.act(lambda ctx: sending.send_control(ctx, bob_c, changes.edit(ctx, where, ids[0], HOSTILE[1])))
    alice.act(lambda ctx: sending.send_control(ctx, bob_c, changes.set_timer(ctx, where, 3600)[1]))
    alice.flush()
    bob.drain()
    bob.act(lambda ctx: sending.send_text(ctx, alice_c, "<i>reply</i>", ids[2]))
    bob.act(
        lambda ctx: sending.send_control(
            ctx, alice_c, changes.react(ctx, Conversation.direct(alice_c.contact_id), ids[3], "<script>")
        )
    )
    bob.flush()
    alice.drain()
    return alice, bob


def test_html_export_keeps_hostile_text_as_text() -> None:
    alice, _ = _hostile_pair()
    assert alice.me is not None
    found = alice.read(lambda tx: history_export.collect(tx, alice.me.account, alice.now_ms))  # type: ignore[union-attr]
    page = history_export.to_html(found)

    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    assert set(parsed.tags) <= ALLOWED_TAGS
    assert not [name for name, _ in parsed.attributes if name.startswith("on") or name == "src"]
    assert "<script" not in page.lower() and "<iframe" not in page.lower() and "<img" not in page.lower()
    text = "".join(parsed.text)
    for hostile in HOSTILE[1:]:  # the first was edited into the second
        assert hostile in text
    assert "<i>reply</i>" in text and "replying to you: </div></section><iframe" in text
    assert "<script> Bob" in text  # the reaction, as text
    assert "set disappearing messages to 3600 s" in text
    policy = next(v for k, v in parsed.attributes if k == "content" and v and "default-src" in v)
    assert policy == "default-src 'none'; style-src 'unsafe-inline'"


def test_json_export_reads_back_to_the_store() -> None:
    _, bob = _hostile_pair()
    assert bob.me is not None
    found = bob.read(lambda tx: history_export.collect(tx, bob.me.account, bob.now_ms))  # type: ignore[union-attr]
    document = json.loads(history_export.to_json(found))
    assert document["format"] == "sotto-history" and document["version"] == 1
    (conversation,) = document["conversations"]
    assert conversation["kind"] == "contact" and conversation["name"] == "<b>Alice</b>"
    assert conversation["disappearing_timer_s"] == 3600
    messages = conversation["messages"]
    texts = [m["text"] for m in messages]
    assert texts == [HOSTILE[1], *HOSTILE[1:], "", "<i>reply</i>"]
    assert "edited" in messages[0] and messages[0]["from"] == "<b>Alice</b>"
    assert messages[len(HOSTILE)]["timer_set_s"] == 3600
    reply = messages[-1]
    assert reply["from"] == "you" and reply["reply_to"] == {"id": messages[2]["id"], "author": "<b>Alice</b>"}
    assert reply["state"] in ("queued", "sent") and "expires" in reply
    assert messages[3]["reactions"] == [{"from": "you", "emoji": "<script>"}]
    where = Conversation.direct(bob.contact("<b>Alice</b>").contact_id)
    held = bob.read(lambda tx: tx.messages.conversation(where, limit=100))
    assert [m["id"] for m in messages] == [m.message_id.hex() for m in held]
