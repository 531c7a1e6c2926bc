"""The relay's one secret: the key that turns usernames into keyed hashes.

Generated on first start into the data directory (mode 0600). Without it, the stored username
hashes cannot be tested against a list of guessed names, so a copy of the database alone does not
reveal who holds which username.
"""

from __future__ import annotations

import os
from pathlib import Path

from sotto.crypto.kdf import hkdf_sha256, hmac_sha256
from sotto.crypto.random import Rng, system_rng

KEY_FILENAME = "server.key"
KEY_LENGTH = 32


class ServerKey:
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_LENGTH:
            raise ValueError(f"server key must be {KEY_LENGTH} bytes")
        self._key = bytes(key)

    def username_hash(self, username: str) -> bytes:
        """HMAC-SHA256(server key, lowercased name): what the relay stores instead of the name."""
        return hmac_sha256(self._key, username.lower().encode("utf-8"))

    def derive(self, info: bytes, length: int = KEY_LENGTH) -> bytes:
        """A key of its own for one use (HKDF-SHA256 with ``info`` naming the use), so no use
        of the server key can be turned against another."""
        return hkdf_sha256(self._key, length, info)

    def __repr__(self) -> str:
        return "ServerKey(<secret>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("the server key is not picklable")


def load_or_create(data_dir: Path, rng: Rng = system_rng) -> ServerKey:
    """Read ``data_dir/server.key``, creating it (0600) on first start.

    The key is written to a temporary file, synced, then linked into place, so a crash leaves
    either no key or a whole one, and two processes starting at once agree on one key.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILENAME
    if not path.exists():
        tmp = data_dir / f".{KEY_FILENAME}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        try:
            os.write(fd, rng(KEY_LENGTH))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return ServerKey(path.read_bytes())
