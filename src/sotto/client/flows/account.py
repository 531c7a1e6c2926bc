"""Registering an account and keeping its prekeys published.

Prekeys are generated into the store marked "not uploaded", uploaded, then marked uploaded in a
second transaction: a crash in between re-uploads the same ids with the same bytes (a no-op on
the relay), never new key material under an old id.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sotto.client.flows import mailboxes as mailbox_flow
from sotto.client.flows.context import address_for
from sotto.crypto.kem import KemPublicKey
from sotto.crypto.keys import KeyPair, PublicKey
from sotto.crypto.random import Rng
from sotto.errors import InvalidKeyError, InviteError
from sotto.protocol.address import ProtocolAddress
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord
from sotto.protocol.limits import MAX_REGISTRATION_ID
from sotto.store.interfaces import PendingUpload, Transaction
from sotto.store.model import Account, MailboxId, PreKeyKind
from sotto.wire import api
from sotto.wire.limits import DEVICE_SECRET_LENGTH, MAX_ONE_TIME_KEYS_PER_UPLOAD

ONE_TIME_PREKEYS = 20
PREKEY_REFILL_BELOW = 5
"""Bundles go only to invite holders, so a small pool lasts; it is topped up below 5."""

SIGNED_PREKEY_ROTATION_MS = 7 * 86_400_000
"""A new signed prekey and last-resort Kyber prekey each week (Signal: every 2 days)."""

OLD_PREKEY_RETENTION_MS = 60 * 86_400_000
"""Replaced signed and last-resort prekeys are kept this long, so a PreKey message that waited
on the relay (30 days at most) still finds the keys it names."""


@dataclass(frozen=True, slots=True, repr=False)
class NewIdentity:
    """Keys chosen before registering: the identity, a registration id and the device secret."""

    identity: KeyPair
    registration_id: int
    device_secret: bytes

    @classmethod
    def generate(cls, rng: Rng) -> NewIdentity:
        registration_id = 1 + int.from_bytes(rng(2), "big") % MAX_REGISTRATION_ID
        return cls(KeyPair.generate(rng), registration_id, rng(DEVICE_SECRET_LENGTH))

    def request(self) -> api.CreateAccount:
        return api.CreateAccount(
            identity_key=self.identity.public.to_bytes(),
            registration_id=self.registration_id,
            device_secret=self.device_secret,
        )

    def __repr__(self) -> str:
        return f"NewIdentity(identity={self.identity.public!r}, <secret>)"


def store_account(
    tx: Transaction,
    new: NewIdentity,
    created: api.AccountCreated,
    *,
    server_url: str,
    display_name: str,
    now_ms: int,
    rng: Rng,
) -> Account:
    """Keep the registered account and generate its first prekeys (upload them next)."""
    account = Account(
        account_id=created.account_id,
        device_id=created.device_id,
        device_secret=new.device_secret,
        identity=new.identity,
        registration_id=new.registration_id,
        server_url=server_url,
        display_name=display_name,
        created_ms=now_ms,
        address=ProtocolAddress(address_for(created.account_id).name, created.device_id),
    )
    tx.account.put(account)
    generate_prekeys(tx, account, now_ms=now_ms, rng=rng, one_time=ONE_TIME_PREKEYS, rotate=True)
    return account


def generate_prekeys(
    tx: Transaction, account: Account, *, now_ms: int, rng: Rng, one_time: int, rotate: bool = False
) -> None:
    """Store ``one_time`` new EC and Kyber one-time prekeys (with ``rotate`` also a new signed
    prekey and a new last-resort Kyber prekey), marked not yet uploaded."""
    identity = account.identity
    if rotate:
        (signed_id,) = tx.prekeys.allocate_ids(PreKeyKind.SIGNED, 1)
        tx.prekeys.put_signed(SignedPreKeyRecord.generate(signed_id, identity, now_ms, rng))
        (kyber_id,) = tx.prekeys.allocate_ids(PreKeyKind.KYBER, 1)
        tx.prekeys.put_kyber(KyberPreKeyRecord.generate(kyber_id, identity, now_ms, rng, last_resort=True))
    if one_time > 0:
        for prekey_id in tx.prekeys.allocate_ids(PreKeyKind.ONE_TIME, one_time):
            tx.prekeys.put_one_time(PreKeyRecord.generate(prekey_id, rng))
        for prekey_id in tx.prekeys.allocate_ids(PreKeyKind.KYBER, one_time):
            tx.prekeys.put_kyber(KyberPreKeyRecord.generate(prekey_id, identity, now_ms, rng))


def rotate_prekeys(tx: Transaction, account: Account, *, now_ms: int, rng: Rng) -> bool:
    """Replace the signed and last-resort prekeys once they are a week old; drop replaced ones
    after the retention period. True if new keys were stored (upload them next)."""
    latest = tx.prekeys.latest_signed()
    rotated = latest is None or now_ms - latest.timestamp_ms >= SIGNED_PREKEY_ROTATION_MS
    if rotated:
        generate_prekeys(tx, account, now_ms=now_ms, rng=rng, one_time=0, rotate=True)
    # A replaced key's retention starts when its successor was made.
    signed = [r for r in map(tx.prekeys.get_signed, tx.prekeys.ids(PreKeyKind.SIGNED)) if r is not None]
    for old, successor in itertools.pairwise(signed):
        if now_ms - successor.timestamp_ms >= OLD_PREKEY_RETENTION_MS:
            tx.prekeys.remove_signed(old.id)
    kyber_ids = tx.prekeys.ids(PreKeyKind.KYBER, last_resort=True)
    kyber = [r for r in map(tx.prekeys.get_kyber, kyber_ids) if r is not None]
    for old_kyber, next_kyber in itertools.pairwise(kyber):
        if now_ms - next_kyber.timestamp_ms >= OLD_PREKEY_RETENTION_MS:
            tx.prekeys.remove_kyber(old_kyber.id)
            tx.prekeys.forget_last_resort_uses(old_kyber.id)
    return rotated


def upload_request(pending: PendingUpload) -> api.UploadKeys:
    """The relay body for records not yet confirmed (at most one upload's worth)."""
    signed = pending.signed[-1] if pending.signed else None
    last_resort = [k for k in pending.kyber if k.last_resort]
    limit = MAX_ONE_TIME_KEYS_PER_UPLOAD
    return api.UploadKeys(
        signed_pre_key=None
        if signed is None
        else api.SignedPreKey(
            id=signed.id, public_key=signed.key_pair.public.to_bytes(), signature=signed.signature
        ),
        kyber_last_resort=_kyber_body(last_resort[-1]) if last_resort else None,
        one_time_pre_keys=[
            api.PreKey(id=r.id, public_key=r.key_pair.public.to_bytes()) for r in pending.one_time[:limit]
        ],
        kyber_pre_keys=[_kyber_body(k) for k in pending.kyber if not k.last_resort][:limit],
    )


def _kyber_body(record: KyberPreKeyRecord) -> api.KyberPreKey:
    return api.KyberPreKey(
        id=record.id, public_key=record.key_pair.public.to_bytes(), signature=record.signature
    )


def mark_uploaded(tx: Transaction, body: api.UploadKeys) -> None:
    """The relay accepted ``body``."""
    if body.signed_pre_key is not None:
        tx.prekeys.mark_uploaded(PreKeyKind.SIGNED, [body.signed_pre_key.id])
    tx.prekeys.mark_uploaded(PreKeyKind.ONE_TIME, [k.id for k in body.one_time_pre_keys])
    kyber = [k.id for k in body.kyber_pre_keys]
    if body.kyber_last_resort is not None:
        kyber.append(body.kyber_last_resort.id)
    tx.prekeys.mark_uploaded(PreKeyKind.KYBER, kyber)


def refill_count(counts: api.KeyCounts) -> int:
    """How many one-time prekeys of each kind to add, given what the relay still holds."""
    if min(counts.one_time, counts.kyber) >= PREKEY_REFILL_BELOW:
        return 0
    return ONE_TIME_PREKEYS - min(counts.one_time, counts.kyber)


def bundle_from_reply(reply: api.Bundle) -> PreKeyBundle:
    """The protocol's bundle for the peer's first device; InviteError if its keys do not parse.

    Signatures are checked when the session starts (``process_prekey_bundle``), not here.
    """
    if not reply.devices:
        raise InviteError("the inviter has no device to talk to")
    device = reply.devices[0]
    try:
        return PreKeyBundle(
            registration_id=device.registration_id,
            device_id=device.device_id,
            pre_key_id=None if device.pre_key is None else device.pre_key.id,
            pre_key_public=None
            if device.pre_key is None
            else PublicKey.from_bytes(device.pre_key.public_key),
            signed_pre_key_id=device.signed_pre_key.id,
            signed_pre_key_public=PublicKey.from_bytes(device.signed_pre_key.public_key),
            signed_pre_key_signature=device.signed_pre_key.signature,
            identity_key=PublicKey.from_bytes(reply.identity_key),
            kyber_pre_key_id=device.kyber_pre_key.id,
            kyber_pre_key_public=KemPublicKey.from_bytes(device.kyber_pre_key.public_key),
            kyber_pre_key_signature=device.kyber_pre_key.signature,
        )
    except InvalidKeyError as e:
        raise InviteError(f"the inviter's prekey bundle is unusable: {e}") from None


# ------------------------------------------------------------------------------ deletion
DELETED_KEY = "account:deleted"
"""Setting present once the account was deleted from its relay: the time of deletion (ms)."""


@dataclass(frozen=True, slots=True)
class AccountDeletion:
    """What the relay held and deleted: rows per table of the account's export, and the
    mailboxes deleted with their pending envelopes."""

    rows: dict[str, int]
    mailboxes: int
    envelopes: int


def deletion_summary(
    account_export: dict[str, object], mailbox_exports: list[dict[str, object]]
) -> AccountDeletion:
    """Count what the exports taken just before the deletion held."""
    rows = {name: len(held) for name, held in _tables(account_export).items()}
    envelopes = sum(len(_tables(m).get("envelopes", [])) for m in mailbox_exports)
    return AccountDeletion(rows=rows, mailboxes=len(mailbox_exports), envelopes=envelopes)


def _tables(export: dict[str, object]) -> dict[str, list[object]]:
    tables = export.get("tables")
    if not isinstance(tables, dict):
        return {}
    return {str(k): v for k, v in tables.items() if isinstance(v, list)}


DELETING_KEY = "account:deleting"
"""Setting holding the mailboxes still to delete on the relay while a deletion is under way:
each 16-byte id then its 32-byte key seed."""
_ID_BYTES, _SEED_BYTES = 16, 32


def take_mailboxes(tx: Transaction, now_ms: int) -> dict[MailboxId, bytes]:
    """Before deleting on the relay: move every mailbox we hold (and invites' mailboxes) out of
    the tables into :data:`DELETING_KEY`, so that nothing running re-creates one the relay no
    longer knows (a drain that meets a missing mailbox registers it again), and a retry after a
    failure part way still has every key. Returns them all: id → key seed."""
    held = parse_deleting(tx.settings.get(DELETING_KEY))
    held.update(mailbox_flow.held(tx, now_ms))
    for mailbox in tx.mailboxes.all():
        tx.mailboxes.delete(mailbox.mailbox_id)
    for invite in tx.invites.all():
        tx.invites.delete(invite.invite_id)
    tx.settings.put(DELETING_KEY, b"".join(m + s for m, s in held.items()))
    return held


def parse_deleting(value: bytes | None) -> dict[MailboxId, bytes]:
    step = _ID_BYTES + _SEED_BYTES
    if value is None or len(value) % step:
        return {}
    return {
        MailboxId(value[i : i + _ID_BYTES]): value[i + _ID_BYTES : i + step]
        for i in range(0, len(value), step)
    }


def forget_relay(tx: Transaction, now_ms: int) -> None:
    """After the relay deleted the account and its mailboxes: drop the outbox and the keys kept
    for the deletion, and mark the profile deleted. Contacts and history stay readable."""
    for item in tx.outbox.all():
        tx.outbox.remove(item.item_id)
    tx.settings.delete(DELETING_KEY)
    tx.settings.put(DELETED_KEY, now_ms.to_bytes(8, "big"))


def deleted_at(tx: Transaction) -> int | None:
    """When this profile's account was deleted from the relay (ms), or None."""
    value = tx.settings.get(DELETED_KEY)
    return None if value is None else int.from_bytes(value, "big")
