"""Linking a new device: the link it shows, and the provisioning message an existing device seals
to it.

Pure: no I/O, no clock; randomness is an argument. The byte layouts are in
``docs/device-linking.md``; in short, the new device draws a 32-byte secret ``s``, an ephemeral
X25519 key pair ``E`` and its own device key pair ``D``, and shows::

    sotto://link#s=<server URL>&k=<s>&e=<E public>&d=<D public>&n=<device name>   (base64url)

The one-use provisioning mailbox comes from ``s``::

    HKDF-SHA256(ikm = s, info = "sotto:link:v1:mailbox", 80 bytes)
        = mailbox id (16) ‖ mailbox key seed (32, Ed25519) ‖ delivery token (32)

An existing device seals the :class:`Provisioning` to ``E``, bound to ``s``::

    key    = HKDF-SHA256(ikm = X25519(e', E), salt = s,
                         info = "sotto:link:v1:seal" ‖ E ‖ e'public, 32 bytes)
    sealed = 0x01 ‖ e'public (33) ‖ AES-256-GCM(key, 12 zero bytes, message,
                                                aad = 0x01 ‖ E ‖ e'public ‖ D)

(a fresh ``e'`` for each sealing, so a key is never used twice), and cuts ``sealed`` into
:func:`parts` of at most :data:`PART_BYTES`, each one envelope in the mailbox.

Contract: :func:`parse_link`, :meth:`Provisioning.decode` and :func:`decode_part` raise
:class:`~sotto.errors.DecodeError` and nothing else, on any input; :func:`open_sealed` raises
:class:`~sotto.errors.DecryptionError` (or DecodeError) and nothing else. Every length is bounded
and every encoding canonical. No repr here shows a key, a secret, a token or a name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

from sotto.client import device_list as dl
from sotto.crypto import dh
from sotto.crypto.aead import aes256_gcm_decrypt, aes256_gcm_encrypt
from sotto.crypto.ed25519 import SigningKey
from sotto.crypto.kdf import bytes_equal, hkdf_sha256
from sotto.crypto.keys import PUBLIC_KEY_LENGTH, RAW_KEY_LENGTH, KeyPair, PublicKey, clamp
from sotto.crypto.random import Rng
from sotto.errors import DecodeError, DecryptionError, InvalidKeyError
from sotto.wire import b64
from sotto.wire.limits import DELIVERY_TOKEN_LENGTH, ID_LENGTH

FORMAT: Final = 0x01
SECRET_LENGTH: Final = 32
LINK_PREFIX: Final = "sotto://link#"
MAX_URL_BYTES: Final = 512
MAX_LINK_LENGTH: Final = 2_048
MAILBOX_INFO: Final = b"sotto:link:v1:mailbox"
SEAL_INFO: Final = b"sotto:link:v1:seal"
_SEED: Final = 32

MAX_CONTACTS: Final = 1_000
"""Contacts a provisioning message carries at most."""
MAX_TEXT_BYTES: Final = 256
"""A profile name, a contact's local or display name: as the content layer bounds names."""
PART_BYTES: Final = 60_000
"""Sealed bytes per envelope: a part and its header pad to the relay's largest bucket (64 KiB)."""
MAX_PARTS: Final = 24
"""Enough for :data:`MAX_CONTACTS` contacts at their longest (about 1.1 MB)."""
_PART_HEADER: Final = 5


def _text_problem(text: str, limit: int, what: str) -> str | None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{what} is UTF-8 text"
    if not 1 <= size <= limit:
        return f"{what} is 1 to {limit} UTF-8 bytes"
    return None


def _check_url(url: str) -> str | None:
    if (problem := _text_problem(url, MAX_URL_BYTES, "a relay URL")) is not None:
        return problem
    try:
        parts = urlsplit(url)
    except ValueError:
        return "malformed relay URL"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "a relay URL is http(s)"
    return None


# --------------------------------------------------------------------------- the link
@dataclass(frozen=True, slots=True, repr=False)
class LinkKeys:
    """The one-use provisioning mailbox a link's secret yields."""

    mailbox_id: bytes
    mailbox_key: SigningKey
    delivery_token: bytes

    def __repr__(self) -> str:
        return "LinkKeys(<secret>)"


def derive_link_keys(secret: bytes) -> LinkKeys:
    if len(secret) != SECRET_LENGTH:
        raise ValueError(f"a link secret is {SECRET_LENGTH} bytes")
    okm = hkdf_sha256(secret, ID_LENGTH + _SEED + DELIVERY_TOKEN_LENGTH, MAILBOX_INFO)
    return LinkKeys(okm[:ID_LENGTH], SigningKey(okm[ID_LENGTH : ID_LENGTH + _SEED]), okm[ID_LENGTH + _SEED :])


@dataclass(frozen=True, slots=True, repr=False)
class DeviceLink:
    """What the new device shows: its relay, the one-time secret, its ephemeral key, its own
    device key and the name it asks for."""

    server_url: str
    secret: bytes
    ephemeral: PublicKey
    device_key: PublicKey
    device_name: str

    def __post_init__(self) -> None:
        problem = _check_url(self.server_url)
        if problem is None and len(self.secret) != SECRET_LENGTH:
            problem = f"a link secret is {SECRET_LENGTH} bytes"
        if problem is None and not (dh.is_canonical(self.ephemeral) and dh.is_canonical(self.device_key)):
            problem = "a link's keys are canonical prime-order points"
        if problem is None and bytes_equal(self.ephemeral.to_bytes(), self.device_key.to_bytes()):
            problem = "the ephemeral key is not the device key"
        if problem is None:
            problem = dl._name_problem(self.device_name)
        if problem is not None:
            raise ValueError(problem)

    def encode(self) -> str:
        return (
            f"{LINK_PREFIX}s={b64.encode(self.server_url.encode())}&k={b64.encode(self.secret)}"
            f"&e={b64.encode(self.ephemeral.to_bytes())}&d={b64.encode(self.device_key.to_bytes())}"
            f"&n={b64.encode(self.device_name.encode())}"
        )

    def __repr__(self) -> str:
        return "DeviceLink(<secret>)"


def parse_link(link: str) -> DeviceLink:
    """Parse a link exactly as :meth:`DeviceLink.encode` writes it (surrounding spaces aside)."""
    if not isinstance(link, str) or len(link) > MAX_LINK_LENGTH:
        raise DecodeError("not a device link")
    link = link.strip()
    if not link.startswith(LINK_PREFIX):
        raise DecodeError("a device link starts with sotto://link#")
    try:
        params = parse_qs(link[len(LINK_PREFIX) :], keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise DecodeError("malformed device link") from None
    if set(params) != {"s", "k", "e", "d", "n"} or any(len(v) != 1 for v in params.values()):
        raise DecodeError("a device link has exactly the parameters s, k, e, d and n")
    if link != link.replace("%", "").replace("+", ""):
        raise DecodeError("a device link holds base64url only")
    try:
        url = b64.decode(params["s"][0], max_length=MAX_URL_BYTES).decode("utf-8")
        name = b64.decode(params["n"][0], max_length=dl.MAX_NAME_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("a device link's text is not UTF-8") from None
    try:
        return DeviceLink(
            url,
            b64.decode(params["k"][0], length=SECRET_LENGTH),
            PublicKey.from_bytes(b64.decode(params["e"][0], length=PUBLIC_KEY_LENGTH)),
            PublicKey.from_bytes(b64.decode(params["d"][0], length=PUBLIC_KEY_LENGTH)),
            name,
        )
    except (InvalidKeyError, ValueError) as error:  # messages name the rule, never the bytes
        raise DecodeError(f"device link: {error}") from None


# --------------------------------------------------------------------------- the message
_VERIFIED, _BLOCKED, _MAILBOX = 1, 2, 4


@dataclass(frozen=True, slots=True, repr=False)
class LinkedContact:
    """What a new device needs to know and reach one contact: who they are (account id and
    identity key, as trusted), what we call them, and the mailbox they gave us (if any)."""

    name: str
    display_name: str
    account_id: bytes
    identity_key: PublicKey
    verified: bool = False
    blocked: bool = False
    mailbox: tuple[str, bytes, bytes] | None = None
    """(relay URL, mailbox id, delivery token)."""

    def __post_init__(self) -> None:
        problem = _text_problem(self.name, MAX_TEXT_BYTES, "a contact's name")
        if problem is None and self.display_name:
            problem = _text_problem(self.display_name, MAX_TEXT_BYTES, "a display name")
        if problem is None and len(self.account_id) != ID_LENGTH:
            problem = f"an account id is {ID_LENGTH} bytes"
        if problem is None and self.mailbox is not None:
            url, mailbox_id, token = self.mailbox
            problem = _check_url(url)
            if problem is None and (len(mailbox_id), len(token)) != (ID_LENGTH, DELIVERY_TOKEN_LENGTH):
                problem = "a mailbox id is 16 bytes and its delivery token 32"
        if problem is not None:
            raise ValueError(problem)

    def __repr__(self) -> str:
        return f"LinkedContact(verified={self.verified}, blocked={self.blocked}, <hidden>)"

    def encode(self) -> bytes:
        flags = (
            (_VERIFIED if self.verified else 0)
            | (_BLOCKED if self.blocked else 0)
            | (_MAILBOX if self.mailbox else 0)
        )
        out = [bytes((flags,)), self.account_id, self.identity_key.to_bytes()]
        out += [_text(self.name), _text(self.display_name)]
        if self.mailbox is not None:
            url, mailbox_id, token = self.mailbox
            out += [_text(url), mailbox_id, token]
        return b"".join(out)


def _text(text: str) -> bytes:
    data = text.encode("utf-8")
    return len(data).to_bytes(2) + data


@dataclass(frozen=True, slots=True, repr=False)
class Provisioning:
    """What an existing device hands a new one: the account's identity key pair and id, the
    profile name, the signed device list with the new device on it, and the contacts."""

    account_id: bytes
    account_key: KeyPair
    display_name: str
    devices: dl.SignedDeviceList
    contacts: tuple[LinkedContact, ...]

    def __post_init__(self) -> None:
        problem = _text_problem(self.display_name, MAX_TEXT_BYTES, "a profile name")
        if problem is None and len(self.account_id) != ID_LENGTH:
            problem = f"an account id is {ID_LENGTH} bytes"
        if problem is None and len(self.contacts) > MAX_CONTACTS:
            problem = f"at most {MAX_CONTACTS} contacts"
        if problem is None and len({c.name for c in self.contacts}) != len(self.contacts):
            problem = "each contact has its own name"
        if problem is None and len({c.account_id for c in self.contacts}) != len(self.contacts):
            problem = "each contact has its own account"
        if problem is not None:
            raise ValueError(problem)

    def __repr__(self) -> str:
        return f"Provisioning(version={self.devices.version}, contacts={len(self.contacts)}, <secret>)"

    def encode(self) -> bytes:
        devices = self.devices.encode()
        return b"".join(
            (
                bytes((FORMAT,)),
                self.account_id,
                self.account_key.private.to_bytes(),
                _text(self.display_name),
                len(devices).to_bytes(2),
                devices,
                len(self.contacts).to_bytes(2),
                *(c.encode() for c in self.contacts),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> Provisioning:
        """Parse a provisioning message; raises DecodeError and nothing else (signatures are
        checked by :func:`check`)."""
        data = bytes(data)
        if len(data) > MAX_MESSAGE_BYTES:
            raise DecodeError(f"a provisioning message is at most {MAX_MESSAGE_BYTES} bytes")
        reader = dl._Reader(data)
        try:
            if reader.byte() != FORMAT:
                raise DecodeError("unknown provisioning format")
            account_id = reader.take(ID_LENGTH)
            raw = reader.take(RAW_KEY_LENGTH)
            if clamp(raw) != raw:
                raise DecodeError("the account key is not a clamped private key")
            name = _read_text(reader, MAX_TEXT_BYTES)
            devices = dl.SignedDeviceList.decode(reader.take(_u16(reader)))
            count = _u16(reader)
            if count > MAX_CONTACTS:
                raise DecodeError(f"at most {MAX_CONTACTS} contacts")
            contacts = tuple(_read_contact(reader) for _ in range(count))
            if reader.rest:
                raise DecodeError("bytes after the last contact")
            return cls(account_id, KeyPair.from_private_bytes(raw), name, devices, contacts)
        except (InvalidKeyError, ValueError) as error:
            raise DecodeError(f"provisioning: {error}") from None


def _u16(reader: dl._Reader) -> int:
    return int.from_bytes(reader.take(2))


def _read_text(reader: dl._Reader, limit: int, *, empty: bool = False) -> str:
    size = _u16(reader)
    if size > limit or (size == 0 and not empty):
        raise DecodeError(f"a text is 1 to {limit} bytes")
    try:
        return reader.take(size).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("a text is not UTF-8") from None


def _read_contact(reader: dl._Reader) -> LinkedContact:
    flags = reader.byte()
    if flags & ~(_VERIFIED | _BLOCKED | _MAILBOX):
        raise DecodeError("unknown contact flags")
    account_id = reader.take(ID_LENGTH)
    key = PublicKey.from_bytes(reader.take(PUBLIC_KEY_LENGTH))
    if not dh.is_canonical(key):
        raise DecodeError("a contact's identity key is not canonical")
    name = _read_text(reader, MAX_TEXT_BYTES)
    display_name = _read_text(reader, MAX_TEXT_BYTES, empty=True)
    mailbox = None
    if flags & _MAILBOX:
        url = _read_text(reader, MAX_URL_BYTES)
        mailbox = (url, reader.take(ID_LENGTH), reader.take(DELIVERY_TOKEN_LENGTH))
    return LinkedContact(
        name, display_name, account_id, key, bool(flags & _VERIFIED), bool(flags & _BLOCKED), mailbox
    )


_CONTACT_MAX: Final = 1 + ID_LENGTH + PUBLIC_KEY_LENGTH + 3 * 2 + 2 * MAX_TEXT_BYTES + MAX_URL_BYTES + 48
MAX_MESSAGE_BYTES: Final = (
    1 + ID_LENGTH + RAW_KEY_LENGTH + 2 + MAX_TEXT_BYTES + 2 + dl.MAX_ENCODED_LENGTH + 2
) + MAX_CONTACTS * _CONTACT_MAX
"""The longest provisioning message (about 1.1 MB)."""


def check(provisioning: Provisioning, device_key: PublicKey) -> dl.Device:
    """The new device's entry in the provisioning's device list, if the account key signed the
    list and the list holds ``device_key``; :class:`~sotto.errors.DeviceListSignatureError` or
    ValueError otherwise."""
    content = provisioning.devices.verify(provisioning.account_key.public)
    ours = next((d for d in content.devices if bytes_equal(d.key.to_bytes(), device_key.to_bytes())), None)
    if ours is None:
        raise ValueError("the device list does not hold this device")
    return ours


# --------------------------------------------------------------------------- sealing
_EMPTY_NONCE: Final = bytes(12)


def _seal_key(shared: bytes, secret: bytes, ephemeral: PublicKey, sender: PublicKey) -> bytes:
    return hkdf_sha256(shared, 32, SEAL_INFO + ephemeral.to_bytes() + sender.to_bytes(), salt=secret)


def _aad(link: DeviceLink, sender: PublicKey) -> bytes:
    return bytes((FORMAT,)) + link.ephemeral.to_bytes() + sender.to_bytes() + link.device_key.to_bytes()


def seal(message: bytes, link: DeviceLink, rng: Rng) -> bytes:
    """``message`` sealed to the link's ephemeral key and bound to its secret and device key."""
    ours = KeyPair.generate(rng)
    key = _seal_key(dh.agree(ours.private, link.ephemeral), link.secret, link.ephemeral, ours.public)
    sealed = aes256_gcm_encrypt(key, _EMPTY_NONCE, message, _aad(link, ours.public))
    return bytes((FORMAT,)) + ours.public.to_bytes() + sealed


def open_sealed(sealed: bytes, link: DeviceLink, ephemeral: KeyPair) -> bytes:
    """The message :func:`seal` sealed for ``link``; DecryptionError (or DecodeError) otherwise."""
    sealed = bytes(sealed)
    if len(sealed) < 1 + PUBLIC_KEY_LENGTH + 16 or sealed[0] != FORMAT:
        raise DecodeError("not a sealed provisioning message")
    try:
        sender = PublicKey.from_bytes(sealed[1 : 1 + PUBLIC_KEY_LENGTH])
    except InvalidKeyError:
        raise DecodeError("the sender's ephemeral key is malformed") from None
    if not dh.is_canonical(sender):
        raise DecryptionError
    try:
        shared = dh.agree(ephemeral.private, sender)
    except (InvalidKeyError, ValueError):
        raise DecryptionError from None
    key = _seal_key(shared, link.secret, link.ephemeral, sender)
    return aes256_gcm_decrypt(key, _EMPTY_NONCE, sealed[1 + PUBLIC_KEY_LENGTH :], _aad(link, sender))


# --------------------------------------------------------------------------- parts
@dataclass(frozen=True, slots=True)
class Part:
    index: int
    total: int
    chunk: bytes

    def encode(self) -> bytes:
        return bytes((FORMAT,)) + self.index.to_bytes(2) + self.total.to_bytes(2) + self.chunk


def parts(sealed: bytes) -> list[Part]:
    """``sealed`` cut into envelopes; ValueError if it needs more than :data:`MAX_PARTS`."""
    chunks = [sealed[i : i + PART_BYTES] for i in range(0, len(sealed), PART_BYTES)]
    if not 1 <= len(chunks) <= MAX_PARTS:
        raise ValueError(f"a provisioning message fits in {MAX_PARTS} envelopes")
    return [Part(i, len(chunks), chunk) for i, chunk in enumerate(chunks)]


def decode_part(data: bytes) -> Part:
    """One envelope's part; raises DecodeError and nothing else."""
    data = bytes(data)
    if not _PART_HEADER < len(data) <= _PART_HEADER + PART_BYTES or data[0] != FORMAT:
        raise DecodeError("not a part of a provisioning message")
    index, total = int.from_bytes(data[1:3]), int.from_bytes(data[3:5])
    if not 1 <= total <= MAX_PARTS or index >= total:
        raise DecodeError("a part's index is below its total, at most 24")
    chunk = data[_PART_HEADER:]
    if index < total - 1 and len(chunk) != PART_BYTES:
        raise DecodeError("every part but the last is full")
    return Part(index, total, chunk)


def join(received: Iterable[Part]) -> bytes | None:
    """The sealed message once every part is in, else None; DecodeError if parts disagree."""
    held: dict[int, bytes] = {}
    total: int | None = None
    for part in received:
        if total is not None and part.total != total:
            raise DecodeError("parts of different messages")
        total = part.total
        if held.setdefault(part.index, part.chunk) != part.chunk:
            raise DecodeError("two different parts under one index")
    if total is None or len(held) < total:
        return None
    return b"".join(held[i] for i in range(total))
