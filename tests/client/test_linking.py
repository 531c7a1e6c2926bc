"""Linking's pure part: the link, the provisioning message, its sealing and its parts; every
decoder refuses what it must with DecodeError only, and no repr shows a key or a name."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotto.client import device_list as dl
from sotto.client import linking as ln
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.errors import DecodeError, DecryptionError, DeviceListSignatureError

RNG = seeded_rng(7)
ACCOUNT = KeyPair.generate(seeded_rng(1))
EPHEMERAL = KeyPair.generate(seeded_rng(2))
DEVICE = KeyPair.generate(seeded_rng(3))
SECRET = bytes(range(32))
LINK = ln.DeviceLink("https://relay.example:8787", SECRET, EPHEMERAL.public, DEVICE.public, "Åsa's laptop")
T0 = 1_767_225_600_000


def provisioning(contacts: int = 2, *, device_key: KeyPair = DEVICE) -> ln.Provisioning:
    first = dl.first_list(dl.Device(1, ACCOUNT.public, "phone", T0), ACCOUNT, RNG)
    signed = dl.add_device(first.content, dl.Device(2, device_key.public, "laptop", T0 + 1), ACCOUNT, RNG)
    people = tuple(
        ln.LinkedContact(
            f"friend {i}",
            "" if i % 2 else f"Friend {i}",
            bytes([i]) * 16,
            KeyPair.generate(seeded_rng(50 + i)).public,
            verified=i % 2 == 0,
            blocked=i == 1,
            mailbox=None if i == 1 else ("https://relay.example", bytes([i + 1]) * 16, bytes(32)),
        )
        for i in range(contacts)
    )
    return ln.Provisioning(bytes(range(16)), ACCOUNT, "Åsa", signed, people)


def test_link_round_trips_and_its_keys_come_from_the_secret() -> None:
    text = LINK.encode()
    assert text.startswith("sotto://link#s=")
    parsed = ln.parse_link(f"  {text}\n")
    assert parsed.encode() == text and parsed.device_name == "Åsa's laptop"
    keys = ln.derive_link_keys(parsed.secret)
    again = ln.derive_link_keys(SECRET)
    assert (keys.mailbox_id, keys.delivery_token) == (again.mailbox_id, again.delivery_token)
    assert keys.mailbox_key.public.raw == again.mailbox_key.public.raw
    assert len({keys.mailbox_id, keys.delivery_token}) == 2


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("sotto://link#", "sotto://invite?"),
        lambda t: t + "&x=AA",
        lambda t: t + "&k=AA",
        lambda t: t.replace("&n=", "&n=%41"),
        lambda t: t.replace("&n=", "&n=+"),
        lambda t: t.split("&d=")[0],
        lambda t: t[:-1],
        lambda t: t + "A" * 3000,
    ],
)
def test_a_mangled_link_is_refused(mangle: object) -> None:
    with pytest.raises(DecodeError):
        ln.parse_link(mangle(LINK.encode()))  # type: ignore[operator]


def test_a_link_with_one_key_twice_or_a_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="ephemeral"):
        ln.DeviceLink(LINK.server_url, SECRET, DEVICE.public, DEVICE.public, "x")
    with pytest.raises(ValueError, match="http"):
        ln.DeviceLink("ftp://relay", SECRET, EPHEMERAL.public, DEVICE.public, "x")
    with pytest.raises(ValueError, match="name"):
        ln.DeviceLink(LINK.server_url, SECRET, EPHEMERAL.public, DEVICE.public, "tab\there")


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_parse_link_raises_only_decode_error(text: str) -> None:
    with contextlib.suppress(DecodeError):
        ln.parse_link(text)
    with contextlib.suppress(DecodeError):
        ln.parse_link("sotto://link#" + text)


def test_provisioning_round_trips_and_checks_the_device() -> None:
    message = provisioning(3)
    data = message.encode()
    decoded = ln.Provisioning.decode(data)
    assert decoded.encode() == data
    assert decoded.account_key.public == ACCOUNT.public
    assert decoded.contacts == message.contacts
    assert ln.check(decoded, DEVICE.public).device_id == 2
    with pytest.raises(ValueError, match="does not hold"):
        ln.check(decoded, EPHEMERAL.public)
    forged = ln.Provisioning(
        message.account_id, EPHEMERAL, message.display_name, message.devices, message.contacts
    )
    with pytest.raises(DeviceListSignatureError):
        ln.check(forged, DEVICE.public)


def test_reprs_show_no_key_secret_or_name() -> None:
    message = provisioning(2)
    shown = " ".join(
        repr(x)
        for x in (LINK, ln.derive_link_keys(SECRET), message, *message.contacts, ln.parts(b"x" * 10)[0])
    )
    for hidden in ("friend", "Friend", "Åsa", "relay.example", SECRET.hex()[:8]):
        assert hidden not in shown
    assert ACCOUNT.private.to_bytes().hex()[:8] not in shown


def test_every_truncation_and_each_extension_is_refused() -> None:
    data = provisioning(2).encode()
    for size in range(len(data)):
        with pytest.raises(DecodeError):
            ln.Provisioning.decode(data[:size])
    with pytest.raises(DecodeError):
        ln.Provisioning.decode(data + b"\x00")


def test_non_canonical_forms_are_refused() -> None:
    data = bytearray(provisioning(1).encode())
    key_at = 1 + 16
    unclamped = bytearray(data)
    unclamped[key_at] |= 7  # clamping clears the low 3 bits
    with pytest.raises(DecodeError, match="clamped"):
        ln.Provisioning.decode(bytes(unclamped))
    wrong_format = bytearray(data)
    wrong_format[0] = 2
    with pytest.raises(DecodeError, match="format"):
        ln.Provisioning.decode(bytes(wrong_format))
    twice = provisioning(1)
    with pytest.raises(ValueError, match="own name"):
        ln.Provisioning(twice.account_id, ACCOUNT, "x", twice.devices, twice.contacts * 2)


@given(st.binary(max_size=2_000))
@settings(max_examples=300)
def test_provisioning_decode_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        ln.Provisioning.decode(data)
    with contextlib.suppress(DecodeError):
        ln.Provisioning.decode(bytes((ln.FORMAT,)) + data)


@given(st.integers(min_value=0, max_value=5_000), st.binary(min_size=1, max_size=4))
@settings(max_examples=200)
def test_a_flipped_byte_is_refused_or_decodes_to_other_bytes(position: int, xor: bytes) -> None:
    data = bytearray(provisioning(2).encode())
    position %= len(data)
    data[position] ^= xor[0] or 1
    try:
        decoded = ln.Provisioning.decode(bytes(data))
    except DecodeError:
        return
    assert decoded.encode() == bytes(data)  # canonical: one encoding per message


def test_sealing_opens_only_with_the_link_and_its_ephemeral_key() -> None:
    message = provisioning(2).encode()
    sealed = ln.seal(message, LINK, RNG)
    assert ln.open_sealed(sealed, LINK, EPHEMERAL) == message
    assert ln.seal(message, LINK, RNG) != sealed  # a fresh key for each sealing
    other_secret = ln.DeviceLink(LINK.server_url, bytes(32), EPHEMERAL.public, DEVICE.public, "x")
    other_device = ln.DeviceLink(LINK.server_url, SECRET, EPHEMERAL.public, ACCOUNT.public, "x")
    for link, key in ((other_secret, EPHEMERAL), (other_device, EPHEMERAL), (LINK, DEVICE)):
        with pytest.raises(DecryptionError):
            ln.open_sealed(sealed, link, key)
    for i in (0, 5, 40, len(sealed) - 1):
        flipped = bytearray(sealed)
        flipped[i] ^= 1
        with pytest.raises((DecryptionError, DecodeError)):
            ln.open_sealed(bytes(flipped), LINK, EPHEMERAL)


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_open_sealed_raises_only_its_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError, DecryptionError):
        ln.open_sealed(data, LINK, EPHEMERAL)


def test_parts_join_in_any_order_and_refuse_mixing() -> None:
    sealed = bytes(range(256)) * 600  # 153,600 bytes: 3 parts
    cut = ln.parts(sealed)
    assert [p.total for p in cut] == [3, 3, 3]
    decoded = [ln.decode_part(p.encode()) for p in reversed(cut)]
    assert ln.join(decoded[:2]) is None
    assert ln.join(decoded + decoded[:1]) == sealed
    with pytest.raises(DecodeError):
        ln.join([*decoded, ln.Part(0, 3, b"other")])
    with pytest.raises(DecodeError):
        ln.join([decoded[0], ln.Part(0, 2, b"x")])
    with pytest.raises(ValueError):
        ln.parts(bytes(ln.PART_BYTES * ln.MAX_PARTS + 1))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00\x00\x00\x01",
        b"\x02\x00\x00\x00\x01x",
        b"\x01\x00\x01\x00\x01x",
        b"\x01\x00\x00\x00\x02x",
    ],
)
def test_a_bad_part_is_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        ln.decode_part(data)


@given(st.binary(max_size=200))
def test_decode_part_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        ln.decode_part(data)


def test_the_largest_message_fits_in_its_parts() -> None:
    sealed_max = 1 + 33 + ln.MAX_MESSAGE_BYTES + 16
    assert sealed_max <= ln.PART_BYTES * ln.MAX_PARTS
    assert ln.PART_BYTES + 5 < 65_535  # one part and the padding marker fit the largest bucket


_KEYS = [KeyPair.generate(seeded_rng(200 + i)).public for i in range(8)]
_names = st.text(min_size=1, max_size=12).filter(lambda t: 1 <= len(t.encode()) <= 48)


@st.composite
def linked_contacts(draw: st.DrawFn) -> tuple[ln.LinkedContact, ...]:
    count = draw(st.integers(min_value=0, max_value=6))
    names = draw(st.lists(_names, min_size=count, max_size=count, unique=True))
    ids = draw(st.lists(st.binary(min_size=16, max_size=16), min_size=count, max_size=count, unique=True))
    contacts = []
    for name, account_id in zip(names, ids, strict=True):
        mailbox = draw(
            st.none()
            | st.tuples(
                st.sampled_from(["https://relay.example", "http://127.0.0.1:8787"]),
                st.binary(min_size=16, max_size=16),
                st.binary(min_size=32, max_size=32),
            )
        )
        contacts.append(
            ln.LinkedContact(
                name,
                draw(st.just("") | _names),
                account_id,
                draw(st.sampled_from(_KEYS)),
                verified=draw(st.booleans()),
                blocked=draw(st.booleans()),
                mailbox=mailbox,
            )
        )
    return tuple(contacts)


@given(linked_contacts(), _names)
@settings(max_examples=100, deadline=None)
def test_any_provisioning_round_trips(contacts: tuple[ln.LinkedContact, ...], name: str) -> None:
    message = ln.Provisioning(bytes(16), ACCOUNT, name, provisioning(0).devices, contacts)
    data = message.encode()
    decoded = ln.Provisioning.decode(data)
    assert decoded.contacts == contacts and decoded.display_name == name
    assert decoded.encode() == data
