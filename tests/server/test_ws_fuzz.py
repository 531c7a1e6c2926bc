"""Arbitrary frames on the delivery socket: a typed close or a well-formed answer, never a crash."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

from sotto.wire import frames
from tests.server.conftest import Relay, make_relay

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
frame_texts = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda kind, body: json.dumps({"t": kind, **body}),
        st.sampled_from(["subscribe", "ack", "send", "nope"]),
        st.dictionaries(
            st.sampled_from(["mailboxes", "ids", "mailbox", "token", "id", "payload"]), json_values
        ),
    ),
)


@pytest.fixture(scope="module")
def shared_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    path: Path = tmp_path_factory.mktemp("fuzz")
    yield from make_relay(path)


@settings(max_examples=60)
@given(st.lists(frame_texts, min_size=1, max_size=3))
def test_any_frames_get_a_typed_close_or_an_answer(shared_relay: Relay, texts: list[str]) -> None:
    with shared_relay.client.websocket_connect("/v1/ws") as ws:
        frames.decode_server_frame(ws.receive_text())
        try:
            for text in texts:
                ws.send_text(text)
            ws.send_text(frames.encode(frames.Send(bytes(16), bytes(32), bytes(16), bytes(256))))
            while True:  # until the probe's answer: everything before it must parse
                answer = frames.decode_server_frame(ws.receive_text())
                if isinstance(answer, frames.SendFailed) and answer.id == bytes(16):
                    break
        except WebSocketDisconnect as closed:
            assert closed.code in (4400, 4413), closed.code
    assert shared_relay.client.get("/v1/health").status_code == 200
