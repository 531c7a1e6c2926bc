"""The runner's uvicorn settings and the command line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from sotto.server import ServerConfig
from sotto.server.runner import ConnectionLimits, DeliveryProtocol, Flag, Inbox, uvicorn_config
from sotto.wire.limits import MAX_FRAME_BYTES


def test_uvicorn_settings_keep_addresses_out(tmp_path: Path) -> None:
    config = uvicorn_config(ServerConfig(data_dir=tmp_path))
    assert config.access_log is False
    assert config.proxy_headers is False
    assert config.server_header is False
    assert config.ws_per_message_deflate is False  # compressed padding would leak lengths
    assert config.forwarded_allow_ips in ("", [])
    assert config.host == "127.0.0.1" and config.port == 8787


def test_command_line_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sotto.server", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in ("--host", "--port", "--data"):
        assert option in result.stdout


def test_websockets_use_the_smaller_protocol(tmp_path: Path) -> None:
    config = uvicorn_config(ServerConfig(data_dir=tmp_path))
    assert config.ws is DeliveryProtocol
    assert issubclass(DeliveryProtocol, WebSocketsSansIOProtocol)


def test_inbox_hands_events_over_in_order() -> None:
    async def scenario() -> list[object]:
        inbox = Inbox()
        inbox.put_nowait(1)
        assert not inbox.empty() and inbox.qsize() == 1
        got = [await inbox.get()]
        waiting = asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        assert not waiting.done()
        inbox.put_nowait(2)
        inbox.put_nowait(3)
        got += [await waiting, await inbox.get()]
        assert inbox.empty()
        return got

    assert asyncio.run(scenario()) == [1, 2, 3]


def test_flag_blocks_writers_until_set() -> None:
    async def scenario() -> None:
        flag = Flag()
        assert await flag.wait() and flag.is_set()
        flag.clear()
        writers = [asyncio.create_task(flag.wait()) for _ in range(2)]
        await asyncio.sleep(0)
        assert not any(w.done() for w in writers)
        flag.set()
        assert await asyncio.gather(*writers) == [True, True]

    asyncio.run(scenario())


def test_reading_pauses_only_once_the_app_falls_behind() -> None:
    protocol = DeliveryProtocol.__new__(DeliveryProtocol)  # the parts this path uses, no server
    pauses: list[bool] = []
    protocol.transport = SimpleNamespace(pause_reading=lambda: pauses.append(True))  # type: ignore[assignment]
    protocol.queue = Inbox()  # type: ignore[assignment]
    protocol.read_paused = False
    protocol.close_sent = False
    protocol.curr_msg_data_type = "text"
    for n in range(1, DeliveryProtocol.PAUSE_AT + 1):
        protocol.frames = [b'{"t":"ack","ids":[]}']
        protocol.send_receive_event_to_app()
        assert protocol.queue.qsize() == n
        assert protocol.read_paused == (n == DeliveryProtocol.PAUSE_AT) and len(pauses) == (
            n == DeliveryProtocol.PAUSE_AT
        )


def test_reading_pauses_once_the_app_holds_two_of_the_largest_frames() -> None:
    protocol = DeliveryProtocol.__new__(DeliveryProtocol)
    pauses: list[bool] = []
    protocol.transport = SimpleNamespace(pause_reading=lambda: pauses.append(True))  # type: ignore[assignment]
    inbox = protocol.queue = Inbox()  # type: ignore[assignment]
    protocol.read_paused = False
    protocol.close_sent = False
    protocol.curr_msg_data_type = "text"
    big = b'"' + b"x" * (MAX_FRAME_BYTES - 2) + b'"'
    for n in range(1, 4):
        protocol.frames = [big]
        protocol.send_receive_event_to_app()
        # Two frames held are not yet too much; the third arrives on top of them and pauses.
        assert protocol.read_paused == (n == 3) and len(pauses) == (n == 3)
    assert inbox.held_bytes == 3 * MAX_FRAME_BYTES


def test_a_websocket_whose_send_buffer_stays_full_is_dropped() -> None:
    async def scenario() -> None:
        protocol = DeliveryProtocol.__new__(DeliveryProtocol)  # the parts this path uses
        dropped = asyncio.Event()
        protocol.config = SimpleNamespace(sotto_limits=ConnectionLimits(write_stall=0.01))  # type: ignore[assignment]
        protocol.loop = asyncio.get_running_loop()
        protocol.transport = SimpleNamespace(abort=dropped.set)  # type: ignore[assignment]
        protocol.writable = Flag()  # type: ignore[assignment]
        protocol.pause_writing()
        assert not protocol.writable.is_set()
        await asyncio.wait_for(dropped.wait(), 30)
        # A buffer that drains in time keeps the connection.
        kept = asyncio.Event()
        protocol._stall = None
        protocol.transport = SimpleNamespace(abort=kept.set)  # type: ignore[assignment]
        protocol.pause_writing()
        protocol.resume_writing()
        assert protocol._stall is None and protocol.writable.is_set()
        await asyncio.sleep(0.05)
        assert not kept.is_set()

    asyncio.run(scenario())
