"""The harness itself works: libsignal talking to libsignal through the oracle.

These prove the oracle is right, so a later Sotto-vs-libsignal failure points at Sotto.
"""

from __future__ import annotations

from tests.interop.oracle import EXPECTED_VERSION, Oracle, from_hex


def test_hello_reports_pinned_version(oracle: Oracle) -> None:
    reply = oracle.call("hello")
    assert reply["version"] == EXPECTED_VERSION
    assert "encrypt" in reply["commands"]


def test_one_to_one_round_trip(oracle: Oracle) -> None:
    alice = oracle.new_party()
    bob = oracle.new_party()
    bundle = oracle.call("make_bundle", party=bob["party"])
    oracle.call(
        "process_bundle", party=alice["party"], remote_name=bob["name"], remote_device=bob["device"], **bundle
    )
    m = oracle.call(
        "encrypt", party=alice["party"], remote_name=bob["name"], remote_device=bob["device"], pt=b"hi"
    )
    assert m["type"] == 3
    got = oracle.call(
        "decrypt",
        party=bob["party"],
        remote_name=alice["name"],
        remote_device=alice["device"],
        type=m["type"],
        bytes=m["bytes"],
    )
    assert from_hex(got["pt"]) == b"hi"
