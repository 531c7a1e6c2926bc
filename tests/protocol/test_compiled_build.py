"""The protocol tests run on the build they claim: plain Python, or the mypyc-compiled core.

``make test`` runs tests/protocol, tests/crypto and tests/interop twice: on the editable
(plain) install, then with ``bench/compiled.py``'s build first on ``PYTHONPATH`` and
``SOTTO_EXPECT_COMPILED=1``. This checks each run imported what it should, so the second run
cannot quietly test the plain modules again.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import tomllib

import pytest

from sotto.errors import DecodeError
from sotto.protocol.messages import PreKeySignalMessage, SignalMessage
from sotto.protocol.record import SessionRecord
from tests.protocol.parties import established_pair

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _compiled_module_names() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        paths: list[str] = tomllib.load(f)["tool"]["sotto"]["mypyc"]["modules"]
    return [path.removesuffix(".py").replace("/", ".") for path in paths]


def test_the_compiled_list_names_per_message_modules() -> None:
    names = _compiled_module_names()
    assert "sotto.protocol.ratchet.session" in names
    assert "sotto.protocol.messages" in names
    assert all(importlib.import_module(name) for name in names)


def test_the_core_is_the_build_under_test() -> None:
    expect_compiled = os.environ.get("SOTTO_EXPECT_COMPILED") == "1"
    for name in _compiled_module_names():
        module_file = importlib.import_module(name).__file__
        assert module_file is not None
        compiled = not module_file.endswith(".py")
        assert compiled == expect_compiled, f"{name} is {module_file}"


def test_decoders_take_any_bytes_like_object_in_either_build() -> None:
    # A compiled function checks its annotations on entry: the decoders are annotated to take
    # what the plain build takes, so both builds answer alike.
    alice, bob = established_pair(seed=43)
    body = alice.encrypt(bob, b"bytes-like").body
    for data in (body, bytearray(body), memoryview(body)):
        assert SignalMessage.decode(data).serialized == body
    record = next(iter(bob.sessions.values()))
    for data in (bytearray(record.to_bytes()), memoryview(record.to_bytes())):
        assert SessionRecord.from_bytes(data).to_bytes() == record.to_bytes()
    for junk in (bytearray(b"\x44" * 40), memoryview(b"\x44" * 40)):
        with pytest.raises(DecodeError):
            SignalMessage.decode(junk)
        with pytest.raises(DecodeError):
            PreKeySignalMessage.decode(junk)
