"""The Double Ratchet with the SPQR chain, one spec concept a module; internal to the protocol.

Use :mod:`sotto.protocol.session` (or :mod:`sotto.protocol.store`): nothing here is public API.
"""

__all__: list[str] = []
