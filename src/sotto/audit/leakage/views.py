"""The event arrays the statistical disclosure attack (:mod:`.sda`) and the linking
(:mod:`.linking`) read: a :class:`Tap`, built from the operator's view by
:mod:`.attacks.disclosure`.

Mailboxes and accounts appear as indexes into the ids, in order of first sight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Tap:
    """Deposits (sends), pushes and connections as arrays. ``dep_conn`` is -1 for a send on its
    own one-off connection; ``dep_account`` and ``drain_account`` are -1 where no account was
    authenticated."""

    duration_s: float
    mailbox_ids: list[bytes]
    account_ids: list[bytes]
    dep_t: F64
    dep_mailbox: I64
    dep_size: I64
    dep_conn: I64
    dep_account: I64
    push_t: F64
    push_mailbox: I64
    push_conn: I64
    push_size: I64
    drain_open: F64
    drain_close: F64
    drain_account: I64
    sub_conn: I64
    sub_mailbox: I64
    sub_t: F64
    send_open: F64
    send_close: F64


__all__ = ["F64", "I64", "Tap"]
