"""The randomness source that pure code takes as an argument.

Protocol functions never call ``os.urandom`` themselves: they take a :data:`Rng`, so tests can
pass a seeded one and replay a run byte for byte.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

Rng = Callable[[int], bytes]
"""A function returning that many random bytes."""

system_rng: Rng = os.urandom
"""The operating system's CSPRNG: the only source for real keys."""


def seeded_rng(seed: int) -> Rng:
    """A deterministic RNG for tests and benchmarks. Never use it for real keys."""
    gen = random.Random(seed)
    return gen.randbytes
