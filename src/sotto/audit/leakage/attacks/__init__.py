"""Attacks on the operator's full view (:mod:`sotto.server.observer`), one per module, and their
scores.

Each attack is a pure function of the view's records and nothing else; only :mod:`.score`
reads the simulation's :class:`~sotto.audit.sim.truth.Truth`, to score what the attacks said.

- :mod:`.view`: the records read as requests (what each did to which mailbox or account);
- :mod:`.evidence`: ownership and writing evidence, and the contact answer it gives;
- :mod:`.coincidence`: account requests timed next to mailbox requests;
- :mod:`.connections`: requests sharing a connection (keep-alive) or a source address;
- :mod:`.bursts`: creation and deletion bursts, and the invite flow;
- :mod:`.combined`: the timing attacks' evidence summed (addresses hidden);
- :mod:`.gaps`: outages that stop a device's polls and sends in the same ticks;
- :mod:`.disclosure`: the statistical disclosure attack (:mod:`sotto.audit.leakage.sda`);
- :mod:`.presence`: per 15-minute bin, how much each pseudonym showed itself;
- :mod:`.shuffle`: the negative control (the view's ids dealt out again);
- :mod:`.score`: contact top-1 against both chance levels, hours to identify, presence AUC,
  and the report that runs them all.
"""

__all__ = [
    "bursts",
    "coincidence",
    "combined",
    "connections",
    "disclosure",
    "evidence",
    "gaps",
    "presence",
    "score",
    "shuffle",
    "view",
]
