"""The sealed-row building blocks: the value codec and the store cipher."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sotto.crypto.random import seeded_rng
from sotto.errors import StoreCorruptedError
from sotto.store import codec
from sotto.store.cipher import StoreCipher

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.text(),
    st.binary(),
)


@given(st.lists(values, max_size=12))
def test_codec_round_trip(items: list[codec.Value]) -> None:
    assert codec.unpack(codec.pack(items), len(items)) == items


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=8))
def test_codec_refuses_arbitrary_bytes_with_one_error(data: bytes, count: int) -> None:
    with contextlib.suppress(StoreCorruptedError):
        codec.unpack(data, count)


def test_codec_counts_and_types() -> None:
    packed = codec.pack([b"x", "y", 3, True, None])
    with pytest.raises(StoreCorruptedError):
        codec.unpack(packed, 4)
    a, b, c, d, e = codec.unpack(packed, 5)
    assert (codec.as_bytes(a), codec.as_str(b), codec.as_int(c), codec.as_bool(d), codec.as_opt_int(e)) == (
        b"x",
        "y",
        3,
        True,
        None,
    )
    for wrong in (
        lambda: codec.as_bytes(b),
        lambda: codec.as_str(a),
        lambda: codec.as_int(d),
        lambda: codec.as_bool(c),
    ):
        with pytest.raises(StoreCorruptedError):
            wrong()


def test_seal_binds_table_column_and_row() -> None:
    cipher = StoreCipher(bytes(32), seeded_rng(1))
    sealed = cipher.seal("t", "c", b"row-1", b"secret")
    assert b"secret" not in sealed
    assert cipher.open("t", "c", b"row-1", sealed) == b"secret"
    assert cipher.seal("t", "c", b"row-1", b"secret") != sealed  # fresh nonce each time
    for table, column, row in (("u", "c", b"row-1"), ("t", "d", b"row-1"), ("t", "c", b"row-2")):
        with pytest.raises(StoreCorruptedError):
            cipher.open(table, column, row, sealed)
    # Length-prefixed parts: ("ab", "c") and ("a", "bc") are different places.
    assert StoreCipher.aad("ab", "c", b"") != StoreCipher.aad("a", "bc", b"")
    with pytest.raises(StoreCorruptedError):
        StoreCipher(bytes(range(32)), seeded_rng(1)).open("t", "c", b"row-1", sealed)
    with pytest.raises(StoreCorruptedError):
        cipher.open("t", "c", b"row-1", sealed[:20])


def test_index_values_are_keyed_and_separated() -> None:
    cipher = StoreCipher(bytes(32), seeded_rng(1))
    other = StoreCipher(bytes(range(32)), seeded_rng(1))
    assert cipher.index("name", b"bob") == cipher.index("name", b"bob")
    assert cipher.index("name", b"bob") != other.index("name", b"bob")
    assert cipher.index("name", b"bob") != cipher.index("account", b"bob")
    assert cipher.index("x", b"ab", b"c") != cipher.index("x", b"a", b"bc")
    assert repr(cipher) == "StoreCipher(<keys hidden>)"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(cipher)
