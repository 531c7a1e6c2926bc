"""The forwarder: someone else's server that carries sealed requests to a relay (``docs/ohttp.md``).

It moves opaque bytes (Oblivious HTTP, RFC 9458) and can read none of them:
:mod:`~sotto.forwarder.app` (the ASGI app), :mod:`~sotto.forwarder.__main__`
(``python -m sotto.forwarder --relay URL``).
"""

from sotto.forwarder.app import FORWARD_PATH, KEYS_PATH, Forwarder, ForwarderConfig, create_forwarder_app

__all__ = ["FORWARD_PATH", "KEYS_PATH", "Forwarder", "ForwarderConfig", "create_forwarder_app"]
