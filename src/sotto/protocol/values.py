"""Building the protocol's immutable values (``NamedTuple``s) on the per-message paths.

``SessionState(…)`` runs the ``__new__`` that ``NamedTuple`` generates, a Python function: one
interpreter frame per object, and a message sent or received builds five or six such objects.
:func:`new_tuple` builds the same object in C from a tuple of all its fields, in order.

It checks neither the number nor the types of the fields (mypy sees an iterable), so it is
kept to the few per-message call sites, each of which lists every field; a test builds each
value through those paths and compares it field by field with the checked constructor.
"""

from __future__ import annotations

new_tuple = tuple.__new__
"""``new_tuple(SessionState, (version, …, pending_prekey))``: ``SessionState(version, …)``, no frame."""
