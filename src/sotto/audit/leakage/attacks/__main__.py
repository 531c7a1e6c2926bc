"""``python -m sotto.audit.leakage.attacks VIEW TRUTH``: every attack on a recorded view, scored.

``VIEW`` is an operator's view as ``sotto server --record-view`` or a simulation writes it (JSON
lines, read a line at a time: :func:`sotto.audit.leakage.compact.read_compact`); ``TRUTH`` the simulation's
:class:`~sotto.audit.sim.truth.Truth` beside it. Prints :func:`.score.report` as Markdown. The
cadence tick is the relay's setting: ``--tick-seconds``, else the truth's ``tick_seconds``,
else 300.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sotto.audit.leakage.attacks.score import report
from sotto.audit.leakage.attacks.view import requests
from sotto.audit.leakage.compact import read_compact
from sotto.audit.sim.truth import Truth

DEFAULT_TICK_S = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sotto.audit.leakage.attacks", description=__doc__)
    parser.add_argument("view", type=Path, help="the operator's view (JSON lines)")
    parser.add_argument("truth", type=Path, help="the simulation's truth (JSON)")
    parser.add_argument("--tick-seconds", type=float, default=None, help="the relay's cadence tick")
    parser.add_argument("--no-hours", action="store_true", help="skip hours to identify (faster)")
    args = parser.parse_args(argv)
    truth = Truth.load(args.truth)
    tick = args.tick_seconds or float(truth.settings.get("tick_seconds", DEFAULT_TICK_S))
    # Read a line at a time into requests: the records themselves are never held at once.
    found = report(requests(read_compact(args.view)), truth, tick_seconds=tick, with_hours=not args.no_hours)
    sys.stdout.write(found.to_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
