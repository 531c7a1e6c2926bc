"""What client and server say to each other: frames, request bodies, padding, auth messages.

The server sees protocol messages only as opaque padded bytes; nothing here imports the
protocol. The contract is written out in ``docs/relay-protocol.md``.
"""
