"""Baselines that cannot run on this relay, computed from a study's truth under a stated model.

Both take the people, contacts, texts and device-on times of a Sotto study (:class:`Truth`) and
ask what a server of another design would have seen of the same people. What comes out is
*modelled, not measured*: the model is the whole of what the server sees.

- **WhatsApp-like** (:func:`whatsapp`): the server sees the sender and recipient account of
  every message (each text, and the delivery receipt the recipient's device sends back when it
  gets it), and each device's connection while it is on.
- **Signal-like with immediate delivery receipts** (:func:`signal`): sealed sender hides the
  sender; the server sees the recipient account and time of every message, when each device
  takes its messages (a device that is on gets a message at once; one that is off, when it
  comes back), and each device's connection while it is on. The recipient's device sends a
  sealed delivery receipt to the sender as soon as it gets a text, so the attack of Martiny et
  al. ("Improving Signal's Sealed Sender", NDSS 2021) applies: for a target, count the recipients
  of the messages sent in the ``window_s`` after each delivery to the target, less what each
  recipient gets in any such window anyway (its rate over the whole run), and take the largest.

Each gives a contact ranking per account (scored like the attacks on the view), messages to
identify per target (the texts the target received, or sent and received for WhatsApp-like,
up to the first from which its top-1 stays a contact), presence (a device is seen exactly when it
is on) and text latency (a text reaches a device that is on after ``network_s``).
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sotto.audit.leakage.attacks.presence import BIN_S, Presence
from sotto.audit.leakage.attacks.view import Ranking, pseudonym_of_account
from sotto.audit.sim.truth import Interval, Truth

NETWORK_S = 0.1
"""One way through the network, for a device that is on."""
RECEIPT_DELAY_S = (0.05, 0.5)
"""A delivery receipt leaves this long (uniform) after the text reached the device."""
WINDOW_S = 1.0
"""The disclosure attack's window after each delivery to the target."""


@dataclass
class Modelled:
    """What a modelled design gives away (module docstring)."""

    ranking: Ranking
    messages_to_identify: dict[str, int | None]
    """Per target with a contact: messages until identified (None: not within the run)."""
    presence: Presence
    latencies_s: list[float] = field(default_factory=list)
    """Per text delivered within the run: seconds from sending to the recipient's device."""
    messages: int = 0
    """Messages the server carried (texts and delivery receipts)."""


@dataclass(frozen=True, slots=True)
class _Text:
    t_us: int
    sender: str
    receiver: str
    delivered_us: int | None


def whatsapp(truth: Truth) -> Modelled:
    """The WhatsApp-like baseline (module docstring)."""
    texts = _texts(truth)
    contacts = truth.contact_sets()
    log: list[tuple[int, str, str]] = []  # (t, sender, receiver): all the server reads
    for text in texts:
        log.append((text.t_us, text.sender, text.receiver))
        if text.delivered_us is not None:
            log.append((text.delivered_us, text.receiver, text.sender))
    log.sort()
    counts: dict[str, Counter[str]] = {name: Counter() for name in truth.people}
    tops: dict[str, list[bool]] = {name: [] for name in truth.people}
    for _, sender, receiver in log:
        counts[sender][receiver] += 1
        counts[receiver][sender] += 1
    seen: dict[str, Counter[str]] = {name: Counter() for name in truth.people}
    for text in sorted(texts, key=lambda x: x.t_us):
        for me, other in ((text.sender, text.receiver), (text.receiver, text.sender)):
            seen[me][other] += 1
            top = min(seen[me].items(), key=lambda kv: (-kv[1], kv[0]))[0]
            tops[me].append(top in contacts[me])
    return Modelled(
        ranking=_ranking(truth, counts),
        messages_to_identify=_identified(tops, contacts),
        presence=_presence(truth),
        latencies_s=_latencies(texts),
        messages=len(log),
    )


def signal(truth: Truth, *, window_s: float = WINDOW_S, seed: int = 0) -> Modelled:
    """The Signal-like baseline with immediate delivery receipts (module docstring)."""
    rng = random.Random(seed)
    texts = _texts(truth)
    contacts = truth.contact_sets()
    submitted: list[tuple[int, str]] = []  # (t, recipient) of every sealed message
    deliveries: dict[str, list[int]] = {name: [] for name in truth.people}
    for text in texts:
        submitted.append((text.t_us, text.receiver))
        if text.delivered_us is not None:
            deliveries[text.receiver].append(text.delivered_us)
            receipt = text.delivered_us + round(rng.uniform(*RECEIPT_DELAY_S) * 1e6)
            if receipt < truth.end_us:
                submitted.append((receipt, text.sender))
    submitted.sort()
    times = [t for t, _ in submitted]
    duration_s = max((truth.end_us - truth.start_us) / 1e6, 1.0)
    rate = {name: n / duration_s for name, n in Counter(r for _, r in submitted).items()}
    window_us = round(window_s * 1e6)
    scores: dict[str, Counter[str]] = {}
    tops: dict[str, list[bool]] = {}
    for target, epochs in deliveries.items():
        counts: Counter[str] = Counter()
        flags: list[bool] = []
        for n, t in enumerate(sorted(epochs), start=1):
            lo, hi = bisect.bisect_right(times, t), bisect.bisect_right(times, t + window_us)
            counts.update(r for _, r in submitted[lo:hi] if r != target)
            if counts:
                top = max(counts, key=lambda c: (counts[c] - n * rate[c] * window_s, c))
                flags.append(top in contacts[target])
            else:
                flags.append(False)
        if epochs:
            n = len(epochs)
            scores[target] = Counter({c: k - n * rate[c] * window_s for c, k in counts.items()})
            tops[target] = flags
    return Modelled(
        ranking=_ranking(truth, scores),
        messages_to_identify=_identified(tops, contacts),
        presence=_presence(truth),
        latencies_s=_latencies(texts),
        messages=len(submitted),
    )


def _texts(truth: Truth) -> list[_Text]:
    """The study's texts, each with when the model delivers it (None: not within the run)."""
    on = {name: sorted(p.device_on) for name, p in truth.people.items()}
    out = []
    for sent in truth.sent:
        if sent.kind != "text" or sent.receiver not in on:
            continue
        out.append(
            _Text(sent.t_us, sent.sender, sent.receiver, _deliver(on[sent.receiver], sent.t_us, truth))
        )
    out.sort(key=lambda x: x.t_us)
    return out


def _deliver(on: Sequence[Interval], t_us: int, truth: Truth) -> int | None:
    """When a text sent at ``t_us`` reaches a device that is on during ``on``."""
    arrive = t_us + round(NETWORK_S * 1e6)
    for start, end in on:
        if end <= arrive:
            continue
        at = max(start, arrive)
        return at if at < truth.end_us else None
    return None


def _ranking(truth: Truth, scores: dict[str, Counter[str]]) -> Ranking:
    account = {name: pseudonym_of_account(p.account) for name, p in truth.people.items()}
    out: Ranking = {}
    for me, counts in scores.items():
        kept = sorted(
            ((account[o], float(s)) for o, s in counts.items() if s > 0), key=lambda x: (-x[1], x[0])
        )
        if kept:
            out[account[me]] = kept
    return out


def _identified(tops: dict[str, list[bool]], contacts: dict[str, set[str]]) -> dict[str, int | None]:
    """Per target with a contact: 1 + the index from which every top-1 was a contact."""
    out: dict[str, int | None] = {}
    for name, theirs in contacts.items():
        if not theirs:
            continue
        flags = tops.get(name, [])
        first = None
        for i in range(len(flags) - 1, -1, -1):
            if not flags[i]:
                break
            first = i + 1
        out[name] = first
    return out


def _presence(truth: Truth, bin_s: float = BIN_S) -> Presence:
    """Each account seen exactly while its device is on: the share of each bin it was on."""
    bin_us = round(bin_s * 1e6)
    out: Presence = {}
    for person in truth.people.values():
        row: dict[int, float] = {}
        for start, end in person.device_on:
            for b in range(start // bin_us, (end - 1) // bin_us + 1):
                lo, hi = max(start, b * bin_us), min(end, (b + 1) * bin_us)
                if hi > lo:
                    row[b] = row.get(b, 0.0) + (hi - lo) / bin_us
        out[pseudonym_of_account(person.account)] = row
    return out


def _latencies(texts: list[_Text]) -> list[float]:
    return [(t.delivered_us - t.t_us) / 1e6 for t in texts if t.delivered_us is not None]


__all__ = ["NETWORK_S", "RECEIPT_DELAY_S", "WINDOW_S", "Modelled", "signal", "whatsapp"]
