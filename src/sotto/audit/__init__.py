"""Audits of what a Sotto relay could learn: measured, not asserted.

:mod:`sotto.audit.leakage` drives the real relay storage and delivery bookkeeping with a synthetic
population and hands attack code exactly what the server stored (the *dump*) and what it observed
per connection (the *tap*).
"""

from sotto.audit import leakage

__all__ = ["leakage"]
