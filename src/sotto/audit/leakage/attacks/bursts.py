"""Mailbox creations and deletions that come in bursts belong to one person; an invite's
requests name both its people.

A client creates and deletes mailboxes in bursts: ``sotto rotate`` creates one per contact at
once, the retirement pass deletes old mailboxes and invite tokens and then asks for its key
counts, ``create_invite`` creates the invite's mailbox and updates the account's access tokens
back to back, and accepting an invite fetches the inviter's bundle, creates the acceptor's
mailbox for the inviter and updates the acceptor's access tokens.

The attack cuts the view's creations, deletions, account requests and bundle fetches into
bursts: runs of them no more than ``gap_s`` apart. In a burst with accounts ``A`` (the unit
shared among them): each account owns the burst's created and deleted mailboxes; a bundle of
account ``x`` fetched in it names ``x`` as a contact of each; and a mailbox created in the burst
of a bundle fetch is written by the account fetched (the acceptor made it for the inviter), so
its reader is a contact of that account even when no account request of the acceptor's is near.
"""

from __future__ import annotations

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
        accounts = sorted({r.account for r in burst if r.kind is Kind.ACCOUNT and r.account})
        fetched = sorted({r.account for r in burst if r.kind is Kind.BUNDLE and r.account} - set(accounts))
        created = [r.mailbox for r in burst if r.kind is Kind.CREATE and r.mailbox]
        deleted = [r.mailbox for r in burst if r.kind is Kind.DELETE and r.mailbox]
        for m in created:
            for x in fetched:
                out.add_write(x, m, 1.0 / len(fetched))
                out.add_link(pseudonym_of_mailbox(m), pseudonym_of_account(x), 1.0 / len(fetched))
        if not accounts:
            continue
        weight = 1.0 / len(accounts)
        for a in accounts:
            for m in created + deleted:
                out.add_owner(m, a, weight)
            for x in fetched:
                out.add_contact(a, x, weight)
    return out


def attack(records: View, *, gap_s: float = GAP_S) -> Ranking:
    """Each account's likeliest contacts from bursts alone."""
    return contacts(evidence(records, gap_s=gap_s))


__all__ = ["GAP_S", "attack", "bursts", "evidence"]
