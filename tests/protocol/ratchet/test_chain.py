"""Chain key and message keys: libsignal's known-answer vector, and the SPQR salt."""

from __future__ import annotations

from sotto.protocol.ratchet.chain import ChainKey, MessageKeys
from sotto.protocol.ratchet.root import RootKey

# rust/protocol/src/ratchet/keys.rs, test_chain_key_derivation
SEED = bytes.fromhex("8ab72d6f4cc5ac0d387eaf463378ddb28edd07385b1cb01250c715982e7ad48f")
MESSAGE_KEY = bytes.fromhex("bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217")
MAC_KEY = bytes.fromhex("c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b")
NEXT_CHAIN_KEY = bytes.fromhex("28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d")


def test_libsignal_chain_key_derivation() -> None:
    chain_key = ChainKey(SEED, 0)
    keys = chain_key.message_keys(None)
    assert keys.cipher_key == MESSAGE_KEY
    assert keys.mac_key == MAC_KEY
    assert keys.counter == 0
    following = chain_key.next()
    assert following.key == NEXT_CHAIN_KEY
    assert following.index == 1
    assert following.message_keys(None).counter == 1


def test_step_is_seed_then_next() -> None:
    chain_key = ChainKey(SEED, 7)
    seed, following = chain_key.step()
    assert seed == chain_key.message_key_seed()
    assert following == chain_key.next()
    assert following.key == NEXT_CHAIN_KEY and following.index == 8


def test_spqr_key_salts_the_message_keys() -> None:
    chain_key = ChainKey(SEED, 0)
    salted = chain_key.message_keys(b"\x01" * 32)
    assert salted.cipher_key != MESSAGE_KEY
    assert salted == MessageKeys.derive(chain_key.message_key_seed(), 0, b"\x01" * 32)
    assert len(salted.iv) == 16


def test_reprs_hide_key_material() -> None:
    chain_key = ChainKey(SEED, 3)
    keys = chain_key.message_keys(None)
    root = RootKey(SEED)
    for text in (repr(chain_key), repr(keys), repr(root), str(keys)):
        for secret in (SEED, MESSAGE_KEY, keys.mac_key, keys.iv):
            assert secret.hex() not in text
            assert secret.hex()[:8] not in text
    assert "index=3" in repr(chain_key)
