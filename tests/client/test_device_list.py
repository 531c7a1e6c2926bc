"""The device list: its encoding (checked against the worked example in docs/device-list.md), every
refusal of a list or a chain, the resolution of concurrent changes, and what a contact shows."""

from __future__ import annotations

import contextlib
import itertools
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.client import device_list as dl
from sotto.client.device_list import ConflictRule, Device, DeviceList, SignedDeviceList
from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import seeded_rng
from sotto.errors import (
    DecodeError,
    DeviceListError,
    DeviceListForkError,
    DeviceListRollbackError,
    DeviceListSignatureError,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "device-list.md"
T0 = 1_767_225_600_000
ACCOUNT = KeyPair.generate(seeded_rng(1))
KEYS = [KeyPair.generate(seeded_rng(100 + i)).public for i in range(12)]


def device(device_id: int, name: str | None = None, key: int | None = None) -> Device:
    return Device(
        device_id, KEYS[device_id if key is None else key], name or f"device {device_id}", T0 + device_id
    )


def first(*ids: int) -> SignedDeviceList:
    """A chain from version 1 to a list holding ``ids``: the signed lists, in order."""
    rng = seeded_rng(7)
    signed = dl.first_list(device(ids[0]), ACCOUNT, rng)
    for device_id in ids[1:]:
        signed = dl.add_device(signed.content, device(device_id), ACCOUNT, rng)
    return signed


# ------------------------------------------------------------------------ encoding
def _doc_blocks() -> list[bytes]:
    """The ``hex`` blocks of the doc: hex digits before each ``#`` comment."""
    blocks = re.findall(r"```hex\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [bytes.fromhex("".join(line.split("#")[0] for line in block.splitlines())) for block in blocks]


def test_the_documented_worked_example() -> None:
    phone = KeyPair.from_private_bytes(bytes([0x11]) * 32).public
    laptop = KeyPair.from_private_bytes(bytes([0x22]) * 32).public
    v1 = DeviceList(1, dl.NO_PREVIOUS, (Device(1, phone, "phone", T0),))
    v2 = DeviceList(
        2, v1.hash, (Device(1, phone, "phone", T0), Device(2, laptop, "Åsa's laptop", T0 + 86_400_000))
    )
    text = DOC.read_text(encoding="utf-8")
    assert _doc_blocks() == [v1.encode(), v2.encode()]
    assert f"Its hash is `{v1.hash.hex()}`" in text and f"Its hash is `{v2.hash.hex()}`" in text
    assert f"{len(v1.encode())} bytes" in text and f"{len(v2.encode())} bytes" in text
    assert f"{dl.MAX_ENCODED_LENGTH:,} bytes" in text


def test_hash_is_domain_separated_sha256_of_the_body() -> None:
    import hashlib

    content = first(1, 2).content
    assert content.hash == hashlib.sha256(b"sotto:device-list:v1:hash" + content.encode()).digest()
    assert content.hash != hashlib.sha256(content.encode()).digest()


def test_round_trips() -> None:
    rng = seeded_rng(3)
    chain = [first(1)]
    chain.append(dl.add_device(chain[-1].content, device(2, "Åsa's laptop 💻"), ACCOUNT, rng))
    chain.append(dl.add_device(chain[-1].content, Device(127, KEYS[3], "x" * 64, 2**63 - 1), ACCOUNT, rng))
    chain.append(dl.rename_device(chain[-1].content, 2, "work laptop", ACCOUNT, rng))
    chain.append(dl.remove_device(chain[-1].content, 1, ACCOUNT, rng))
    chain.append(dl.remove_device(chain[-1].content, 2, ACCOUNT, rng))
    chain.append(dl.remove_device(chain[-1].content, 127, ACCOUNT, rng))
    for signed in chain:
        assert SignedDeviceList.decode(signed.encode()) == signed
    assert [s.version for s in chain] == list(range(1, 8))
    assert chain[-1].content.devices == ()
    full = first(*range(1, 9))
    assert SignedDeviceList.decode(full.encode()) == full


def test_the_longest_list_decodes() -> None:
    devices = tuple(Device(i, KEYS[i], "é" * 32, 2**63 - 1) for i in range(1, 9))
    merged = tuple(bytes([i]) * 32 for i in range(2, 9))
    longest = dl.sign(DeviceList(2**63 - 1, bytes([1]) * 32, devices, merged), ACCOUNT, seeded_rng(1))
    assert len(longest.encode()) == dl.MAX_ENCODED_LENGTH
    assert SignedDeviceList.decode(longest.encode()) == longest


def test_the_hash_does_not_cover_the_randomized_signature() -> None:
    content = first(1, 2).content
    one, two = dl.sign(content, ACCOUNT, seeded_rng(1)), dl.sign(content, ACCOUNT, seeded_rng(2))
    assert one.signature != two.signature and one.hash == two.hash


def test_planning_refusals() -> None:
    current = first(1, 2).content
    with pytest.raises(ValueError, match="taken"):
        dl.add_device(current, device(2, key=5), ACCOUNT, seeded_rng(1))
    with pytest.raises(ValueError, match="no device"):
        dl.remove_device(current, 3, ACCOUNT, seeded_rng(1))
    with pytest.raises(ValueError, match="own key"):
        dl.add_device(current, device(3, key=1), ACCOUNT, seeded_rng(1))
    with pytest.raises(ValueError, match="at most 8"):
        dl.add_device(first(*range(1, 9)).content, device(9), ACCOUNT, seeded_rng(1))
    assert dl.free_device_id(DeviceList(2, bytes([1]) * 32, (device(1), device(3)))) == 2
    with pytest.raises(ValueError, match="at most 8"):
        dl.free_device_id(first(*range(1, 9)).content)


# ------------------------------------------------------------------------ decoding refusals
def _body(content: DeviceList) -> bytearray:
    return bytearray(content.encode())


def _signed(body: bytes | bytearray) -> bytes:
    return bytes(body) + bytes(64)


_V2 = first(1, 2).content
_DEVICE1 = 1 + 8 + 32 + 1 + 1  # offset of the first device in a list without merged hashes
_NAME1 = _DEVICE1 + 1 + 33 + 8  # offset of its name length


def _mutated(change: str) -> bytes:
    body = _body(_V2)
    if change == "format":
        body[0] = 2
    elif change == "version 0":
        body[1:9] = bytes(8)
    elif change == "version 2^63":
        body[1:9] = (2**63).to_bytes(8)
    elif change == "version 1 with a previous":
        body[1:9] = (1).to_bytes(8)
    elif change == "version 2 without a previous":
        body[9:41] = bytes(32)
    elif change == "8 merged":
        body[41] = 8
    elif change == "merged unsorted":
        body[41:42] = bytes([2]) + bytes([2]) * 32 + bytes([1]) * 32
    elif change == "merged repeated":
        body[41:42] = bytes([2]) + bytes([1]) * 64
    elif change == "merged names previous":
        body[41:42] = bytes([1]) + _V2.previous
    elif change == "merged in version 1":
        body = _body(first(1).content)
        body[41:42] = bytes([1]) + bytes([1]) * 32
    elif change == "9 devices":
        body[42] = 9
    elif change == "device id 0":
        body[_DEVICE1] = 0
    elif change == "device id 128":
        body[_DEVICE1] = 128
    elif change == "devices unsorted":
        body = _body(_V2)
        first_len = _NAME1 + 1 + body[_NAME1] - _DEVICE1
        one, rest = body[_DEVICE1 : _DEVICE1 + first_len], body[_DEVICE1 + first_len :]
        body = body[:_DEVICE1] + rest + one
    elif change == "device ids repeated":
        second = _NAME1 + 1 + body[_NAME1]
        body[second] = 1
    elif change == "device keys repeated":
        second = _NAME1 + 1 + body[_NAME1]
        body[second + 1 : second + 34] = body[_DEVICE1 + 1 : _DEVICE1 + 34]
    elif change == "key type":
        body[_DEVICE1 + 1] = 0x08
    elif change == "key not below p":
        body[_DEVICE1 + 2 : _DEVICE1 + 34] = (2**255 - 19).to_bytes(32, "little")
    elif change == "key top bit":
        body[_DEVICE1 + 33] |= 0x80
    elif change == "key of low order":
        body[_DEVICE1 + 2 : _DEVICE1 + 34] = bytes(32)
    elif change == "key of mixed order":
        torsion = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
        u = (int.from_bytes(KEYS[1].raw, "little"), int.from_bytes(torsion, "little"))
        mixed = _add_montgomery(*u)
        body[_DEVICE1 + 2 : _DEVICE1 + 34] = mixed.to_bytes(32, "little")
    elif change == "empty name":
        body[_NAME1 : _NAME1 + 1 + body[_NAME1]] = b"\x00"
    elif change == "name of 65 bytes":
        body[_NAME1 : _NAME1 + 1 + body[_NAME1]] = bytes([65]) + b"x" * 65
    elif change == "name not UTF-8":
        body[_NAME1 + 1] = 0xFF
    elif change == "name with a newline":
        body[_NAME1 + 1] = 0x0A
    elif change == "added at 2^63":
        body[_NAME1 - 8 : _NAME1] = (2**63).to_bytes(8)
    elif change == "trailing byte":
        body += b"\x00"
    elif change == "truncated":
        body = body[:-1]
    else:
        raise AssertionError(change)
    return _signed(body)


def _add_montgomery(u1: int, u2: int) -> int:
    """u of P1 + P2 on Curve25519 (either sign choice; both are mixed-order when P2 is torsion)."""
    p = 2**255 - 19
    a = 486662

    def v(u: int) -> int:
        rhs = (u**3 + a * u * u + u) % p
        root = pow(rhs, (p + 3) // 8, p)
        if root * root % p != rhs:
            root = root * pow(2, (p - 1) // 4, p) % p
        assert root * root % p == rhs
        return root

    v1, v2 = v(u1), v(u2)
    slope = (v2 - v1) * pow(u2 - u1, -1, p) % p
    return (slope * slope - a - u1 - u2) % p


CHANGES = [
    "format",
    "version 0",
    "version 2^63",
    "version 1 with a previous",
    "version 2 without a previous",
    "8 merged",
    "merged unsorted",
    "merged repeated",
    "merged names previous",
    "merged in version 1",
    "9 devices",
    "device id 0",
    "device id 128",
    "devices unsorted",
    "device ids repeated",
    "device keys repeated",
    "key type",
    "key not below p",
    "key top bit",
    "key of low order",
    "key of mixed order",
    "empty name",
    "name of 65 bytes",
    "name not UTF-8",
    "name with a newline",
    "added at 2^63",
    "trailing byte",
    "truncated",
]


@pytest.mark.parametrize("change", CHANGES)
def test_decode_refuses(change: str) -> None:
    with pytest.raises(DecodeError):
        SignedDeviceList.decode(_mutated(change))


def test_decode_refuses_short_and_long_inputs() -> None:
    for data in (b"", bytes(1), bytes(64), _V2.encode()):
        with pytest.raises(DecodeError):
            SignedDeviceList.decode(data)
    with pytest.raises(DecodeError, match="at most 1187"):
        SignedDeviceList.decode(bytes(dl.MAX_ENCODED_LENGTH + 1))


def test_the_unmutated_encoding_decodes() -> None:
    """The refusals above are not refusals of everything: the same construction without a change decodes."""
    assert SignedDeviceList.decode(_signed(_body(_V2))).content == _V2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1300))
def test_decode_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        SignedDeviceList.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_decode_of_a_spliced_valid_list_raises_only_decode_error(at: int, chunk: bytes) -> None:
    data = first(1, 2, 3).encode()
    at %= len(data)
    for spliced in (data[:at] + chunk + data[at + len(chunk) :], data[:at] + chunk + data[at:]):
        with contextlib.suppress(DecodeError):
            assert SignedDeviceList.decode(spliced).encode() == spliced  # decodes only a canonical form


# ------------------------------------------------------------------------ signatures and chains
def _chain() -> list[SignedDeviceList]:
    rng = seeded_rng(5)
    chain = [dl.first_list(device(1), ACCOUNT, rng)]
    chain.append(dl.add_device(chain[-1].content, device(2), ACCOUNT, rng))
    chain.append(dl.add_device(chain[-1].content, device(3), ACCOUNT, rng))
    return chain


def test_verify_chain_accepts_a_good_chain() -> None:
    chain = _chain()
    assert dl.verify_chain(chain, ACCOUNT.public) == chain[-1].content
    assert dl.verify_chain(chain[1:], ACCOUNT.public, after=chain[0].content) == chain[-1].content
    with pytest.raises(ValueError):
        dl.verify_chain([], ACCOUNT.public)


def test_a_bad_signature_is_refused() -> None:
    chain = _chain()
    other = KeyPair.generate(seeded_rng(2))
    forged = dl.sign(chain[1].content, other, seeded_rng(1))
    flipped = SignedDeviceList(
        chain[1].content, chain[1].signature[:-1] + bytes([chain[1].signature[-1] ^ 1])
    )
    for bad in (forged, flipped, SignedDeviceList(chain[1].content, bytes(64))):
        with pytest.raises(DeviceListSignatureError) as caught:
            dl.verify_chain([chain[0], bad, chain[2]], ACCOUNT.public)
        assert caught.value.version == 2
    with pytest.raises(DeviceListSignatureError):
        chain[0].verify(other.public)


def test_a_fork_is_refused() -> None:
    chain = _chain()
    rival = dl.add_device(chain[1].content, device(4), ACCOUNT, seeded_rng(9))  # beside chain[2]
    assert dl.concurrent(rival.content, chain[2].content)
    assert not dl.concurrent(chain[2].content, chain[2].content)
    after_rival = dl.add_device(rival.content, device(5), ACCOUNT, seeded_rng(9))
    with pytest.raises(DeviceListForkError) as caught:
        dl.verify_chain([after_rival], ACCOUNT.public, after=chain[2].content)
    assert (caught.value.ours, caught.value.theirs) == (3, 4)
    with pytest.raises(DeviceListForkError):
        dl.verify_chain([rival], ACCOUNT.public, after=chain[0].content)  # a gap: version 2 missing
    with pytest.raises(DeviceListForkError):
        dl.verify_chain([chain[0], chain[2]], ACCOUNT.public)


def test_a_version_going_back_is_refused() -> None:
    chain = _chain()
    for ours, theirs in ((chain[2], chain[1]), (chain[2], chain[2]), (chain[1], chain[0])):
        with pytest.raises(DeviceListRollbackError) as caught:
            dl.verify_chain([theirs], ACCOUNT.public, after=ours.content)
        assert (caught.value.ours, caught.value.theirs) == (ours.version, theirs.version)
    # A list that names the right predecessor but does not raise the version.
    stale = dl.sign(DeviceList(2, chain[2].hash, chain[2].content.devices), ACCOUNT, seeded_rng(1))
    with pytest.raises(DeviceListRollbackError):
        dl.verify_chain([chain[2], stale], ACCOUNT.public)


def test_every_refusal_is_a_device_list_error() -> None:
    assert issubclass(DeviceListSignatureError, DeviceListError)
    assert issubclass(DeviceListForkError, DeviceListError)
    assert issubclass(DeviceListRollbackError, DeviceListError)


# ------------------------------------------------------------------------ concurrent changes
def test_additions_from_both_sides_are_united() -> None:
    parent = first(1)
    a = dl.add_device(parent.content, device(2), ACCOUNT, seeded_rng(1))
    b = dl.add_device(parent.content, device(3), ACCOUNT, seeded_rng(2))
    resolution = dl.resolve(parent.content, [a, b], ACCOUNT, seeded_rng(3))
    content = resolution.signed.content
    assert [d.device_id for d in content.devices] == [1, 2, 3] and resolution.conflicts == ()
    assert content.version == 3
    assert content.previous == min(a.hash, b.hash) and content.merged == (max(a.hash, b.hash),)
    for head in (a, b):  # whichever head a device or contact holds, the resolution follows it
        assert dl.verify_chain([parent, head, resolution.signed], ACCOUNT.public) == content
    assert SignedDeviceList.decode(resolution.signed.encode()) == resolution.signed


def test_removal_wins_over_a_rename() -> None:
    parent = first(1, 2)
    a = dl.remove_device(parent.content, 2, ACCOUNT, seeded_rng(1))
    b = dl.rename_device(parent.content, 2, "renamed", ACCOUNT, seeded_rng(2))
    resolution = dl.resolve(parent.content, [a, b], ACCOUNT, seeded_rng(3))
    assert resolution.signed.content.device_ids == {1}
    (conflict,) = resolution.conflicts
    assert conflict.rule is ConflictRule.REMOVAL_WINS and conflict.kept is None
    assert conflict.dropped == (b.content.device(2),)


def test_a_removal_and_an_unrelated_change_both_apply() -> None:
    parent = first(1, 2, 3)
    a = dl.remove_device(parent.content, 2, ACCOUNT, seeded_rng(1))
    b = dl.rename_device(parent.content, 3, "renamed", ACCOUNT, seeded_rng(2))
    resolution = dl.resolve(parent.content, [a, b], ACCOUNT, seeded_rng(3))
    assert resolution.conflicts == ()
    assert [(d.device_id, d.name) for d in resolution.signed.content.devices] == [
        (1, "device 1"),
        (3, "renamed"),
    ]


def test_same_id_set_differently_keeps_the_lower_hash() -> None:
    parent = first(1)
    a = dl.add_device(parent.content, device(2, "laptop", key=2), ACCOUNT, seeded_rng(1))
    b = dl.add_device(parent.content, device(2, "desktop", key=3), ACCOUNT, seeded_rng(2))
    low, high = sorted((a, b), key=lambda s: s.hash)
    resolution = dl.resolve(parent.content, [a, b], ACCOUNT, seeded_rng(3))
    (conflict,) = resolution.conflicts
    assert conflict.rule is ConflictRule.LOWER_HASH_WINS
    assert conflict.kept == low.content.device(2) and conflict.dropped == (high.content.device(2),)
    assert resolution.signed.content.device(2) == low.content.device(2)


def test_one_key_added_under_two_ids_keeps_the_lower_id() -> None:
    parent = first(1)
    a = dl.add_device(parent.content, device(2, key=7), ACCOUNT, seeded_rng(1))
    b = dl.add_device(parent.content, device(3, key=7), ACCOUNT, seeded_rng(2))
    resolution = dl.resolve(parent.content, [a, b], ACCOUNT, seeded_rng(3))
    assert resolution.signed.content.device_ids == {1, 2}
    (conflict,) = resolution.conflicts
    assert conflict.rule is ConflictRule.SAME_KEY and conflict.device_id == 3


def test_additions_past_the_cap_leave_out_the_highest_new_ids() -> None:
    parent = first(1, 2, 3, 4, 5, 6)
    a = dl.next_list(parent.content, (*parent.content.devices, device(7), device(8)), ACCOUNT, seeded_rng(1))
    b = dl.next_list(parent.content, (*parent.content.devices, device(9), device(10)), ACCOUNT, seeded_rng(2))
    resolution = dl.resolve(parent.content, [a, b], ACCOUNT, seeded_rng(3))
    assert resolution.signed.content.device_ids == set(range(1, 9))
    assert [(c.device_id, c.rule) for c in resolution.conflicts] == [
        (9, ConflictRule.OVER_CAPACITY),
        (10, ConflictRule.OVER_CAPACITY),
    ]


def test_mutual_removal_leaves_no_device() -> None:
    parent = first(1, 2)
    a = dl.remove_device(parent.content, 1, ACCOUNT, seeded_rng(1))
    b = dl.remove_device(parent.content, 2, ACCOUNT, seeded_rng(2))
    resolution = dl.resolve(parent.content, [a, b], ACCOUNT, seeded_rng(3))
    assert resolution.signed.content.devices == () and resolution.conflicts == ()


def test_resolve_refusals() -> None:
    parent = first(1)
    a = dl.add_device(parent.content, device(2), ACCOUNT, seeded_rng(1))
    b = dl.add_device(parent.content, device(3), ACCOUNT, seeded_rng(2))
    with pytest.raises(ValueError, match="distinct"):
        dl.resolve(parent.content, [a, a], ACCOUNT, seeded_rng(3))
    later = dl.add_device(a.content, device(4), ACCOUNT, seeded_rng(4))
    with pytest.raises(DeviceListForkError):
        dl.resolve(parent.content, [later, b], ACCOUNT, seeded_rng(3))
    forged = dl.sign(b.content, KeyPair.generate(seeded_rng(8)), seeded_rng(1))
    with pytest.raises(DeviceListSignatureError):
        dl.resolve(parent.content, [a, forged], ACCOUNT, seeded_rng(3))
    parent = first(1, 2)
    a = dl.add_device(parent.content, device(3), ACCOUNT, seeded_rng(1))
    stale = dl.sign(DeviceList(parent.version, parent.hash, a.content.devices), ACCOUNT, seeded_rng(1))
    with pytest.raises(DeviceListRollbackError):
        dl.resolve(parent.content, [a, stale], ACCOUNT, seeded_rng(3))


_EDIT = st.tuples(
    st.lists(st.integers(4, 11), unique=True, max_size=3),  # ids to add (keys may collide)
    st.lists(st.integers(1, 11), max_size=2),  # keys for the additions
    st.dictionaries(st.integers(1, 3), st.sampled_from(["a", "b"]), max_size=2),  # renames
    st.lists(st.integers(1, 3), unique=True, max_size=2),  # removals
)


def _head(
    parent: DeviceList, edit: tuple[list[int], list[int], dict[int, str], list[int]], seed: int
) -> SignedDeviceList:
    added, keys, renamed, removed = edit
    devices = {d.device_id: d for d in parent.devices}
    for n, device_id in enumerate(added):
        key = keys[n] if n < len(keys) else device_id
        if all(d.key != KEYS[key] for d in devices.values()):
            devices[device_id] = Device(device_id, KEYS[key], f"new {device_id}", T0 + seed)
    for device_id, name in renamed.items():
        old = devices[device_id]
        devices[device_id] = Device(device_id, old.key, name, old.added_ms)
    for device_id in removed:
        devices.pop(device_id, None)
    return dl.next_list(parent, devices.values(), ACCOUNT, seeded_rng(seed))


@settings(max_examples=60, deadline=None)
@given(st.lists(_EDIT, min_size=2, max_size=3), st.integers(0, 2**32))
def test_resolution_is_deterministic_and_order_independent(edits: list[object], seed: int) -> None:
    parent = first(1, 2, 3)
    heads = [_head(parent.content, edit, n) for n, edit in enumerate(edits)]  # type: ignore[arg-type]
    if len({h.hash for h in heads}) < 2:
        return
    results = [
        dl.resolve(parent.content, order, ACCOUNT, seeded_rng(seed + n))
        for n, order in enumerate(itertools.permutations(heads))
    ]
    first_result = results[0]
    for result in results[1:]:
        assert result.signed.content == first_result.signed.content
        assert result.signed.hash == first_result.signed.hash
        assert result.conflicts == first_result.conflicts
    content = first_result.signed.content
    for head in heads:
        assert dl.verify_chain([parent, head, first_result.signed], ACCOUNT.public) == content
    removed = {i for h in heads for i in parent.content.device_ids - h.content.device_ids}
    assert not removed & content.device_ids  # removals win
    assert len(content.devices) <= dl.MAX_DEVICES


# ------------------------------------------------------------------------ what a contact shows
def test_compare_reports_added_removed_and_renamed() -> None:
    before = DeviceList(2, bytes([1]) * 32, (device(1), device(2), device(3)))
    rekeyed = Device(3, KEYS[9], "device 3", T0)
    after = DeviceList(3, before.hash, (device(1, "phone"), rekeyed, device(4)))
    changes = dl.compare(before, after)
    assert changes.added == (rekeyed, device(4))
    assert changes.removed == (device(2), device(3))
    assert changes.renamed == ((device(1), device(1, "phone")),)
    assert changes.devices_changed
    only_renamed = dl.compare(before, DeviceList(3, before.hash, (device(1, "phone"), device(2), device(3))))
    assert not only_renamed.devices_changed and len(only_renamed.renamed) == 1


def test_accept() -> None:
    chain = _chain()
    first_sight = dl.accept(None, chain[1:], ACCOUNT.public)
    assert first_sight.content == chain[2].content and first_sight.changes is None
    update = dl.accept(chain[0].content, chain, ACCOUNT.public)  # the held list is repeated first
    assert update.content == chain[2].content
    assert update.changes is not None and update.changes.added == (device(2), device(3))
    again = dl.accept(chain[2].content, [chain[2]], ACCOUNT.public)
    assert (
        again.content == chain[2].content and again.changes is not None and not again.changes.devices_changed
    )
    with pytest.raises(DeviceListRollbackError):
        dl.accept(chain[2].content, [chain[1]], ACCOUNT.public)
    with pytest.raises(DeviceListSignatureError):
        dl.accept(chain[0].content, chain[1:], KeyPair.generate(seeded_rng(2)).public)


def test_a_device_is_constructed_only_valid() -> None:
    with pytest.raises(ValueError):
        Device(1, PublicKey(bytes(32)), "zero key", T0)
    with pytest.raises(ValueError):
        Device(1, KEYS[1], "\ud800", T0)
    with pytest.raises(ValueError):
        Device(1, KEYS[1], "tab\there", T0)
    assert Device(1, KEYS[1], "a b", T0).name == "a b"


def test_repr_hides_device_names() -> None:
    named = Device(1, KEYS[1], "Åsa's laptop", T0)
    listed = DeviceList(1, dl.NO_PREVIOUS, (named,))
    for text in (repr(named), repr(listed), repr(dl.sign(listed, ACCOUNT, seeded_rng(1)))):
        assert "Åsa" not in text and "device_id=1" in text
