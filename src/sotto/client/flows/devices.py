"""The account's devices in the store: the signed device list, what an existing device hands a
new one (:func:`provisioning_for`), and what the new device keeps of it (:func:`store_linked`).

The device list and this device's own device key are settings (sealed like every setting).
The device that made the account is device 1, and its device key is the account's identity key;
a linked device has a device key of its own, and a relay login of its own (:data:`RELAY_KEY`):
it registered on the relay as an account of its own under its device key, so the relay holds
nothing that joins the two devices' credentials.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotto.client import device_list as dl
from sotto.client import linking
from sotto.client.flows.account import ONE_TIME_PREKEYS, NewIdentity, generate_prekeys
from sotto.client.flows.context import Context, address_for
from sotto.crypto.kdf import bytes_equal
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import Rng
from sotto.errors import ClientError
from sotto.protocol.address import ProtocolAddress
from sotto.store.interfaces import Transaction
from sotto.store.model import Account, MailboxId, TheirMailbox

LIST_KEY = "devices:list"
"""The account's signed device list, as this device last made or received it."""
DEVICE_KEY = "devices:own-key"
"""This device's own device key (private, 32 bytes); absent on device 1, whose key is the account's."""
RELAY_KEY = "devices:relay-login"
"""A linked device's own relay login: account id (16) ‖ device id (1)."""
FIRST_DEVICE_NAME = "first device"


def stored_list(tx: Transaction) -> dl.SignedDeviceList | None:
    value = tx.settings.get(LIST_KEY)
    return None if value is None else dl.SignedDeviceList.decode(value)


def current_devices(tx: Transaction, account: Account) -> tuple[dl.Device, ...]:
    """The devices of the stored list; before any list was made, this device alone."""
    held = stored_list(tx)
    if held is not None:
        return held.content.devices
    return (dl.Device(account.device_id, account.identity.public, FIRST_DEVICE_NAME, account.created_ms),)


def relay_login(tx: Transaction) -> tuple[bytes, int] | None:
    """A linked device's own relay account id and device id; None on the account's first device."""
    value = tx.settings.get(RELAY_KEY)
    if value is None or len(value) != 17:
        return None
    return value[:16], value[16]


@dataclass(frozen=True, slots=True, repr=False)
class Offer:
    """What an existing device sends a new one, and the list it then keeps."""

    provisioning: linking.Provisioning
    parent: bytes | None
    """The hash of the list this one follows (None: there was no stored list)."""
    device: dl.Device

    def __repr__(self) -> str:
        return f"Offer(device_id={self.device.device_id}, {self.provisioning!r})"


def provisioning_for(ctx: Context, link: linking.DeviceLink) -> Offer:
    """The provisioning message for the device that showed ``link``: the list with it added
    (making the first list if there was none), and every contact that is not removed."""
    tx, account = ctx.tx, ctx.me.account
    held = stored_list(tx)
    if held is None:
        first = dl.Device(account.device_id, account.identity.public, FIRST_DEVICE_NAME, account.created_ms)
        held = dl.first_list(first, account.identity, ctx.rng)
        parent = None
    else:
        held.verify(account.identity.public)
        parent = held.hash
    if any(bytes_equal(d.key.to_bytes(), link.device_key.to_bytes()) for d in held.content.devices):
        raise ClientError("this device is already on the account's device list")
    try:
        device = dl.Device(dl.free_device_id(held.content), link.device_key, link.device_name, ctx.now_ms)
    except ValueError as error:
        raise ClientError(str(error)) from None
    chain = dl.add_device(held.content, device, account.identity, ctx.rng)
    contacts = []
    for contact in tx.contacts.all():
        trusted = tx.identities.get(contact.address.name)
        if contact.removed or trusted is None:
            continue
        theirs = tx.their_mailboxes.get(contact.contact_id)
        contacts.append(
            linking.LinkedContact(
                contact.name,
                contact.display_name,
                contact.account_id,
                trusted.identity_key,
                verified=trusted.verified,
                blocked=contact.blocked,
                mailbox=None
                if theirs is None
                else (theirs.server_url, bytes(theirs.mailbox_id), theirs.delivery_token),
            )
        )
    if len(contacts) > linking.MAX_CONTACTS:
        raise ClientError(f"linking carries at most {linking.MAX_CONTACTS} contacts")
    provisioning = linking.Provisioning(
        account.account_id, account.identity, account.display_name, chain, tuple(contacts)
    )
    return Offer(provisioning, parent, device)


def keep_offered(tx: Transaction, offer: Offer) -> None:
    """After the provisioning message was posted: keep the list with the new device, unless the
    stored list changed meanwhile (another device was added from here at the same time)."""
    held = stored_list(tx)
    if (None if held is None else held.hash) != offer.parent:
        raise ClientError("the device list changed while linking: link the device again")
    tx.settings.put(LIST_KEY, offer.provisioning.devices.encode())


def store_linked(
    tx: Transaction,
    provisioning: linking.Provisioning,
    *,
    device: dl.Device,
    device_key: KeyPair,
    login: NewIdentity,
    relay_account_id: bytes,
    relay_device_id: int,
    server_url: str,
    now_ms: int,
    rng: Rng,
) -> Account:
    """On the new device: keep the account (under its identity key and id, as this device), the
    device list, this device's key and relay login, and the contacts with their trusted keys and
    mailboxes. Its prekeys are generated for upload."""
    if tx.account.get() is not None:
        raise ClientError("this store already holds an account")
    address = address_for(provisioning.account_id)
    account = Account(
        account_id=provisioning.account_id,
        device_id=device.device_id,
        device_secret=login.device_secret,
        identity=provisioning.account_key,
        registration_id=login.registration_id,
        server_url=server_url,
        display_name=provisioning.display_name,
        created_ms=now_ms,
        address=ProtocolAddress(address.name, device.device_id),
    )
    tx.account.put(account)
    tx.settings.put(LIST_KEY, provisioning.devices.encode())
    tx.settings.put(DEVICE_KEY, device_key.private.to_bytes())
    tx.settings.put(RELAY_KEY, relay_account_id + bytes((relay_device_id,)))
    for linked in provisioning.contacts:
        contact = tx.contacts.add(
            name=linked.name,
            account_id=linked.account_id,
            address=address_for(linked.account_id),
            now_ms=now_ms,
            display_name=linked.display_name,
        )
        tx.identities.observe(contact.address.name, linked.identity_key, now_ms)
        if linked.verified:
            tx.identities.set_verified(contact.address.name, True)
        if linked.blocked:
            tx.contacts.set_blocked(contact.contact_id, True)
        if linked.mailbox is not None:
            url, mailbox_id, token = linked.mailbox
            tx.their_mailboxes.put(
                TheirMailbox(contact.contact_id, url, MailboxId(mailbox_id), token, now_ms)
            )
    generate_prekeys(tx, account, now_ms=now_ms, rng=rng, one_time=ONE_TIME_PREKEYS, rotate=True)
    return account
