"""Padding buckets: what envelope sizes say, per mailbox, about who talks to whom and what is sent.

Every envelope is padded to a bucket (256 bytes to 64 KiB, doubling: :mod:`sotto.wire.padding`)
and the relay refuses any other length, so a size says no more than its bucket; but the bucket
does say something when it is not the one nearly everything uses. The view gives each envelope's
size as it was sent (the body of ``POST /v1/mailboxes/{m}/messages``, or the ``send`` frame), so
its **size class** (:func:`size_class`: the bit length of that size, one class per doubling) and
the mailbox it was written to.

The contact attack compares mailboxes by the sizes written to them: each mailbox's counts per
size class, weighted by how rare the class is over the whole view (tf-idf), and the cosine
between two mailboxes' profiles. A contact whose two mailboxes both receive a bucket few others
do (attachments, long texts, one client's odd message) is paired; when everything falls in one
bucket nothing is. Whether a size class tells an envelope's kind (a text, a receipt, an
attachment) needs the truth and is scored in :func:`sotto.audit.leakage.attacks.score.size_kinds`
from :func:`sends`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

from sotto.audit.leakage.attacks.view import Kind, Ranking, View, pseudonym_of_mailbox, ranked, requests

MIN_SIMILARITY = 0.05
"""Cosine below which two profiles are not taken for a pair."""
MAX_SHARED = 200
"""A class written to more mailboxes than this is left out of the comparison (it says little,
and comparing every pair that shares it would cost the square of their number); profiles'
lengths still count it."""


def size_class(size: int) -> int:
    """One class per doubling of a request's size (padding buckets double)."""
    return max(size, 1).bit_length()


@dataclass(frozen=True, slots=True)
class Send:
    t_us: int
    mailbox: str
    size: int


def sends(records: View) -> list[Send]:
    """Every envelope written, with its size as sent, in order of time."""
    return [Send(r.t_us, r.mailbox, r.size) for r in requests(records) if r.kind is Kind.SEND and r.mailbox]


def profiles(records: View) -> dict[str, dict[int, float]]:
    """Mailbox pseudonym → size class → tf-idf weight (module docstring)."""
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    for s in sends(records):
        counts[pseudonym_of_mailbox(s.mailbox)][size_class(s.size)] += 1
    having: Counter[int] = Counter()
    for row in counts.values():
        having.update(row.keys())
    n = len(counts)
    out: dict[str, dict[int, float]] = {}
    for key, row in counts.items():
        total = sum(row.values())
        out[key] = {c: (k / total) * math.log(n / having[c]) for c, k in row.items() if having[c] < n}
    return out


def attack(records: View) -> Ranking:
    """Each mailbox's likeliest contacts' mailboxes by the cosine of their size profiles."""
    found = profiles(records)
    norms = {k: math.sqrt(sum(v * v for v in row.values())) for k, row in found.items()}
    by_class: dict[int, list[str]] = defaultdict(list)
    for key, row in found.items():
        for c in row:
            by_class[c].append(key)
    by_class = {c: keys for c, keys in by_class.items() if len(keys) <= MAX_SHARED}
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    for key, row in found.items():
        if not norms[key]:
            continue
        dots: dict[str, float] = defaultdict(float)
        for c, v in row.items():
            for other in by_class.get(c, ()):
                if other != key:
                    dots[other] += v * found[other][c]
        for other, dot in dots.items():
            cosine = dot / (norms[key] * norms[other]) if norms[other] else 0.0
            if cosine >= MIN_SIMILARITY:
                scores[key][other] = cosine
    return ranked(scores)


__all__ = ["MAX_SHARED", "MIN_SIMILARITY", "Send", "attack", "profiles", "sends", "size_class"]
