"""Audits of what a Sotto relay could learn: measured, not asserted.

:mod:`sotto.audit.sim` runs simulated people on real clients against the real relay, which
records what its operator could see; :mod:`sotto.audit.leakage` attacks that view and reports
what it gives away.
"""

from sotto.audit import leakage

__all__ = ["leakage"]
