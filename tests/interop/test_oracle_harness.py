"""The harness itself works: libsignal talking to libsignal through the oracle, command by command.

These prove the oracle is right, so a later Sotto-vs-libsignal failure points at Sotto. The last
part checks the primitives Sotto already has (XEdDSA, the Kyber shim) against libsignal directly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sotto.crypto import kem, xeddsa
from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import seeded_rng, system_rng
from sotto.errors import InvalidSignatureError
from sotto.protocol.protobuf import bytes_field, decode_fields, uint_field
from tests.interop.oracle import (
    EXPECTED_VERSION,
    Oracle,
    OracleError,
    OracleTimeoutError,
    OracleUnavailableError,
    from_hex,
)

PREKEY = 3
WHISPER = 2
SENDER_KEY = 7
DUPLICATED_MESSAGE = 1  # libsignal ErrorCode


@dataclass(frozen=True)
class Party:
    handle: str
    name: str
    device: int
    reg_id: int
    identity_pub: bytes

    def remote(self) -> dict[str, Any]:
        return {"remote_name": self.name, "remote_device": self.device}


def make_party(oracle: Oracle, **fields: Any) -> Party:
    r = oracle.new_party(**fields)
    return Party(r["party"], r["name"], r["device"], r["reg_id"], from_hex(r["identity_pub"]))


def connect(oracle: Oracle, initiator: Party, responder: Party) -> None:
    """A session both ways: bundle, first PreKey message, one reply."""
    bundle = oracle.call("make_bundle", party=responder.handle)
    oracle.call("process_bundle", party=initiator.handle, **responder.remote(), **bundle)
    first = oracle.call("encrypt", party=initiator.handle, **responder.remote(), pt=b"first")
    oracle.call(
        "decrypt", party=responder.handle, **initiator.remote(), type=first["type"], bytes=first["bytes"]
    )
    reply = oracle.call("encrypt", party=responder.handle, **initiator.remote(), pt=b"reply")
    oracle.call(
        "decrypt", party=initiator.handle, **responder.remote(), type=reply["type"], bytes=reply["bytes"]
    )


def test_hello_reports_pinned_version(oracle: Oracle) -> None:
    reply = oracle.call("hello")
    assert reply["version"] == EXPECTED_VERSION
    assert {"encrypt_many", "sealed_v2_split", "fingerprint_compare"} <= set(reply["commands"])


def test_unknown_command_and_bad_input_are_errors(oracle: Oracle) -> None:
    assert oracle.try_call("no_such_command") == {
        "ok": False,
        "error": "TypeError: unknown cmd no_such_command",
    }
    with pytest.raises(OracleError) as e:
        oracle.call("inspect", type=WHISPER, bytes=b"\x44")
    assert "LibSignalError" in e.value.error
    assert e.value.code == 0
    assert oracle.call("hello")["version"] == EXPECTED_VERSION  # still serving


def test_missing_package_is_an_error_not_a_skip(tmp_path: Path) -> None:
    with pytest.raises(OracleUnavailableError, match="make node"):
        Oracle(node_modules=tmp_path)


def test_a_call_that_times_out_kills_the_process() -> None:
    with Oracle() as o:
        assert o.call("hello")["version"] == EXPECTED_VERSION
        with pytest.raises(OracleTimeoutError):
            o.call_within(1e-9, "encrypt_many", party="none", remote_name="x", remote_device=1, pts=[])
        assert not o.running
        with pytest.raises(OracleError, match="not running"):
            o.call("hello")


# ------------------------------------------------------------------------------------ 1:1
def test_one_to_one_first_message_then_replies(oracle: Oracle) -> None:
    alice, bob = make_party(oracle), make_party(oracle)
    bundle = oracle.call("make_bundle", party=bob.handle)
    assert bundle["pre_key_id"] is not None
    assert len(from_hex(bundle["kyber_pre_key_pub"])) == 1569
    oracle.call("process_bundle", party=alice.handle, **bob.remote(), **bundle)
    m = oracle.call("encrypt", party=alice.handle, **bob.remote(), pt=b"hello bob")
    assert m["type"] == PREKEY
    view = oracle.call("inspect", type=PREKEY, bytes=m["bytes"])
    assert view == {
        "version": 4,
        "registration_id": alice.reg_id,
        "pre_key_id": bundle["pre_key_id"],
        "signed_pre_key_id": bundle["signed_pre_key_id"],
    }
    held = oracle.call("prekeys_held", party=bob.handle)
    assert held["pre_key_ids"] == [bundle["pre_key_id"]]
    assert oracle.call("get_identity", party=bob.handle, **alice.remote()) == {"identity_pub": None}
    got = oracle.call("decrypt", party=bob.handle, **alice.remote(), type=m["type"], bytes=m["bytes"])
    assert from_hex(got["pt"]) == b"hello bob"
    held = oracle.call("prekeys_held", party=bob.handle)
    assert held["pre_key_ids"] == []  # the one-time prekey is consumed
    assert held["kyber_pre_key_ids"] == []  # so is a one-time Kyber prekey
    assert held["signed_pre_key_ids"] == [bundle["signed_pre_key_id"]]
    assert (
        from_hex(oracle.call("get_identity", party=bob.handle, **alice.remote())["identity_pub"])
        == alice.identity_pub
    )
    r = oracle.call("encrypt", party=bob.handle, **alice.remote(), pt=b"hello alice")
    assert r["type"] == WHISPER
    view = oracle.call("inspect", type=WHISPER, bytes=r["bytes"])
    assert view["version"] == 4
    assert view["counter"] == 0
    assert from_hex(view["pq_ratchet"])[0] == 1  # SPQR V1 payload
    got = oracle.call("decrypt", party=alice.handle, **bob.remote(), type=r["type"], bytes=r["bytes"])
    assert from_hex(got["pt"]) == b"hello alice"
    for me, peer in ((alice, bob), (bob, alice)):
        usable = oracle.call("session_usable", party=me.handle, **peer.remote())
        assert usable["usable"]
        assert usable["remote_registration_id"] == peer.reg_id


def test_batched_conversation_and_duplicate_error_code(oracle: Oracle) -> None:
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    pts = [os.urandom(n % 300) for n in range(300)]
    sent = oracle.call("encrypt_many", party=alice.handle, **bob.remote(), pts=pts)["messages"]
    assert [m["type"] for m in sent] == [WHISPER] * len(pts)
    order = list(reversed(sent[:50])) + sent[50:]  # some out of order
    got = oracle.call("decrypt_many", party=bob.handle, **alice.remote(), messages=order)["pts"]
    assert [from_hex(p) for p in got] == list(reversed(pts[:50])) + pts[50:]

    with pytest.raises(OracleError) as e:
        oracle.call(
            "decrypt", party=bob.handle, **alice.remote(), type=sent[7]["type"], bytes=sent[7]["bytes"]
        )
    assert e.value.code == DUPLICATED_MESSAGE

    more = oracle.call("encrypt_many", party=alice.handle, **bob.remote(), pts=[b"a", b"b"])["messages"]
    res = oracle.call(
        "decrypt_many", party=bob.handle, **alice.remote(), messages=[sent[0], *more], keep_going=True
    )["results"]
    assert [r["ok"] for r in res] == [False, True, True]
    assert res[0]["code"] == DUPLICATED_MESSAGE
    assert from_hex(res[2]["pt"]) == b"b"
    with pytest.raises(OracleError) as e:
        oracle.call("decrypt_many", party=bob.handle, **alice.remote(), messages=[more[0]])
    assert e.value.reply["index"] == 0


def test_bundle_without_one_time_key_and_last_resort_kyber(oracle: Oracle) -> None:
    bob = make_party(oracle)
    bundle = oracle.call("make_bundle", party=bob.handle, with_one_time=False, kyber_last_resort=True)
    assert bundle["pre_key_id"] is None
    for text in (b"one", b"two"):  # the last-resort Kyber key serves two initiators
        alice = make_party(oracle)
        oracle.call("process_bundle", party=alice.handle, **bob.remote(), **bundle)
        m = oracle.call("encrypt", party=alice.handle, **bob.remote(), pt=text)
        assert oracle.call("inspect", type=PREKEY, bytes=m["bytes"])["pre_key_id"] is None
        got = oracle.call("decrypt", party=bob.handle, **alice.remote(), type=m["type"], bytes=m["bytes"])
        assert from_hex(got["pt"]) == text


def test_archive_session_then_new_session(oracle: Oracle) -> None:
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    assert oracle.call("archive_session", party=alice.handle, **bob.remote()) == {"archived": True}
    assert not oracle.call("session_usable", party=alice.handle, **bob.remote())["usable"]
    with pytest.raises(OracleError):
        oracle.call("encrypt", party=alice.handle, **bob.remote(), pt=b"x")
    connect(oracle, alice, bob)
    assert oracle.call("session_usable", party=alice.handle, **bob.remote())["usable"]
    nobody = {"remote_name": str(uuid.uuid4()), "remote_device": 1}
    assert oracle.call("session_usable", party=alice.handle, **nobody) == {
        "usable": False,
        "exists": False,
        "record_bytes": 0,
    }


# -------------------------------------------------------------------------- sealed sender
def test_sealed_v1_round_trip(oracle: Oracle) -> None:
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    sealed = from_hex(
        oracle.call("sealed_v1_send", party=alice.handle, **bob.remote(), pt=b"sealed")["bytes"]
    )
    assert sealed[0] == 0x11
    usmc = oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=sealed)
    assert usmc["msg_type"] == WHISPER
    assert usmc["sender_uuid"] == alice.name
    assert usmc["sender_device"] == alice.device
    assert from_hex(usmc["sender_identity_pub"]) == alice.identity_pub
    assert usmc["cert_valid"]
    assert usmc["group_id"] is None
    got = oracle.call("sealed_v1_recv", party=bob.handle, bytes=sealed)
    assert from_hex(got["pt"]) == b"sealed"
    assert (got["sender_uuid"], got["sender_device"], got["msg_type"]) == (alice.name, alice.device, WHISPER)


def test_sealed_v1_inner_content_is_the_session_message(oracle: Oracle) -> None:
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    sealed = oracle.call("sealed_v1_send", party=alice.handle, **bob.remote(), pt=b"inner")["bytes"]
    usmc = oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=sealed)
    got = oracle.call(
        "decrypt", party=bob.handle, **alice.remote(), type=usmc["msg_type"], bytes=usmc["content"]
    )
    assert from_hex(got["pt"]) == b"inner"


def test_sealed_v1_first_message_is_a_prekey_message(oracle: Oracle) -> None:
    alice, bob = make_party(oracle), make_party(oracle)
    bundle = oracle.call("make_bundle", party=bob.handle)
    oracle.call("process_bundle", party=alice.handle, **bob.remote(), **bundle)
    sealed = oracle.call("sealed_v1_send", party=alice.handle, **bob.remote(), pt=b"sealed first")["bytes"]
    assert oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=sealed)["msg_type"] == PREKEY
    got = oracle.call("sealed_v1_recv", party=bob.handle, bytes=sealed)
    assert (from_hex(got["pt"]), got["msg_type"]) == (b"sealed first", PREKEY)


def test_sender_certificates_and_trust_set(oracle: Oracle) -> None:
    before = oracle.call("trust")
    assert oracle.call("trust") == before  # stable until trust_set
    alice = make_party(oracle)
    cert = oracle.call(
        "sender_cert", uuid=alice.name, device=3, identity_pub=alice.identity_pub, expires_ms=10_000
    )
    ok = oracle.call("sender_cert_validate", cert=cert["cert"], now_ms=9_999)
    assert ok["valid"]
    assert (ok["sender_uuid"], ok["sender_device"], ok["expiration_ms"]) == (alice.name, 3, 10_000)
    assert not oracle.call("sender_cert_validate", cert=cert["cert"], now_ms=10_001)["valid"]
    root = KeyPair.generate(system_rng)
    try:
        mine = oracle.call("trust_set", root_priv=root.private.to_bytes(), key_id=7)
        assert from_hex(mine["trust_root_pub"]) == root.public.to_bytes()
        assert mine["server_key_id"] == 7
        assert not oracle.call("sender_cert_validate", cert=cert["cert"], now_ms=0)["valid"]
        assert oracle.call(
            "sender_cert_validate", cert=cert["cert"], now_ms=0, trust_root_pub=before["trust_root_pub"]
        )["valid"]
    finally:
        oracle.call(
            "trust_set",
            root_priv=before["trust_root_priv"],
            server_priv=before["server_priv"],
            key_id=before["server_key_id"],
        )
    assert oracle.call("trust")["trust_root_pub"] == before["trust_root_pub"]


def test_sealed_v2_raw_content_to_two_recipients(oracle: Oracle) -> None:
    alice, bob, carol = make_party(oracle), make_party(oracle), make_party(oracle, device=2)
    connect(oracle, alice, bob)
    connect(oracle, alice, carol)
    out = oracle.call(
        "sealed_v2_send",
        party=alice.handle,
        recipients=[[bob.name, bob.device], [carol.name, carol.device]],
        pt=b"shared content",
        group_id=b"group-1",
    )
    assert from_hex(out["sent"])[0] == 0x23
    split = oracle.call("sealed_v2_split", sent=out["sent"])
    assert split["received"] == out["received"]
    assert split["recipients"][carol.name] == {"device_ids": [2], "registration_ids": [carol.reg_id]}
    assert split["excluded"] == []
    for who in (bob, carol):
        received = from_hex(out["received"][who.name])
        assert received[0] == 0x22
        usmc = oracle.call("sealed_decrypt_to_usmc", party=who.handle, bytes=received)
        assert from_hex(usmc["content"]) == b"shared content"
        assert usmc["msg_type"] == SENDER_KEY
        assert from_hex(usmc["group_id"]) == b"group-1"
        assert usmc["sender_uuid"] == alice.name
        assert usmc["cert_valid"]
    labelled = oracle.call(
        "sealed_v2_send", party=alice.handle, recipients=[[bob.name, bob.device]], pt=b"p", msg_type=PREKEY
    )
    usmc = oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=labelled["received"][bob.name])
    assert (usmc["msg_type"], usmc["group_id"]) == (PREKEY, None)
    with pytest.raises(OracleError):  # bob cannot open carol's copy
        oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=out["received"][carol.name])


def test_sealed_v2_group_message_and_excluded(oracle: Oracle) -> None:
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    dist = str(uuid.uuid4())
    left = str(uuid.uuid4())
    out = oracle.call(
        "sealed_v2_send",
        party=alice.handle,
        recipients=[[bob.name, bob.device]],
        pt=b"to the group",
        group={"distribution_id": dist, "group_id": b"g"},
        excluded=[left],
    )
    assert oracle.call("sealed_v2_split", sent=out["sent"])["excluded"] == [left]
    usmc = oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=out["received"][bob.name])
    assert usmc["content"] == out["skm"]
    assert from_hex(usmc["group_id"]) == b"g"
    got = oracle.call(
        "group_recv",
        party=bob.handle,
        sender_name=alice.name,
        sender_device=alice.device,
        skdm=out["skdm"],
        skm=usmc["content"],
    )
    assert from_hex(got["pt"]) == b"to the group"


# ------------------------------------------------------------------------------ sender keys
def test_group_sender_keys(oracle: Oracle) -> None:
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    dist = str(uuid.uuid4())
    skdm = oracle.call("group_create_skdm", party=alice.handle, distribution_id=dist)["skdm"]
    view = oracle.call("inspect", type="skdm", bytes=skdm)
    assert view["distribution_id"] == dist
    assert view["iteration"] == 0
    oracle.call("group_recv", party=bob.handle, sender_name=alice.name, sender_device=alice.device, skdm=skdm)
    for i, text in enumerate((b"g0", b"g1", b"g2")):
        sent = oracle.call("group_send", party=alice.handle, distribution_id=dist, pt=text)
        skm = oracle.call("inspect", type=SENDER_KEY, bytes=sent["skm"])
        assert (skm["distribution_id"], skm["iteration"], skm["chain_id"]) == (dist, i, view["chain_id"])
        got = oracle.call(
            "group_recv",
            party=bob.handle,
            sender_name=alice.name,
            sender_device=alice.device,
            skm=sent["skm"],
        )
        assert from_hex(got["pt"]) == text


def test_group_send_with_sealed_v2(oracle: Oracle) -> None:
    alice, bob = make_party(oracle), make_party(oracle)
    connect(oracle, alice, bob)
    dist = str(uuid.uuid4())
    out = oracle.call(
        "group_send",
        party=alice.handle,
        distribution_id=dist,
        pt=b"sealed group",
        sealed_v2_to=[[bob.name, 1]],
    )
    usmc = oracle.call("sealed_decrypt_to_usmc", party=bob.handle, bytes=out["sealed_v2"][bob.name])
    assert usmc["content"] == out["skm"]
    got = oracle.call(
        "group_recv",
        party=bob.handle,
        sender_name=alice.name,
        sender_device=1,
        skdm=out["skdm"],
        skm=out["skm"],
    )
    assert from_hex(got["pt"]) == b"sealed group"


# ---------------------------------------------------------------------------- fingerprints
def test_fingerprints_agree_on_both_sides(oracle: Oracle) -> None:
    a_id, b_id = uuid.uuid4().bytes, uuid.uuid4().bytes
    a_key, b_key = (KeyPair.generate(system_rng).public.to_bytes() for _ in range(2))
    common: dict[str, Any] = {"version": 2, "iterations": 5200}
    fa = oracle.call(
        "fingerprint", **common, local_id=a_id, local_key=a_key, remote_id=b_id, remote_key=b_key
    )
    fb = oracle.call(
        "fingerprint", **common, local_id=b_id, local_key=b_key, remote_id=a_id, remote_key=a_key
    )
    assert fa["displayable"] == fb["displayable"]
    assert len(fa["displayable"]) == 60
    assert fa["displayable"].isdigit()
    assert fa["scannable"] != fb["scannable"]  # each side encodes its own view
    assert oracle.call("fingerprint_compare", scannable_a=fa["scannable"], scannable_b=fb["scannable"])[
        "match"
    ]
    other = KeyPair.generate(system_rng).public.to_bytes()
    fc = oracle.call(
        "fingerprint", **common, local_id=b_id, local_key=b_key, remote_id=a_id, remote_key=other
    )
    assert fc["displayable"] != fa["displayable"]
    assert not oracle.call("fingerprint_compare", scannable_a=fa["scannable"], scannable_b=fc["scannable"])[
        "match"
    ]


# ------------------------------------------------------ Sotto's primitives against libsignal
def test_xeddsa_both_ways(oracle: Oracle) -> None:
    rng = seeded_rng(1)
    for n in range(20):
        kp = KeyPair.generate(rng)
        msg = rng(n * 7)
        sig = xeddsa.sign(kp.private, msg, rng)
        assert oracle.call("verify", pub=kp.public.to_bytes(), msg=msg, sig=sig)["valid"]
        bad = bytearray(sig)
        bad[n % 64] ^= 0x10
        assert not oracle.call("verify", pub=kp.public.to_bytes(), msg=msg, sig=bytes(bad))["valid"]
        theirs = from_hex(oracle.call("sign", priv=kp.private.to_bytes(), msg=msg)["sig"])
        xeddsa.verify(kp.public, msg, theirs)
        with pytest.raises(InvalidSignatureError):
            xeddsa.verify(kp.public, msg + b"!", theirs)


def test_sotto_verifies_libsignal_bundle_signatures(oracle: Oracle) -> None:
    bob = make_party(oracle)
    for _ in range(3):
        b = oracle.call("make_bundle", party=bob.handle)
        identity = PublicKey.from_bytes(from_hex(b["identity_pub"]))
        xeddsa.verify(identity, from_hex(b["signed_pre_key_pub"]), from_hex(b["signed_pre_key_sig"]))
        xeddsa.verify(identity, from_hex(b["kyber_pre_key_pub"]), from_hex(b["kyber_pre_key_sig"]))
        assert not xeddsa.is_valid(
            identity, from_hex(b["kyber_pre_key_pub"]), from_hex(b["signed_pre_key_sig"])
        )


@dataclass
class PythonBundle:
    """Private halves stay here; the fields go to libsignal."""

    identity: KeyPair
    signed: KeyPair
    one_time: KeyPair
    kyber: kem.KemKeyPair
    fields: dict[str, Any]


def python_bundle(reg_id: int = 4242) -> PythonBundle:
    rng = system_rng
    identity, signed, one_time = KeyPair.generate(rng), KeyPair.generate(rng), KeyPair.generate(rng)
    kyber = kem.KemKeyPair.generate(rng)
    fields = {
        "registration_id": reg_id,
        "device_id": 1,
        "identity_pub": identity.public.to_bytes(),
        "pre_key_id": 17,
        "pre_key_pub": one_time.public.to_bytes(),
        "signed_pre_key_id": 23,
        "signed_pre_key_pub": signed.public.to_bytes(),
        "signed_pre_key_sig": xeddsa.sign(identity.private, signed.public.to_bytes(), rng),
        "kyber_pre_key_id": 31,
        "kyber_pre_key_pub": kyber.public.to_bytes(),
        "kyber_pre_key_sig": xeddsa.sign(identity.private, kyber.public.to_bytes(), rng),
    }
    return PythonBundle(identity, signed, one_time, kyber, fields)


def test_libsignal_accepts_bundle_signed_by_sotto(oracle: Oracle) -> None:
    for _ in range(5):
        alice = make_party(oracle)
        pb = python_bundle()
        oracle.call(
            "process_bundle", party=alice.handle, remote_name=str(uuid.uuid4()), remote_device=1, **pb.fields
        )


@pytest.mark.parametrize("field", ["signed_pre_key_sig", "kyber_pre_key_sig"])
def test_libsignal_rejects_bundle_with_a_broken_signature(oracle: Oracle, field: str) -> None:
    alice = make_party(oracle)
    pb = python_bundle()
    sig = bytearray(pb.fields[field])
    sig[5] ^= 1
    pb.fields[field] = bytes(sig)
    with pytest.raises(OracleError, match="signature"):
        oracle.call(
            "process_bundle", party=alice.handle, remote_name=str(uuid.uuid4()), remote_device=1, **pb.fields
        )


def test_libsignal_prekey_message_carries_kyber_ciphertext_sotto_decapsulates(oracle: Oracle) -> None:
    alice = make_party(oracle)
    pb = python_bundle()
    bob_name = str(uuid.uuid4())
    oracle.call("process_bundle", party=alice.handle, remote_name=bob_name, remote_device=1, **pb.fields)
    m = oracle.call("encrypt", party=alice.handle, remote_name=bob_name, remote_device=1, pt=b"to python")
    assert m["type"] == PREKEY
    wire = from_hex(m["bytes"])
    assert wire[0] == 0x44
    outer = decode_fields(wire[1:])
    assert outer[1] == 17  # one-time prekey id
    assert outer[6] == 23  # signed prekey id
    assert outer[7] == 31  # kyber prekey id
    assert outer[5] == alice.reg_id  # the sender's registration id
    assert outer[3] == alice.identity_pub
    ciphertext = outer[8]
    assert isinstance(ciphertext, bytes)
    assert len(ciphertext) == kem.CIPHERTEXT_LENGTH
    assert ciphertext[0] == kem.KYBER1024_TYPE
    secret = pb.kyber.decapsulate(ciphertext)
    assert len(secret) == kem.SHARED_SECRET_LENGTH
    assert secret != kem.KemKeyPair.generate(system_rng).decapsulate(ciphertext)  # bound to our key


def test_uuid_addresses_put_service_ids_in_the_first_message(oracle: Oracle) -> None:
    """libsignal binds both addresses into a PreKey message when names are ServiceIds (wire doc §8)."""
    alice = make_party(oracle)
    pb = python_bundle()
    bob_name = str(uuid.uuid4())
    oracle.call("process_bundle", party=alice.handle, remote_name=bob_name, remote_device=1, **pb.fields)
    wire = from_hex(
        oracle.call("encrypt", party=alice.handle, remote_name=bob_name, remote_device=1, pt=b"x")["bytes"]
    )
    inner = decode_fields(wire[1:])[4]
    assert isinstance(inner, bytes)
    addresses = decode_fields(inner[1:-8])[6]
    expected = b"\x00" + uuid.UUID(alice.name).bytes + b"\x01" + b"\x00" + uuid.UUID(bob_name).bytes + b"\x01"
    assert addresses == expected


def test_sealed_v2_split_rejects_garbage(oracle: Oracle) -> None:
    sent = bytes([0x23]) + uint_field(1, 1) + bytes_field(2, b"x")
    with pytest.raises(OracleError):
        oracle.call("sealed_v2_split", sent=sent)


def test_libsignal_bench_prints_one_json_line() -> None:
    script = Path(__file__).resolve().parents[2] / "bench" / "libsignal_bench.mjs"
    node = shutil.which("node")
    assert node is not None, "node is not on PATH; run `make node`"
    for mode in ("one-direction", "ping-pong"):
        out = subprocess.run(
            [node, str(script), "--n", "20", "--setups", "2", "--mode", mode, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        result = json.loads(out.stdout)
        assert (result["mode"], result["n"], result["libsignal"]) == (mode, 20, EXPECTED_VERSION)
        assert result["per_message_us"] > 0
        assert result["setup_us"] > 0


def _serve(command: list[str], requests: str, env: dict[str, str] | None = None) -> list[str]:
    out = subprocess.run(
        command, input=requests, capture_output=True, text=True, timeout=120, check=True, env=env
    )
    return out.stdout.splitlines()


def test_libsignal_bench_serves_slices() -> None:
    # bench/protocol.py interleaves slices of every side through this line protocol.
    script = Path(__file__).resolve().parents[2] / "bench" / "libsignal_bench.mjs"
    node = shutil.which("node")
    assert node is not None, "node is not on PATH; run `make node`"
    lines = _serve([node, str(script), "--serve"], "one-direction 20\nping-pong 10\nsetup 2\nquit\n")
    assert json.loads(lines[0]) == {"ready": True, "libsignal": EXPECTED_VERSION}
    assert len(lines) == 4
    assert all(float(line) > 0 for line in lines[1:])


def test_protocol_bench_serves_slices_of_the_build_it_imports() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    lines = _serve(
        [sys.executable, str(root / "bench" / "protocol.py"), "--serve"],
        "one-direction 20\nping-pong 10\nsetup 2\nquit\n",
        env,
    )
    assert json.loads(lines[0]) == {"ready": True, "compiled": False}
    assert len(lines) == 4
    assert all(float(line) > 0 for line in lines[1:])


@pytest.mark.parametrize("request_line", ["one-direction\n", "sideways 5\n", "setup -1\n", "ping-pong x\n"])
def test_protocol_bench_refuses_a_malformed_request(request_line: str) -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "protocol.py"), "--serve"],
        input=request_line,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
    )
    assert out.returncode != 0
    assert "bad request" in out.stderr
