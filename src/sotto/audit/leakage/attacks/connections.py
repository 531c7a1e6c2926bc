"""Requests that share a connection, or a source address, come from one device.

Keep-alive reuse puts one client's account requests, mailbox creations, bundle fetches and
sends on one connection (``conn`` in the view); every request carries its source address,
which one device (or one household) keeps for hours. Grouping the view's requests by either
key joins the accounts the group authenticates (or registers: the answer names the new
account) with the mailboxes it reads and writes: each account of a group owns the mailboxes the
group reads, creates or deletes, and writes to those it sends to, with the unit of evidence
shared among the group's accounts (a household's address speaks for several). A bundle fetch
in a group names a contact of its accounts.
"""

from __future__ import annotations

import enum
from collections import defaultdict

from sotto.audit.leakage.attacks.evidence import Evidence, contacts
from sotto.audit.leakage.attacks.view import OWNS, Kind, Ranking, Request, View, requests

_NAMES_ITS_ACCOUNT = frozenset({Kind.ACCOUNT, Kind.REGISTER})
"""Requests that name the account of whoever makes them (a registration answers with it)."""


class Key(enum.Enum):
    CONNECTION = "connection"
    ADDRESS = "address"


def evidence(records: View, *, key: Key) -> Evidence:
    """The evidence of every group of requests sharing ``key`` (module docstring)."""
    groups: dict[object, list[Request]] = defaultdict(list)
    for r in requests(records):
        group = r.conn if key is Key.CONNECTION else r.addr
        if group is not None:
            groups[group].append(r)
    out = Evidence()
    for reqs in groups.values():
        accounts = sorted({r.account for r in reqs if r.kind in _NAMES_ITS_ACCOUNT and r.account})
        if not accounts:
            continue
        weight = 1.0 / len(accounts)
        owned = {r.mailbox for r in reqs if r.kind in OWNS and r.mailbox}
        written = {r.mailbox for r in reqs if r.kind is Kind.SEND and r.mailbox}
        fetched = {r.account for r in reqs if r.kind is Kind.BUNDLE and r.account}
        for account in accounts:
            for m in owned:
                out.add_owner(m, account, weight)
            for m in written - owned:
                out.add_write(account, m, weight)
            for other in fetched - set(accounts):
                out.add_contact(account, other, weight)
    return out


def attack(records: View, *, key: Key) -> Ranking:
    """Each account's likeliest contacts from requests sharing ``key``."""
    return contacts(evidence(records, key=key))


__all__ = ["Key", "attack", "evidence"]
