"""Checking self-issued sender certificates, each signature once.

A sender keeps one certificate for weeks (:data:`~sotto.client.flows.context.CERTIFICATE_RENEW_MS`),
so its contacts see the same bytes in every envelope it sends, and
:meth:`~sotto.protocol.sealed_sender.SenderCertificate.validate` verifies the same two
signatures again each time. :class:`VerifiedCertificates` remembers the certificates whose
signatures verified, by their exact bytes and the trust root they verified against: a
certificate seen again is compared byte for byte (in constant time) with the one that verified,
and only its expiry is checked, against the time of this use. A certificate that failed is not
remembered, so it is checked in full, and refused, every time.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict

from sotto.crypto.keys import PublicKey
from sotto.errors import InvalidCertificateError
from sotto.protocol.sealed_sender import SenderCertificate

CAPACITY = 16_384
"""Certificates remembered, the least recently used forgotten first: one process sees one
certificate per contact at a time (a new one after each restart or renewal of the contact's
client); a simulation of ten thousand clients in one process shares one table."""


class VerifiedCertificates:
    """Certificates (with their trust roots) whose signatures verified, bounded to ``capacity``."""

    __slots__ = ("_capacity", "_held", "_lock")

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._held: OrderedDict[bytes, bytes] = OrderedDict()
        """SHA-256 of the material → the material (the trust root's bytes, then the
        certificate's serialized bytes)."""
        self._lock = threading.Lock()
        """Unsealing runs in worker threads (``asyncio.to_thread``): a lookup and its move to
        the end, or an insertion and an eviction, happen under it together."""

    def __len__(self) -> int:
        return len(self._held)

    def __repr__(self) -> str:
        return f"VerifiedCertificates({len(self._held)} of {self._capacity})"

    def validate(self, certificate: SenderCertificate, trust_root: PublicKey, now_ms: int) -> None:
        """:meth:`SenderCertificate.validate` against one trust root at ``now_ms``, the
        signatures skipped when these exact bytes verified before; raises
        :class:`InvalidCertificateError` as it does (expired included)."""
        material = trust_root.to_bytes() + certificate.serialized
        digest = hashlib.sha256(material).digest()
        with self._lock:
            held = self._held.get(digest)
            known = held is not None and hmac.compare_digest(held, material)
            if known:
                self._held.move_to_end(digest)
        if known:
            # The expiry was read from these same bytes; the time is this use's.
            if now_ms > certificate.expiration_ms:
                raise InvalidCertificateError(f"sender certificate expired at {certificate.expiration_ms} ms")
            return
        certificate.validate(trust_root, now_ms)
        with self._lock:
            self._held[digest] = material
            self._held.move_to_end(digest)
            while len(self._held) > self._capacity:
                self._held.popitem(last=False)


VERIFIED = VerifiedCertificates()
"""The process's table, used by :func:`~sotto.client.flows.receiving.unseal`. Whether a
certificate's signatures verify depends on its bytes and the trust root alone, so one table
serves every account in the process."""


__all__ = ["CAPACITY", "VERIFIED", "VerifiedCertificates"]
