"""The designs the benchmark compares: Sotto's two modes, ablations of the people model, and two
baselines computed from a study's truth.

A *measured* design is a study (:mod:`sotto.audit.sim.study`): real clients in the design's
mode on the real relay, attacked through the view the relay recorded. An ablation is the same
study with one habit of :class:`~sotto.audit.sim.people.Habits` switched off, to show which
behaviour an attack feeds on. A *modelled* design cannot run on this relay; it is computed by
:mod:`.modelled` from the truth of the Sotto default study (the same people, contacts and
message times) under the design's stated model, and is reported as modelled, not measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sotto.audit.sim.people import Habits


@dataclass(frozen=True)
class Design:
    name: str
    summary: str
    cadence: bool = False
    habits: dict[str, float] = field(default_factory=dict)
    """Changes to the default :class:`Habits` (an ablation)."""
    model: str | None = None
    """``whatsapp`` or ``signal``: computed from a default study's truth (:mod:`.modelled`)."""

    @property
    def measured(self) -> bool:
        return self.model is None

    def habits_for(self, base: Habits | None = None) -> Habits:
        """The study's habits: ``base`` (the defaults) with this design's changes."""
        return replace(base or Habits(), **self.habits)  # type: ignore[arg-type]


CADENCE = Design("sotto-cadence", "Sotto, cadence mode (sotto listen --cadence), real relay", cadence=True)
DEFAULT = Design("sotto-default", "Sotto, default mode (interactive), real relay")
ABLATIONS = (
    Design("cadence-no-outages", "cadence mode; no network outages", True, {"outages_per_day": 0.0}),
    Design("cadence-no-restarts", "cadence mode; no process restarts", True, {"restarts_per_day": 0.0}),
    Design("cadence-no-cli", "cadence mode; no command-line users", True, {"cli_share": 0.0}),
    Design("cadence-no-households", "cadence mode; no shared addresses", True, {"household_share": 0.0}),
    Design("cadence-no-rotation", "cadence mode; nobody rotates mailboxes", True, {"rotate_share": 0.0}),
)
WHATSAPP = Design(
    "whatsapp-like",
    "modelled: the server sees the sender and recipient of every message and each device's connection",
    model="whatsapp",
)
SIGNAL = Design(
    "signal-like",
    "modelled: sealed sender, recipient account and time of every message, immediate delivery "
    "receipts, each device's connection",
    model="signal",
)

ALL = (CADENCE, DEFAULT, *ABLATIONS, WHATSAPP, SIGNAL)
BY_NAME = {d.name: d for d in ALL}
QUICK = (CADENCE, DEFAULT, WHATSAPP, SIGNAL)
"""What ``--quick`` runs: both modes and the two baselines (the ablations are left to a full run)."""

__all__ = ["ABLATIONS", "ALL", "BY_NAME", "CADENCE", "DEFAULT", "QUICK", "SIGNAL", "WHATSAPP", "Design"]
