"""Invite links and what the secret yields."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.client.invite import (
    InviteLink,
    derive_invite_keys,
    invite_proof,
    parse_link,
    proof_is_valid,
)
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError

SECRET = bytes(range(32))


def test_link_round_trip() -> None:
    link = InviteLink("http://127.0.0.1:8787", bytes(range(16)), SECRET)
    text = link.encode()
    assert text.startswith("sotto://invite?s=")
    parsed = parse_link(" " + text + "\n")
    assert (parsed.server_url, parsed.account_id, parsed.secret) == (link.server_url, link.account_id, SECRET)
    assert SECRET.hex() not in repr(parsed)


def test_derivation_is_deterministic_and_separates_keys() -> None:
    a, b = derive_invite_keys(SECRET), derive_invite_keys(SECRET)
    assert a.mailbox_id == b.mailbox_id and a.mailbox_key.public == b.mailbox_key.public
    assert len({a.mailbox_id, a.delivery_token, a.access_token, a.proof_key, a.mailbox_key.seed()}) == 5
    other = derive_invite_keys(bytes(32))
    assert other.mailbox_id != a.mailbox_id
    assert repr(a) == "InviteKeys(<secret>)"


def test_proof_binds_account_and_identity() -> None:
    keys = derive_invite_keys(SECRET)
    rng = seeded_rng(1)
    identity, other = KeyPair.generate(rng).public, KeyPair.generate(rng).public
    account = bytes(16)
    proof = invite_proof(keys, account, identity)
    assert proof_is_valid(keys, account, identity, proof)
    assert not proof_is_valid(keys, bytes([1]) * 16, identity, proof)
    assert not proof_is_valid(keys, account, other, proof)
    assert not proof_is_valid(derive_invite_keys(bytes(32)), account, identity, proof)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "https://invite?s=a&a=b&k=c",
        "sotto://invite?",
        "sotto://invite?s=aHR0cDovL3g&a=AAAAAAAAAAAAAAAAAAAAAA",
        "sotto://invite?s=aHR0cDovL3g&a=AAAAAAAAAAAAAAAAAAAAAA&k=AA&x=1",
        "sotto://invite?s=Zm9vOi8vYmFy&a=AAAAAAAAAAAAAAAAAAAAAA&k=" + "A" * 43,  # foo://bar
        "sotto://invite?s=aHR0cDovL3g&a=AAAA&k=" + "A" * 43,  # short account id
        "sotto://invite?s=aHR0cDovL3g&a=AAAAAAAAAAAAAAAAAAAAAA&k=" + "A" * 43 + "&k=" + "A" * 43,
    ],
)
def test_bad_links_are_decode_errors(text: str) -> None:
    with pytest.raises(DecodeError):
        parse_link(text)


def test_good_link_shape_parses() -> None:
    parse_link("sotto://invite?s=aHR0cDovL3g&a=AAAAAAAAAAAAAAAAAAAAAA&k=" + "A" * 43)


@given(st.text(max_size=300))
def test_parse_link_raises_decode_error_only(text: str) -> None:
    with contextlib.suppress(DecodeError):
        parse_link(text)


@given(st.text(max_size=100))
def test_parse_link_with_prefix_raises_decode_error_only(tail: str) -> None:
    with contextlib.suppress(DecodeError):
        parse_link("sotto://invite?" + tail)
