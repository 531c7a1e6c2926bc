"""The operator's view as the attacks read it: each record made one :class:`Request` that says
what it did to which mailbox or account.

Pure: records in (:mod:`sotto.server.observer`), requests out, nothing else read. Ids are read
from the records' id fields and paths only (never from credential headers, whose *presence* is
what counts): so a view whose ids were permuted (:mod:`.shuffle`) is read as consistently as the
original.

Kinds (:class:`Kind`), in the words of ``docs/operator-view.md``:

- ``POLL`` (``POST /v1/mailboxes/{m}/poll``), ``SUBSCRIBE`` (a WebSocket ``subscribe`` frame, one
  request per mailbox it names) and ``ACK`` (an ``ack`` frame naming the mailbox): the client
  reads mailbox ``m``, so it holds its key: the owner's device;
- ``SEND`` (``POST /v1/mailboxes/{m}/messages`` or a ``send`` frame): someone writes to ``m``;
- ``PUSH``: the relay hands an envelope of ``m`` out (an ``envelope`` frame, or each envelope id
  a poll answers with for the first time);
- ``CREATE`` (``POST /v1/mailboxes``) and ``DELETE`` (``DELETE /v1/mailboxes/{m}``): the owner
  makes or retires a mailbox;
- ``ACCOUNT``: any request with device credentials (``Authorization``): ``account`` is the
  account they name;
- ``BUNDLE`` (``GET /v1/accounts/{a}/bundle``): someone fetches account ``a``'s keys, which an
  invite or a new contact does; ``REGISTER`` (``POST /v1/accounts``): ``account`` is the new one;
- ``CLOSE``: a WebSocket ended; ``OTHER``: anything else.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sotto.server.observer import HttpExchange, ViewRecord, WsClose, WsFrame, WsOpen


class Kind(enum.Enum):
    POLL = "poll"
    SUBSCRIBE = "subscribe"
    ACK = "ack"
    SEND = "send"
    PUSH = "push"
    CREATE = "create"
    DELETE = "delete"
    ACCOUNT = "account"
    BUNDLE = "bundle"
    REGISTER = "register"
    CLOSE = "close"
    OTHER = "other"


READS = frozenset({Kind.POLL, Kind.SUBSCRIBE, Kind.ACK})
"""Requests only the mailbox's owner can make (they prove its key)."""
OWNS = READS | {Kind.CREATE, Kind.DELETE}
"""Requests that tie a mailbox to the device that makes them."""
MAILBOX = OWNS | {Kind.SEND}
"""Requests a device makes on a mailbox (its own or a contact's)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One thing a client did, as the view shows it. Times in µs on the relay's clock."""

    t_us: int
    end_us: int
    """When the answer was done (HTTP); ``t_us`` for frames."""
    conn: int
    addr: str | None
    port: int | None
    kind: Kind
    mailbox: str | None = None
    account: str | None = None
    size: int = 0
    """Body bytes the client sent (HTTP) or the frame's size."""
    handed: int = 0
    """A poll's answer: the envelopes it handed out (0 for anything else)."""
    more: bool | None = None
    """A poll's answer: its ``more`` flag (None for anything else)."""
    reply: int = 0
    """Body bytes of the answer (HTTP)."""


def pseudonym_of_account(account: str) -> str:
    """The name an attack gives an account in its answers (:data:`Ranking`)."""
    return "account:" + account


def pseudonym_of_mailbox(mailbox: str) -> str:
    """The name an attack gives a mailbox's owner in its answers."""
    return "mailbox:" + mailbox


Ranking = dict[str, list[tuple[str, float]]]
"""An attack's contact answer: pseudonym → the pseudonyms whose owners it takes for the owner's
contacts, best first, with its score. A pseudonym is ``account:<id>`` (that account's person) or
``mailbox:<id>`` (the person who reads that mailbox)."""


def ranked(scores: dict[str, dict[str, float]]) -> Ranking:
    """Scores (pseudonym → candidate → score) as a :data:`Ranking`: positive scores only, best
    first, ties in the order of the candidates' names (so the answer is deterministic)."""
    out: Ranking = {}
    for key, candidates in scores.items():
        kept = sorted(
            ((c, s) for c, s in candidates.items() if s > 0 and c != key), key=lambda x: (-x[1], x[0])
        )
        if kept:
            out[key] = kept
    return out


class Requests(list[Request]):
    """The requests of a view, in order of time: what :func:`requests` returns. Every attack
    takes one in place of the records, so a report reads the view once for all of them."""


View = Sequence[ViewRecord] | Requests
"""What an attack reads: the view's records, or the requests already read from them."""


def requests(records: View | Iterable[ViewRecord]) -> Requests:
    """Every record as requests, in order of time (stable); a :class:`Requests` is returned
    as it is. ``records`` is read once, in order, so it may be a stream (a file read a line at
    a time, :func:`~sotto.audit.leakage.compact.read_compact`) that is never held whole."""
    if isinstance(records, Requests):
        return records
    out = Requests()
    seen_envelopes: set[str] = set()
    for record in records:
        if isinstance(record, HttpExchange):
            out.extend(_http(record, seen_envelopes))
        elif isinstance(record, WsFrame):
            out.extend(_frame(record))
        elif isinstance(record, WsClose):
            out.append(Request(record.t_us, record.t_us, record.conn, record.addr, record.port, Kind.CLOSE))
        elif isinstance(record, WsOpen) and any(name == "authorization" for name, _ in record.headers):
            out.append(Request(record.t_us, record.t_us, record.conn, record.addr, record.port, Kind.ACCOUNT))
    out.sort(key=lambda r: r.t_us)
    return out


def _http(r: HttpExchange, seen_envelopes: set[str]) -> list[Request]:
    end = r.t_us + r.duration_us

    def req(kind: Kind, mailbox: str | None = None, account: str | None = None) -> Request:
        return Request(r.t_us, end, r.conn, r.addr, r.port, kind, mailbox, account, r.request_bytes)

    # /v1/mailboxes/{m}[/tail] or /v1/accounts/{a}[/tail], split rather than matched: the view
    # of a week of a thousand people is tens of millions of records.
    parts = r.path.split("/")
    section = parts[2] if len(parts) > 3 and parts[1] == "v1" else ""
    name = parts[3] if section else ""
    tail = parts[4] if len(parts) == 5 else None
    shape_ok = section and name and len(parts) <= 5
    out: list[Request] = []
    if shape_ok and section == "mailboxes":
        if r.method == "POST" and tail == "poll":
            out.append(
                Request(
                    r.t_us,
                    end,
                    r.conn,
                    r.addr,
                    r.port,
                    Kind.POLL,
                    name,
                    None,
                    r.request_bytes,
                    r.handed,
                    r.more,
                    r.response_bytes,
                )
            )
            if r.status == 200:
                # The ids a poll acknowledges were handed out before: only unseen ones are new.
                fresh = [m for m in r.messages if m not in seen_envelopes]
                seen_envelopes.update(fresh)
                out.extend(req(Kind.PUSH, name) for _ in fresh)
        elif r.method == "POST" and tail == "messages":
            out.append(req(Kind.SEND, name))
        elif r.method == "DELETE" and tail is None:
            out.append(req(Kind.DELETE, name))
        else:
            out.append(req(Kind.OTHER, name))
    elif r.method == "POST" and r.path == "/v1/mailboxes":
        out.extend(req(Kind.CREATE, m) for m in r.mailboxes[:1])
    elif shape_ok and section == "accounts" and name != "me" and tail == "bundle" and r.method == "GET":
        out.append(req(Kind.BUNDLE, account=name))
    elif r.method == "POST" and r.path == "/v1/accounts":
        out.extend(req(Kind.REGISTER, account=a) for a in r.accounts[:1])
    if any(header == "authorization" for header, _ in r.headers):
        named = name if shape_ok and section == "accounts" and name != "me" else None
        mine = [a for a in r.accounts if a != named]
        out.append(req(Kind.ACCOUNT, account=mine[0] if mine else None))
    return out or [req(Kind.OTHER)]


def _frame(f: WsFrame) -> list[Request]:
    def req(kind: Kind, mailbox: str | None) -> Request:
        return Request(f.t_us, f.t_us, f.conn, f.addr, f.port, kind, mailbox, size=f.size)

    if f.direction == "in" and f.type == "subscribe":
        return [req(Kind.SUBSCRIBE, m) for m in f.mailboxes]
    if f.direction == "in" and f.type == "ack":
        return [req(Kind.ACK, m) for m in f.mailboxes]
    if f.direction == "in" and f.type == "send":
        return [req(Kind.SEND, m) for m in f.mailboxes[:1]]
    if f.direction == "out" and f.type == "envelope":
        return [req(Kind.PUSH, m) for m in f.mailboxes[:1]]
    return []


def of_kind(reqs: Sequence[Request], *kinds: Kind) -> list[Request]:
    wanted = set(kinds)
    return [r for r in reqs if r.kind in wanted]


__all__ = [
    "MAILBOX",
    "OWNS",
    "READS",
    "Kind",
    "Ranking",
    "Request",
    "Requests",
    "View",
    "of_kind",
    "pseudonym_of_account",
    "pseudonym_of_mailbox",
    "ranked",
    "requests",
]
