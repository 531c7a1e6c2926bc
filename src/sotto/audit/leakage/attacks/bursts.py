"""Mailbox creations and deletions that come in bursts belong to one person; an invite's
requests name both its people.

A client creates and deletes mailboxes in bursts: ``sotto rotate`` creates one per contact at
once, the retirement pass deletes old mailboxes and invite tokens and then asks for its key
counts, ``create_invite`` creates the invite's mailbox and updates the account's access tokens
back to back, and accepting an invite fetches the inviter's bundle, creates the acceptor's
mailbox for the inviter and updates the acceptor's access tokens.

The attack cuts the view's creations, deletions, account requests and bundle fetches into
bursts: runs of them no more than ``gap_s`` apart. In a burst, a created or deleted mailbox
belongs to the accounts authenticated on its own connection (a keep-alive client's), else to
the burst's accounts (the unit shared among them), but never to an account whose bundle was
fetched in the burst (nobody fetches their own keys); a bundle of account ``x`` names ``x`` as a
contact of the fetcher (its connection's accounts, else the burst's others); and a mailbox
created in the burst of a bundle fetch is written by the account fetched (the acceptor made it
for the inviter), so its reader is a contact of that account even when no account request of
the acceptor's is near. A burst of more than :data:`MAX_ACCOUNTS` accounts is several clients
colliding and names nobody.
"""

from __future__ import annotations

from collections import defaultdict

from sotto.audit.leakage.attacks.evidence import Evidence, contacts
from sotto.audit.leakage.attacks.view import (
    Kind,
    Ranking,
    Request,
    View,
    pseudonym_of_account,
    pseudonym_of_mailbox,
    requests,
)

GAP_S = 1.0
"""Requests of one burst are at most this far apart (seconds)."""
MAX_ACCOUNTS = 2
"""A burst that authenticates more accounts than this is several clients' requests colliding
(many people registering at once, a busy relay), not one client's: it names nobody."""
_BURSTY = frozenset({Kind.CREATE, Kind.DELETE, Kind.ACCOUNT, Kind.BUNDLE})


def bursts(records: View, *, gap_s: float = GAP_S) -> list[list[Request]]:
    """The creations, deletions, account requests and bundle fetches, cut into bursts."""
    gap_us = round(gap_s * 1_000_000)
    out: list[list[Request]] = []
    last_end = 0
    for r in requests(records):
        if r.kind not in _BURSTY:
            continue
        if not out or r.t_us - last_end > gap_us:
            out.append([])
            last_end = r.end_us
        out[-1].append(r)
        last_end = max(last_end, r.end_us)
    return out


def evidence(records: View, *, gap_s: float = GAP_S) -> Evidence:
    """The evidence of every burst (module docstring)."""
    out = Evidence()
    for burst in bursts(records, gap_s=gap_s):
        _burst(out, burst)
    return out


def _burst(out: Evidence, burst: list[Request]) -> None:
    accounts: set[str] = set()
    on_conn: dict[int, set[str]] = defaultdict(set)
    fetches: list[Request] = []
    for r in burst:
        if r.kind is Kind.ACCOUNT and r.account:
            accounts.add(r.account)
            on_conn[r.conn].add(r.account)
        elif r.kind is Kind.BUNDLE and r.account:
            fetches.append(r)
    fetched = {r.account for r in fetches if r.account}
    for r in burst:
        if r.kind not in (Kind.CREATE, Kind.DELETE) or r.mailbox is None:
            continue
        # A mailbox's owner: the accounts on its own connection (a keep-alive client's), else
        # the burst's, but never an account whose bundle was fetched beside it: a client does
        # not fetch its own keys, so that mailbox is the fetcher's.
        owners = on_conn.get(r.conn) or (accounts - fetched)
        if 0 < len(owners) <= MAX_ACCOUNTS:
            for a in sorted(owners):
                out.add_owner(r.mailbox, a, 1.0 / len(owners))
        if r.kind is Kind.CREATE:
            writers = sorted(fetched - owners)
            for x in writers:  # the fetcher made it for the account it fetched
                out.add_write(x, r.mailbox, 1.0 / len(writers))
                out.add_link(pseudonym_of_mailbox(r.mailbox), pseudonym_of_account(x), 1.0 / len(writers))
    for r in fetches:
        assert r.account is not None
        fetchers = (on_conn.get(r.conn) or accounts) - {r.account}
        if 0 < len(fetchers) <= MAX_ACCOUNTS:
            for a in sorted(fetchers):
                out.add_contact(a, r.account, 1.0 / len(fetchers))


def attack(records: View, *, gap_s: float = GAP_S) -> Ranking:
    """Each account's likeliest contacts from bursts alone."""
    return contacts(evidence(records, gap_s=gap_s))


__all__ = ["GAP_S", "MAX_ACCOUNTS", "attack", "bursts", "evidence"]
