"""A negative control: the same view with its ids dealt out again between people.

:func:`shuffle_ids` maps every account id to another account id of the view, every mailbox id
to another mailbox id and every source address to another address, each by one random
permutation, and rewrites every record with it (its id fields, its path, its address);
credential header values are blanked, so no id survives anywhere. Each attack reads the result
as consistently as the original (the same structure, under other names), but the names now
point at other people: scored against the unchanged truth, every attack must fall to chance.
An attack that does not is reading the truth, not the view.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence

from sotto.server.observer import HttpExchange, ViewRecord, WsClose, WsFrame, WsOpen

_CREDENTIALS = frozenset(
    {"authorization", "sotto-mailbox-auth", "sotto-delivery-token", "sotto-access-token"}
)
_PATH = re.compile(r"^(/v1/(?:mailboxes|accounts)/)(?!me/|me$)([^/]+)(.*)$")
"""A path that names a mailbox or an account (``/v1/accounts/me/…`` names none)."""


def shuffle_ids(records: Sequence[ViewRecord], *, seed: int) -> list[ViewRecord]:
    """The view with accounts, mailboxes and addresses permuted (module docstring)."""
    return list(shuffled(records, seed=seed))


def shuffled(records: Sequence[ViewRecord], *, seed: int) -> Iterator[ViewRecord]:
    """The records of :func:`shuffle_ids`, one at a time: the ids are read from ``records``
    when the first is asked for, then each record is rewritten as it is asked for, so the
    shuffled view need not be held beside the original."""
    accounts: dict[str, None] = {}
    mailboxes: dict[str, None] = {}
    addresses: dict[str, None] = {}
    for r in records:
        if r.addr is not None:
            addresses[r.addr] = None
        if isinstance(r, HttpExchange):
            accounts.update(dict.fromkeys(r.accounts))
            mailboxes.update(dict.fromkeys(r.mailboxes))
            match = _PATH.match(r.path)
            if match:
                (mailboxes if match.group(1) == "/v1/mailboxes/" else accounts)[match.group(2)] = None
        elif isinstance(r, WsFrame):
            mailboxes.update(dict.fromkeys(r.mailboxes))
    rng = random.Random(seed)
    account_map = _permutation(list(accounts), rng)
    mailbox_map = _permutation(list(mailboxes), rng)
    address_map = _permutation(list(addresses), rng)

    def path(p: str) -> str:
        match = _PATH.match(p)
        if not match:
            return p
        table = mailbox_map if match.group(1) == "/v1/mailboxes/" else account_map
        return match.group(1) + table.get(match.group(2), match.group(2)) + match.group(3)

    # Each record made field by field: a quarter less CPU than dataclasses.replace.
    for r in records:
        addr = address_map.get(r.addr) if r.addr is not None else None
        if isinstance(r, HttpExchange):
            yield HttpExchange(
                r.t_us,
                r.conn,
                addr,
                r.port,
                r.method,
                path(r.path),
                r.query,
                _blanked(r.headers),
                r.request_bytes,
                r.status,
                r.response_bytes,
                r.duration_us,
                tuple(mailbox_map[m] for m in r.mailboxes),
                r.messages,
                tuple(account_map[a] for a in r.accounts),
                r.handed,
                r.more,
            )
        elif isinstance(r, WsFrame):
            named = tuple(mailbox_map[m] for m in r.mailboxes)
            yield WsFrame(
                r.t_us, r.conn, addr, r.port, r.direction, r.opcode, r.type, r.size, named, r.messages
            )
        elif isinstance(r, WsOpen):
            yield WsOpen(r.t_us, r.conn, addr, r.port, r.path, r.query, _blanked(r.headers))
        else:
            assert isinstance(r, WsClose)
            yield WsClose(r.t_us, r.conn, addr, r.port, r.direction, r.code)


def _permutation(items: list[str], rng: random.Random) -> dict[str, str]:
    shuffled = list(items)
    rng.shuffle(shuffled)
    return dict(zip(items, shuffled, strict=True))


def _blanked(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((name, "" if name in _CREDENTIALS else value) for name, value in headers)


__all__ = ["shuffle_ids", "shuffled"]
