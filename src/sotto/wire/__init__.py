"""What client and server say to each other: frames, request bodies, padding, auth messages.

The server sees protocol messages only as opaque padded bytes; nothing here imports the
protocol. The contract is written out in ``docs/relay-protocol.md``.

Modules: :mod:`.api` (HTTP request and response bodies), :mod:`.frames` (WebSocket frames),
:mod:`.auth` (signed authentication messages), :mod:`.padding` (size buckets), :mod:`.limits`
(sizes both sides enforce), :mod:`.b64` (the one base64 form), :mod:`.bhttp` (binary HTTP
messages, RFC 9292), :mod:`.ohttp` (their Oblivious HTTP encapsulation, RFC 9458). Each is
imported on first use: ``api`` builds its models at import time, which a caller of ``padding``
should not pay for.
"""

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sotto.wire import api, auth, b64, bhttp, frames, limits, ohttp, padding

__all__ = ["api", "auth", "b64", "bhttp", "frames", "limits", "ohttp", "padding"]


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
