"""The Sotto relay: stores and forwards sealed, padded envelopes between anonymous mailboxes.

It never sees a plaintext or a sender, keeps no client address, and stores times as days.
``docs/relay-protocol.md`` is its contract, ``docs/data-held.md`` what it keeps.

Layout: :mod:`~sotto.server.app` (routes, errors, limits), :mod:`~sotto.server.accounts` and
:mod:`~sotto.server.mailboxes` (HTTP calls), :mod:`~sotto.server.ws` (delivery socket),
:mod:`~sotto.server.relay` (pure delivery bookkeeping), :mod:`~sotto.server.fanout` (live
delivery), :mod:`~sotto.server.auth`, :mod:`~sotto.server.storage` (interface, memory, SQLite),
:mod:`~sotto.server.manifest` (what is held), :mod:`~sotto.server.config`,
:mod:`~sotto.server.runner` (uvicorn).
"""

from sotto.server.app import create_app
from sotto.server.config import ServerConfig
from sotto.server.runner import run

__all__ = ["ServerConfig", "create_app", "run"]
