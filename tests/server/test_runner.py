"""The runner's uvicorn settings and the command line."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from sotto.server import ServerConfig
from sotto.server.runner import (
    NO_AUTOMATIC_FULL_COLLECTION,
    ConnectionLimits,
    DeliveryProtocol,
    Flag,
    Inbox,
    RelayServer,
    SurvivorFreezer,
    uvicorn_config,
)
from sotto.server.ws import SEND_MANY
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


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_full_collection_that_finds_no_garbage_freezes_the_survivors() -> None:
    scheduled: list[Callable[[], None]] = []
    clock = [0.0]
    freezer = SurvivorFreezer(scheduled.append, lambda: clock[0], refresh_seconds=600.0)
    gc.unfreeze()
    try:
        # A young collection, or a full one that found garbage, leaves everything as it is.
        freezer("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
        freezer("stop", {"generation": 2, "collected": 5, "uncollectable": 0})
        freezer("start", {"generation": 2, "collected": 0, "uncollectable": 0})
        assert scheduled == []
        # A full one that found nothing: what survived is frozen, once, outside the collector.
        freezer("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
        freezer("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
        assert len(scheduled) == 1 and gc.get_freeze_count() == 0
        scheduled.pop()()
        assert gc.get_freeze_count() > 0 and freezer.freezes == 1
        # After refresh_seconds everything is unfrozen instead, so a full collection sees it all.
        clock[0] = 600.0
        freezer("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
        scheduled.pop()()
        assert gc.get_freeze_count() == 0 and freezer.refreshes == 1
    finally:
        gc.unfreeze()


def test_frozen_cyclic_garbage_is_collected_after_a_refresh() -> None:
    scheduled: list[Callable[[], None]] = []
    clock = [0.0]
    freezer = SurvivorFreezer(scheduled.append, lambda: clock[0], refresh_seconds=600.0)
    gc.unfreeze()
    try:
        cycle = weakref.ref(_Cycle())  # alive until collected: it refers to itself
        freezer("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
        scheduled.pop()()  # frozen while it was (as far as anyone knew) alive
        gc.collect()
        assert cycle() is not None  # a frozen cycle is left alone
        clock[0] = 601.0
        freezer("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
        scheduled.pop()()
        gc.collect()
        assert cycle() is None
    finally:
        gc.unfreeze()


def test_the_relay_installs_the_freezer_and_collects_by_the_clock_while_it_runs(tmp_path: Path) -> None:
    before = gc.get_threshold()
    server = RelayServer(uvicorn_config(ServerConfig(data_dir=tmp_path, port=0), log_config=None))
    server.full_collection_seconds = 0.05
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while getattr(server, "full_collections", 0) < 2 and thread.is_alive():
            assert time.monotonic() < deadline, "the relay did not start, or collected nothing"
            time.sleep(0.01)
        assert isinstance(server.freezer, SurvivorFreezer) and server.freezer in gc.callbacks
        assert gc.get_threshold() == (before[0], before[1], NO_AUTOMATIC_FULL_COLLECTION)
    finally:
        server.should_exit = True
        thread.join(30)
        gc.unfreeze()
    assert not thread.is_alive() and server.freezer not in gc.callbacks
    assert gc.get_threshold() == before


class _Written:
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False


def _open_protocol() -> tuple[DeliveryProtocol, _Written]:
    protocol = DeliveryProtocol.__new__(DeliveryProtocol)  # the parts this path uses, no server
    protocol.conn = Protocol(Side.SERVER, state=State.OPEN)  # type: ignore[assignment]
    transport = _Written()
    protocol.transport = transport  # type: ignore[assignment]
    protocol.writable = Flag()  # type: ignore[assignment]
    protocol.disconnected = False
    protocol.close_sent = False
    protocol.handshake_complete = True
    protocol.initial_response = None
    return protocol, transport


def _texts_in(data: bytes) -> list[str]:
    client = Protocol(Side.CLIENT, state=State.OPEN)
    client.receive_data(data)
    frames = [event for event in client.events_received() if isinstance(event, Frame)]
    return [bytes(frame.data).decode() for frame in frames if frame.opcode is Opcode.TEXT]


def test_several_frames_go_out_in_one_socket_write() -> None:
    protocol, transport = _open_protocol()
    texts = ['{"t":"sent","id":"a"}', '{"t":"envelope","id":"b"}', "é" * 300]
    asyncio.run(protocol.send({"type": SEND_MANY, "texts": texts}))  # type: ignore[arg-type]
    assert len(transport.writes) == 1
    assert _texts_in(transport.writes[0]) == texts
    # A single frame still takes uvicorn's own path.
    asyncio.run(protocol.send({"type": "websocket.send", "text": "one"}))
    assert len(transport.writes) == 2 and _texts_in(transport.writes[1]) == ["one"]


def test_several_frames_are_refused_once_the_connection_is_closing() -> None:
    protocol, transport = _open_protocol()
    protocol.disconnected = True
    with pytest.raises(ClientDisconnected):
        asyncio.run(protocol.send({"type": SEND_MANY, "texts": ["a", "b"]}))  # type: ignore[arg-type]
    protocol.disconnected = False
    protocol.close_sent = True
    with pytest.raises(RuntimeError):
        asyncio.run(protocol.send({"type": SEND_MANY, "texts": ["a", "b"]}))  # type: ignore[arg-type]
    assert transport.writes == []


def test_the_relay_offers_several_frames_per_write_to_its_websockets(monkeypatch: pytest.MonkeyPatch) -> None:
    protocol = DeliveryProtocol.__new__(DeliveryProtocol)
    protocol.scope = {"extensions": {}}  # type: ignore[typeddict-item]
    monkeypatch.setattr(WebSocketsSansIOProtocol, "handle_connect", lambda self, event: None)
    protocol.handle_connect(None)  # type: ignore[arg-type]
    assert SEND_MANY in protocol.scope["extensions"]
