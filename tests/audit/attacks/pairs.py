"""A truth of contact pairs, for the controls of the attacks on sizes, backlogs and files.

Person ``2i`` and person ``2i + 1`` are contacts (and nobody else is); each reads one mailbox,
written by the other. Mailbox ids are 16 bytes, base64url as on the wire, so a dump can hold
them; accounts are named ``acct-<person>``. Chance is ``1 / (people − 1)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sotto.audit.sim.truth import MailboxLife, Person, Truth
from sotto.wire import b64
from tests.audit.attacks.records import T0_US

DAY_US = 86_400_000_000


@dataclass(frozen=True)
class Pairs:
    truth: Truth
    mailboxes: list[tuple[bytes, bytes]]
    """Per pair, the raw ids of the two mailboxes (the first person's, the second's)."""

    def named(self, raw: bytes) -> str:
        return b64.encode(raw)


def pairs(count: int, *, seed: int = 1) -> Pairs:
    rng = random.Random(seed)
    truth = Truth(start_us=T0_US, end_us=T0_US + DAY_US)
    out = []
    for i in range(count):
        a, b = f"p{2 * i}", f"p{2 * i + 1}"
        for name in (a, b):
            truth.people[name] = Person(name, f"acct-{name}", f"10.0.{i}.{name[-1]}", False)
        truth.contacts.append((a, b, T0_US))
        ma, mb = rng.randbytes(16), rng.randbytes(16)
        truth.mailboxes.append(MailboxLife(b64.encode(ma), a, b, T0_US))
        truth.mailboxes.append(MailboxLife(b64.encode(mb), b, a, T0_US))
        out.append((ma, mb))
    return Pairs(truth, out)
