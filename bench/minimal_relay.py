"""The yardstick for ``bench/relay.py``: the least a WebSocket relay can do, and nothing more.

    python bench/minimal_relay.py --port 9000

A bare ``websockets`` server speaking just enough of the delivery protocol for the same load
generator to drive it: a ``challenge`` on connect, ``subscribe`` (signatures not checked) binds
mailbox ids to the connection, each ``send`` is forwarded at once as an ``envelope`` to the
connection that subscribed its mailbox and answered ``sent``; ``ack`` is ignored. No storage, no
validation beyond JSON parsing, no authentication, no limits: its throughput is what Python and
``websockets`` allow on this machine, and the relay's is measured against it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import orjson
from websockets.asyncio.server import ServerConnection, serve

from sotto.wire import b64, frames
from sotto.wire.limits import MAX_FRAME_BYTES


class MinimalRelay:
    def __init__(self) -> None:
        self.receivers: dict[str, ServerConnection] = {}

    async def handle(self, websocket: ServerConnection) -> None:
        mine: list[str] = []
        await websocket.send(frames.encode(frames.Challenge(os.urandom(32))))
        try:
            async for text in websocket:
                frame = orjson.loads(text)  # the relay's own parser, so the yardstick is not slower by it
                kind = frame["t"]
                if kind == "send":
                    target = self.receivers.get(frame["mailbox"])
                    if target is not None:
                        await target.send(
                            '{"t":"envelope","mailbox":"'
                            + frame["mailbox"]
                            + '","id":"'
                            + frame["id"]
                            + '","day":0,"payload":"'
                            + frame["payload"]
                            + '"}'
                        )
                    await websocket.send('{"t":"sent","id":"' + frame["id"] + '","duplicate":false}')
                elif kind == "subscribe":
                    ids = [m["id"] for m in frame["mailboxes"]]
                    for mailbox in ids:
                        self.receivers[mailbox] = websocket
                    mine.extend(ids)
                    await websocket.send(
                        frames.encode(frames.Subscribed(tuple(b64.decode(m) for m in ids), ()))
                    )
        except Exception:  # a peer that goes away mid-frame ends its connection, nothing else
            return
        finally:
            for mailbox in mine:
                if self.receivers.get(mailbox) is websocket:
                    del self.receivers[mailbox]


async def serve_forever(host: str, port: int) -> None:
    relay = MinimalRelay()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(relay.handle, host, port, compression=None, max_size=2 * MAX_FRAME_BYTES):
        print(f"minimal relay on {host}:{port}", flush=True)
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description="A minimal WebSocket relay (benchmark yardstick).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    asyncio.run(serve_forever(args.host, args.port))


if __name__ == "__main__":
    main()
