"""What the account-naming attacks conclude, and how it becomes a contact answer.

Three kinds of weighted evidence, each read from the view alone:

- ``owner``: mailbox → account → weight, "this account's device reads this mailbox";
- ``writes``: account → mailbox → weight, "this account's device writes to this mailbox";
- ``direct``: account → account → weight, read directly (an account's device fetched the
  other's keys, as accepting an invite does);
- ``linked``: pseudonym → pseudonym → weight, contacts read directly between any pseudonyms
  (:data:`~.view.Ranking`'s names: the reader of a mailbox created while an account's keys
  were fetched is a contact of that account).

Per-contact mailboxes make this a contact graph: a mailbox is written by one contact of its
owner, so an account that writes to a mailbox is a contact of whoever reads it. :func:`contacts`
scores each pair of accounts ``a, b`` by ``Σ_m writes[a][m]·P(owner(m) = b)`` (both ways) plus
the direct weight, where ``P(owner(m) = b)`` is ``b``'s share of ``m``'s owner weight.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sotto.audit.leakage.attacks.view import Ranking, pseudonym_of_account, ranked

Weights = defaultdict[str, defaultdict[str, float]]


def _weights() -> Weights:
    return defaultdict(lambda: defaultdict(float))


@dataclass
class Evidence:
    """Weighted evidence (module docstring); attacks add to it, :func:`contacts` reads it."""

    owner: Weights = field(default_factory=_weights)
    writes: Weights = field(default_factory=_weights)
    direct: Weights = field(default_factory=_weights)
    linked: Weights = field(default_factory=_weights)

    def add_owner(self, mailbox: str, account: str, weight: float) -> None:
        self.owner[mailbox][account] += weight

    def add_write(self, account: str, mailbox: str, weight: float) -> None:
        self.writes[account][mailbox] += weight

    def add_contact(self, a: str, b: str, weight: float) -> None:
        if a != b:
            self.direct[a][b] += weight
            self.direct[b][a] += weight

    def add_link(self, p: str, q: str, weight: float) -> None:
        if p != q:
            self.linked[p][q] += weight
            self.linked[q][p] += weight

    def merge(self, other: Evidence) -> Evidence:
        """This evidence and ``other``'s, summed (a new value)."""
        out = Evidence()
        for source in (self, other):
            for into, table in (
                (out.owner, source.owner),
                (out.writes, source.writes),
                (out.direct, source.direct),
            ):
                for key, row in table.items():
                    for k, w in row.items():
                        into[key][k] += w
        return out

    def owners(self) -> dict[str, str]:
        """Each mailbox's likeliest owner (ties: the first name in order)."""
        return {m: min(row, key=lambda a: (-row[a], a)) for m, row in self.owner.items() if row}


def contacts(evidence: Evidence) -> Ranking:
    """Account → its likeliest contacts (module docstring), as a ranking of ``account:`` names."""
    scores: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    shares: dict[str, list[tuple[str, float]]] = {}
    for mailbox, row in evidence.owner.items():
        total = sum(row.values())
        if total > 0:
            shares[mailbox] = [(b, w / total) for b, w in row.items()]
    for a, row in evidence.writes.items():
        for mailbox, weight in row.items():
            for b, share in shares.get(mailbox, ()):
                if a != b:
                    scores[pseudonym_of_account(a)][pseudonym_of_account(b)] += weight * share
                    scores[pseudonym_of_account(b)][pseudonym_of_account(a)] += weight * share
    for a, row in evidence.direct.items():
        for b, weight in row.items():
            scores[pseudonym_of_account(a)][pseudonym_of_account(b)] += weight
    for p, row in evidence.linked.items():
        for q, weight in row.items():
            scores[p][q] += weight
    return ranked(scores)


__all__ = ["Evidence", "contacts"]
