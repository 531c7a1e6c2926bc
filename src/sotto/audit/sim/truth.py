"""What really happened in a simulation: the answers an attack on the operator's view is scored against.

The relay never holds any of this. A simulation of people writes it beside the view the relay
recorded (:mod:`sotto.server.observer`), and the attacks of :mod:`sotto.audit.leakage.attacks`
read only the view; their scores compare their guesses with this record.

Ids are base64url as on the wire (and as the view records them), times are µs on the
simulation's clock (the view's ``t_us``). Intervals are half-open ``[start, end)``; an interval
still open when the run ended ends at :attr:`Truth.end_us`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Interval = tuple[int, int]
"""``(start_us, end_us)``, half-open."""


@dataclass
class MailboxLife:
    """One receiving mailbox of a person's: which contact writes to it and when it lived."""

    mailbox: str
    """Its id (base64url)."""
    owner: str
    """The person who reads it."""
    writer: str
    """The contact who writes to it (the owner created it for that contact)."""
    created_us: int
    retired_us: int | None = None
    """When the owner deleted it (None: still in use at the end)."""


@dataclass
class Sent:
    """One message a person sent to a contact (texts, receipts and typing each count)."""

    t_us: int
    sender: str
    receiver: str
    kind: str
    """``text``, ``receipt``, ``typing``, … as the client names what it sent."""


@dataclass
class Person:
    """One simulated person, with one device."""

    name: str
    account: str
    """The account id (base64url) the relay knows the device by."""
    address: str
    """The source address the device's requests come from (households may share one)."""
    cadence: bool
    """Whether the device runs in cadence mode."""
    device_on: list[Interval] = field(default_factory=list)
    """When the device was running and online (its client process up, its network up)."""
    app_use: list[Interval] = field(default_factory=list)
    """When the person had the app open (a subset of ``device_on``)."""


@dataclass
class Truth:
    """Everything a scorer needs: people, contact edges, mailboxes and messages."""

    start_us: int
    end_us: int
    people: dict[str, Person] = field(default_factory=dict)
    """Name → person."""
    contacts: list[tuple[str, str, int]] = field(default_factory=list)
    """``(a, b, formed_us)``: a and b became contacts at ``formed_us`` (a invited b); each pair once."""
    mailboxes: list[MailboxLife] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    """How the run was made (population, days, defaults, seed), for the report."""

    def contact_sets(self) -> dict[str, set[str]]:
        """Person → the people they are contacts of (both directions)."""
        out: dict[str, set[str]] = {name: set() for name in self.people}
        for a, b, _ in self.contacts:
            out[a].add(b)
            out[b].add(a)
        return out

    def mailbox_owner(self) -> dict[str, str]:
        """Mailbox id → the person who reads it."""
        return {life.mailbox: life.owner for life in self.mailboxes}

    def account_owner(self) -> dict[str, str]:
        """Account id → the person it belongs to."""
        return {person.account: name for name, person in self.people.items()}

    def to_json(self) -> str:
        """The record as one JSON document."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Truth:
        """Read back what :meth:`to_json` wrote."""
        raw = json.loads(text)
        people = {
            name: Person(
                name=p["name"],
                account=p["account"],
                address=p["address"],
                cadence=p["cadence"],
                device_on=[(int(a), int(b)) for a, b in p["device_on"]],
                app_use=[(int(a), int(b)) for a, b in p["app_use"]],
            )
            for name, p in raw["people"].items()
        }
        return cls(
            start_us=int(raw["start_us"]),
            end_us=int(raw["end_us"]),
            people=people,
            contacts=[(str(a), str(b), int(t)) for a, b, t in raw["contacts"]],
            mailboxes=[MailboxLife(**m) for m in raw["mailboxes"]],
            sent=[Sent(**s) for s in raw["sent"]],
            settings=dict(raw["settings"]),
        )

    def save(self, path: Path) -> None:
        """Write the record to ``path``."""
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Truth:
        """Read a record :meth:`save` wrote."""
        return cls.from_json(path.read_text(encoding="utf-8"))


__all__ = ["Interval", "MailboxLife", "Person", "Sent", "Truth"]
