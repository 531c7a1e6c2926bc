"""X25519 agreement, and the canonical-point check libsignal applies to incoming base keys.

`cryptography` refuses the classic low-order points but accepts a *mixed-order* key (an honest
point plus a point of order 8); libsignal refuses those for PreKey base keys, and so do we.
"""

from __future__ import annotations

import nacl.bindings

from sotto.crypto.keys import PrivateKey, PublicKey
from sotto.errors import InvalidKeyAgreementError

_P = 2**255 - 19


def agree(ours: PrivateKey, theirs: PublicKey) -> bytes:
    """The 32-byte X25519 shared secret; an all-zero result is :class:`InvalidKeyAgreementError`."""
    try:
        return ours.x25519().exchange(theirs.x25519())
    except ValueError:  # OpenSSL refuses an all-zero output
        raise InvalidKeyAgreementError("X25519 produced the all-zero secret") from None


def is_canonical(key: PublicKey) -> bool:
    """True if ``key`` is < 2^255 - 19, has the top bit clear and lies in the prime-order subgroup."""
    u = int.from_bytes(key.raw, "little")
    if u >> 255 or u >= _P or u == _P - 1:
        return False
    # The birational map u -> y = (u - 1) / (u + 1) keeps the subgroup structure, so the
    # Edwards point (sign 0) is in the prime-order subgroup exactly when u is torsion-free.
    y = (u - 1) * pow(u + 1, -1, _P) % _P
    return bool(nacl.bindings.crypto_core_ed25519_is_valid_point(y.to_bytes(32, "little")))
