"""Contacts, our and their mailboxes, invites and groups, as sealed rows with keyed indexes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sotto.errors import (
    MissingRecordError,
    StoreConflictError,
    StoreCorruptedError,
)
from sotto.protocol.address import ProtocolAddress
from sotto.store.codec import as_bytes, as_int, as_opt_int, as_str
from sotto.store.model import (
    Contact,
    ContactId,
    Group,
    GroupId,
    GroupMember,
    Invite,
    InviteId,
    MailboxId,
    OurMailbox,
    TheirMailbox,
)
from sotto.store.sqlite.db import Repo, id_key, mailbox_row_key, mismatch, need_contact


class ContactRepo(Repo):
    _FIELDS = 6
    _COLUMNS = "id, sealed, blocked, removed"

    def _load(self, row: Any) -> Contact:
        contact_id = int(row[0])
        v = self.db.open_row("contacts", id_key(contact_id), row[1], self._FIELDS)
        return Contact(
            contact_id=ContactId(contact_id),
            name=as_str(v[0]),
            account_id=as_bytes(v[1]),
            address=ProtocolAddress(as_str(v[2]), as_int(v[3])),
            created_ms=as_int(v[4]),
            display_name=as_str(v[5]),
            blocked=bool(row[2]),
            removed=bool(row[3]),
        )

    def _indexes(self, name: str, account_id: bytes, address_name: str) -> tuple[bytes, bytes, bytes]:
        return (
            self.db.ix("contact-name", name.encode()),
            self.db.ix("contact-account", account_id),
            self.db.ix("contact-address", address_name.encode()),
        )

    def _check_unique(self, ixs: tuple[bytes, bytes, bytes], skip: int) -> None:
        name_ix, account_ix, address_ix = ixs
        if self.db.row("SELECT 1 FROM contacts WHERE name_ix = ? AND id != ?", (name_ix, skip)):
            raise StoreConflictError("a contact with this name exists")
        if self.db.row(
            "SELECT 1 FROM contacts WHERE (account_ix = ? OR address_ix = ?) AND id != ?",
            (account_ix, address_ix, skip),
        ):
            raise StoreConflictError("this account is already a contact")

    def _sealed(self, contact: Contact) -> bytes:
        return self.db.seal(
            "contacts",
            id_key(contact.contact_id),
            [
                contact.name,
                contact.account_id,
                contact.address.name,
                contact.address.device_id,
                contact.created_ms,
                contact.display_name,
            ],
        )

    def add(
        self,
        *,
        name: str,
        account_id: bytes,
        address: ProtocolAddress,
        now_ms: int,
        display_name: str = "",
    ) -> Contact:
        ixs = self._indexes(name, account_id, address.name)
        self._check_unique(ixs, 0)
        contact = Contact(
            ContactId(self.db.next_id("contact")), name, bytes(account_id), address, now_ms, display_name
        )
        self.db.run(
            "INSERT INTO contacts (id, name_ix, account_ix, address_ix, sealed) VALUES (?, ?, ?, ?, ?)",
            (contact.contact_id, *ixs, self._sealed(contact)),
        )
        return contact

    def _one(self, where: str, param: Any) -> Contact | None:
        found = self.db.row(f"SELECT {self._COLUMNS} FROM contacts WHERE {where} = ?", (param,))  # noqa: S608
        return None if found is None else self._load(found)

    def get(self, contact_id: ContactId) -> Contact | None:
        return self._one("id", contact_id)

    def by_name(self, name: str) -> Contact | None:
        found = self._one("name_ix", self.db.ix("contact-name", name.encode()))
        if found is not None and found.name != name:
            raise mismatch("contact")
        return found

    def by_account(self, account_id: bytes) -> Contact | None:
        found = self._one("account_ix", self.db.ix("contact-account", account_id))
        if found is not None and found.account_id != account_id:
            raise mismatch("contact")
        return found

    def by_address_name(self, name: str) -> Contact | None:
        found = self._one("address_ix", self.db.ix("contact-address", name.encode()))
        if found is not None and found.address.name != name:
            raise mismatch("contact")
        return found

    def all(self) -> list[Contact]:
        return [self._load(r) for r in self.db.rows(f"SELECT {self._COLUMNS} FROM contacts ORDER BY id")]  # noqa: S608

    def update(self, contact: Contact) -> None:
        if self.db.row("SELECT 1 FROM contacts WHERE id = ?", (contact.contact_id,)) is None:
            raise MissingRecordError("no such contact")
        ixs = self._indexes(contact.name, contact.account_id, contact.address.name)
        self._check_unique(ixs, contact.contact_id)
        self.db.run(
            "UPDATE contacts SET name_ix = ?, account_ix = ?, address_ix = ?, sealed = ? WHERE id = ?",
            (*ixs, self._sealed(contact), contact.contact_id),
        )

    def set_blocked(self, contact_id: ContactId, blocked: bool) -> None:
        if not self.db.run("UPDATE contacts SET blocked = ? WHERE id = ?", (int(blocked), contact_id)):
            raise MissingRecordError("no such contact")

    def set_removed(self, contact_id: ContactId, removed: bool) -> None:
        if not self.db.run("UPDATE contacts SET removed = ? WHERE id = ?", (int(removed), contact_id)):
            raise MissingRecordError("no such contact")

    def delete(self, contact_id: ContactId) -> bool:
        return self.db.run("DELETE FROM contacts WHERE id = ?", (contact_id,)) > 0


class MailboxRepo(Repo):
    _FIELDS = 7

    def _load(self, row: Any) -> tuple[int, OurMailbox]:
        ix, contact_id, seq, sealed = row
        v = self.db.open_row("our_mailboxes", mailbox_row_key(ix, int(contact_id)), sealed, self._FIELDS)
        return int(seq), OurMailbox(
            mailbox_id=MailboxId(as_bytes(v[0])),
            contact_id=ContactId(int(contact_id)),
            server_url=as_str(v[1]),
            signing_seed=as_bytes(v[2]),
            delivery_token=as_bytes(v[3]),
            created_ms=as_int(v[4]),
            rotated_ms=as_opt_int(v[5]),
            retiring_until_ms=as_opt_int(v[6]),
        )

    def _sealed(self, ix: bytes, m: OurMailbox) -> bytes:
        return self.db.seal(
            "our_mailboxes",
            mailbox_row_key(ix, m.contact_id),
            [
                m.mailbox_id,
                m.server_url,
                m.signing_seed,
                m.delivery_token,
                m.created_ms,
                m.rotated_ms,
                m.retiring_until_ms,
            ],
        )

    def _select(self, where: str = "", params: Sequence[Any] = ()) -> list[tuple[int, OurMailbox]]:
        sql = "SELECT mailbox_ix, contact_id, seq, sealed FROM our_mailboxes " + where  # noqa: S608
        loaded = [self._load(r) for r in self.db.rows(sql, params)]
        loaded.sort(key=lambda sm: (sm[1].created_ms, sm[0]))
        return loaded

    def add(self, mailbox: OurMailbox) -> None:
        ix = self.db.ix("mailbox", mailbox.mailbox_id)
        if self.db.row("SELECT 1 FROM our_mailboxes WHERE mailbox_ix = ?", (ix,)) or self.db.row(
            "SELECT 1 FROM invites WHERE mailbox_ix = ?", (ix,)
        ):
            raise StoreConflictError("mailbox id exists")
        need_contact(self.db, mailbox.contact_id)
        self.db.run(
            "INSERT INTO our_mailboxes (mailbox_ix, contact_id, seq, sealed) VALUES (?, ?, ?, ?)",
            (ix, mailbox.contact_id, self.db.next_id("mailbox-seq"), self._sealed(ix, mailbox)),
        )

    def get(self, mailbox_id: MailboxId) -> OurMailbox | None:
        found = self._select("WHERE mailbox_ix = ?", (self.db.ix("mailbox", mailbox_id),))
        if not found:
            return None
        if found[0][1].mailbox_id != mailbox_id:
            raise mismatch("mailbox")
        return found[0][1]

    def for_contact(self, contact_id: ContactId) -> list[OurMailbox]:
        return [m for _, m in reversed(self._select("WHERE contact_id = ?", (contact_id,)))]

    def current(self, contact_id: ContactId) -> OurMailbox | None:
        return next((m for m in self.for_contact(contact_id) if m.rotated_ms is None), None)

    def all(self) -> list[OurMailbox]:
        return [m for _, m in self._select()]

    def update(self, mailbox: OurMailbox) -> None:
        known = self.get(mailbox.mailbox_id)
        if known is None:
            raise MissingRecordError("no such mailbox")
        changed = OurMailbox(
            known.mailbox_id,
            known.contact_id,
            known.server_url,
            known.signing_seed,
            known.delivery_token,
            known.created_ms,
            mailbox.rotated_ms,
            mailbox.retiring_until_ms,
        )
        ix = self.db.ix("mailbox", mailbox.mailbox_id)
        self.db.run(
            "UPDATE our_mailboxes SET sealed = ? WHERE mailbox_ix = ?", (self._sealed(ix, changed), ix)
        )

    def delete(self, mailbox_id: MailboxId) -> bool:
        return (
            self.db.run(
                "DELETE FROM our_mailboxes WHERE mailbox_ix = ?", (self.db.ix("mailbox", mailbox_id),)
            )
            > 0
        )


class TheirMailboxRepo(Repo):
    def get(self, contact_id: ContactId) -> TheirMailbox | None:
        found = self.db.row("SELECT sealed FROM their_mailboxes WHERE contact_id = ?", (contact_id,))
        if found is None:
            return None
        v = self.db.open_row("their_mailboxes", id_key(contact_id), found[0], 4)
        return TheirMailbox(contact_id, as_str(v[0]), MailboxId(as_bytes(v[1])), as_bytes(v[2]), as_int(v[3]))

    def put(self, mailbox: TheirMailbox) -> None:
        need_contact(self.db, mailbox.contact_id)
        sealed = self.db.seal(
            "their_mailboxes",
            id_key(mailbox.contact_id),
            [mailbox.server_url, mailbox.mailbox_id, mailbox.delivery_token, mailbox.received_ms],
        )
        self.db.run(
            "INSERT INTO their_mailboxes (contact_id, sealed) VALUES (?, ?) "
            "ON CONFLICT (contact_id) DO UPDATE SET sealed = excluded.sealed",
            (mailbox.contact_id, sealed),
        )

    def delete(self, contact_id: ContactId) -> bool:
        return self.db.run("DELETE FROM their_mailboxes WHERE contact_id = ?", (contact_id,)) > 0


class InviteRepo(Repo):
    _FIELDS = 8

    def _load(self, row: Any) -> Invite:
        invite_id = int(row[0])
        v = self.db.open_row("invites", id_key(invite_id), row[1], self._FIELDS)
        return Invite(
            invite_id=InviteId(invite_id),
            secret=as_bytes(v[0]),
            mailbox_id=MailboxId(as_bytes(v[1])),
            signing_seed=as_bytes(v[2]),
            delivery_token=as_bytes(v[3]),
            access_token=as_bytes(v[4]),
            created_ms=as_int(v[5]),
            expires_ms=as_int(v[6]),
            used_ms=as_opt_int(v[7]),
        )

    def _write(self, invite: Invite, insert: bool) -> None:
        sealed = self.db.seal(
            "invites",
            id_key(invite.invite_id),
            [
                invite.secret,
                invite.mailbox_id,
                invite.signing_seed,
                invite.delivery_token,
                invite.access_token,
                invite.created_ms,
                invite.expires_ms,
                invite.used_ms,
            ],
        )
        if insert:
            self.db.run(
                "INSERT INTO invites (id, mailbox_ix, used, sealed) VALUES (?, ?, ?, ?)",
                (
                    invite.invite_id,
                    self.db.ix("mailbox", invite.mailbox_id),
                    int(invite.used_ms is not None),
                    sealed,
                ),
            )
        else:
            self.db.run(
                "UPDATE invites SET used = ?, sealed = ? WHERE id = ?",
                (int(invite.used_ms is not None), sealed, invite.invite_id),
            )

    def add(
        self,
        *,
        secret: bytes,
        mailbox_id: MailboxId,
        signing_seed: bytes,
        delivery_token: bytes,
        access_token: bytes,
        created_ms: int,
        expires_ms: int,
    ) -> Invite:
        ix = self.db.ix("mailbox", mailbox_id)
        if self.db.row("SELECT 1 FROM our_mailboxes WHERE mailbox_ix = ?", (ix,)) or self.db.row(
            "SELECT 1 FROM invites WHERE mailbox_ix = ?", (ix,)
        ):
            raise StoreConflictError("mailbox id exists")
        invite = Invite(
            InviteId(self.db.next_id("invite")),
            bytes(secret),
            MailboxId(bytes(mailbox_id)),
            bytes(signing_seed),
            bytes(delivery_token),
            bytes(access_token),
            created_ms,
            expires_ms,
        )
        self._write(invite, insert=True)
        return invite

    def get(self, invite_id: InviteId) -> Invite | None:
        found = self.db.row("SELECT id, sealed FROM invites WHERE id = ?", (invite_id,))
        return None if found is None else self._load(found)

    def by_mailbox(self, mailbox_id: MailboxId) -> Invite | None:
        found = self.db.row(
            "SELECT id, sealed FROM invites WHERE mailbox_ix = ?", (self.db.ix("mailbox", mailbox_id),)
        )
        if found is None:
            return None
        invite = self._load(found)
        if invite.mailbox_id != mailbox_id:
            raise mismatch("invite")
        return invite

    def open(self, now_ms: int) -> list[Invite]:
        rows = self.db.rows("SELECT id, sealed FROM invites WHERE used = 0 ORDER BY id")
        return [i for i in (self._load(r) for r in rows) if i.expires_ms > now_ms]

    def all(self) -> list[Invite]:
        return [self._load(r) for r in self.db.rows("SELECT id, sealed FROM invites ORDER BY id")]

    def mark_used(self, invite_id: InviteId, now_ms: int) -> None:
        known = self.get(invite_id)
        if known is None:
            raise MissingRecordError("no such invite")
        if known.used_ms is None:
            self._write(
                Invite(
                    known.invite_id,
                    known.secret,
                    known.mailbox_id,
                    known.signing_seed,
                    known.delivery_token,
                    known.access_token,
                    known.created_ms,
                    known.expires_ms,
                    now_ms,
                ),
                insert=False,
            )

    def delete(self, invite_id: InviteId) -> bool:
        return self.db.run("DELETE FROM invites WHERE id = ?", (invite_id,)) > 0


class GroupRepo(Repo):
    def locate(self, group_id: GroupId) -> tuple[int, Group] | None:
        found = self.db.row(
            "SELECT id, sealed FROM groups WHERE group_ix = ?", (self.db.ix("group", group_id),)
        )
        if found is None:
            return None
        group = self.load(found)
        if group.group_id != group_id:
            raise mismatch("group")
        return int(found[0]), group

    def load(self, row: Any) -> Group:
        v = self.db.open_row("groups", id_key(int(row[0])), row[1], 4)
        try:
            distribution_id = uuid.UUID(bytes=as_bytes(v[2]))
        except ValueError:
            raise StoreCorruptedError("stored distribution id does not load") from None
        return Group(GroupId(as_bytes(v[0])), as_str(v[1]), distribution_id, as_int(v[3]))

    def _sealed(self, row_id: int, group: Group) -> bytes:
        return self.db.seal(
            "groups",
            id_key(row_id),
            [group.group_id, group.name, group.distribution_id.bytes, group.created_ms],
        )

    def _need(self, group_id: GroupId) -> tuple[int, Group]:
        found = self.locate(group_id)
        if found is None:
            raise MissingRecordError("no such group")
        return found

    def create(self, *, group_id: GroupId, name: str, distribution_id: uuid.UUID, created_ms: int) -> Group:
        if self.locate(group_id) is not None:
            raise StoreConflictError("group id exists")
        group = Group(GroupId(bytes(group_id)), name, distribution_id, created_ms)
        row_id = self.db.next_id("group")
        self.db.run(
            "INSERT INTO groups (id, group_ix, sealed) VALUES (?, ?, ?)",
            (row_id, self.db.ix("group", group_id), self._sealed(row_id, group)),
        )
        return group

    def get(self, group_id: GroupId) -> Group | None:
        found = self.locate(group_id)
        return None if found is None else found[1]

    def all(self) -> list[Group]:
        return [self.load(r) for r in self.db.rows("SELECT id, sealed FROM groups ORDER BY id")]

    def _replace(self, row_id: int, group: Group) -> None:
        self.db.run("UPDATE groups SET sealed = ? WHERE id = ?", (self._sealed(row_id, group), row_id))

    def rename(self, group_id: GroupId, name: str) -> None:
        row_id, known = self._need(group_id)
        self._replace(row_id, Group(known.group_id, name, known.distribution_id, known.created_ms))

    def delete(self, group_id: GroupId) -> bool:
        return self.db.run("DELETE FROM groups WHERE group_ix = ?", (self.db.ix("group", group_id),)) > 0

    def add_member(self, group_id: GroupId, contact_id: ContactId) -> bool:
        row_id, _ = self._need(group_id)
        need_contact(self.db, contact_id)
        if self.db.row(
            "SELECT 1 FROM group_members WHERE group_row = ? AND contact_id = ?", (row_id, contact_id)
        ):
            return False
        self.db.run(
            "INSERT INTO group_members (group_row, contact_id, seq, skdm_sent) VALUES (?, ?, ?, 0)",
            (row_id, contact_id, self.db.next_id("member-seq")),
        )
        return True

    def remove_member(self, group_id: GroupId, contact_id: ContactId) -> bool:
        found = self.locate(group_id)
        if found is None:
            return False
        return (
            self.db.run(
                "DELETE FROM group_members WHERE group_row = ? AND contact_id = ?", (found[0], contact_id)
            )
            > 0
        )

    def members(self, group_id: GroupId) -> list[GroupMember]:
        found = self.locate(group_id)
        if found is None:
            return []
        rows = self.db.rows(
            "SELECT contact_id, skdm_sent FROM group_members WHERE group_row = ? ORDER BY seq", (found[0],)
        )
        return [GroupMember(ContactId(int(c)), bool(s)) for c, s in rows]

    def groups_of(self, contact_id: ContactId) -> list[GroupId]:
        rows = self.db.rows(
            "SELECT g.id, g.sealed FROM group_members m JOIN groups g ON g.id = m.group_row "
            "WHERE m.contact_id = ? ORDER BY m.seq",
            (contact_id,),
        )
        return [self.load(r).group_id for r in rows]

    def mark_skdm_sent(self, group_id: GroupId, contact_id: ContactId) -> None:
        found = self.locate(group_id)
        changed = (
            0
            if found is None
            else self.db.run(
                "UPDATE group_members SET skdm_sent = 1 WHERE group_row = ? AND contact_id = ?",
                (found[0], contact_id),
            )
        )
        if not changed:
            raise MissingRecordError("not a member")

    def set_distribution(self, group_id: GroupId, distribution_id: uuid.UUID) -> None:
        row_id, known = self._need(group_id)
        self._replace(row_id, Group(known.group_id, known.name, distribution_id, known.created_ms))
        self.db.run("UPDATE group_members SET skdm_sent = 0 WHERE group_row = ?", (row_id,))
