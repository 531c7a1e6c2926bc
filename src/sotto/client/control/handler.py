"""How a running client carries out a request handed to it: the same SDK calls a command makes
on its own, on the client's own schedule (default mode: what was queued is tried at once, as a
command does; cadence mode: it waits for the client's ticks)."""

from __future__ import annotations

import asyncio
import dataclasses
import os

from sotto.client.control.messages import (
    AcceptInvite,
    AddToGroup,
    Answer,
    AskStatus,
    CreateGroup,
    CreateInvite,
    Handled,
    Invited,
    Outcome,
    Reason,
    Refusal,
    Refused,
    RemoveContact,
    Request,
    RotateMailboxes,
    SendGroupText,
    SendText,
    SetBlocked,
    Status,
)
from sotto.client.sdk import Client
from sotto.errors import UnknownContactError
from sotto.store.model import Contact, Group

FLUSH_WAIT_S = 60.0
"""How long a request waits for a send to the relay before answering with what is still queued
(the attempt goes on; the message stays in the outbox either way)."""


class UnknownName(Exception):
    """A name the request gives is not a contact's (or a group's): refused with the names known."""

    def __init__(self, refusal: Refused) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class Handler:
    """Carries out requests on one client; background sends it started are awaited at :meth:`close`."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._background: set[asyncio.Task[int]] = set()

    async def close(self, timeout: float) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=timeout)

    async def answer(self, request: Request) -> Answer:
        """What became of ``request``; SDK errors come back as refusals, others propagate."""
        try:
            return await self._carry_out(request)
        except UnknownName as unknown:
            return unknown.refusal

    async def _carry_out(self, request: Request) -> Answer:
        client = self._client
        match request:
            case AskStatus():
                return Status(os.getpid(), client.cadence, client.server_url)
            case SendText(to=to, text=text, cadence=cadence):
                contact = self._contact(to)
                if cadence and not client.cadence:
                    return Refused(
                        Reason.MODE, "the running client is not in cadence mode: it would send this at once"
                    )
                ready = client.is_ready(contact)
                await client.send_text(contact, text)
                if not ready and not client.cadence:
                    return self._handled(Outcome.KEPT, contact.name)
                if not client.cadence and client.waits_for_session(contact):
                    await self._delivered(contact.name)  # the session request goes out
                    return self._handled(Outcome.WAITING, contact.name)
                return await self._delivered(contact.name)
            case SendGroupText(group=name, text=text):
                group = self._group(name)
                await client.send_group_text(group, text)
                members = client.group_members(group)
                waiting = (
                    () if client.cadence else tuple(m.name for m in members if client.waits_for_session(m))
                )
                if not waiting:
                    return await self._delivered(group.name)
                # A restored profile: the members it holds no session with get it once they answer.
                others = sum(client.is_ready(m) for m in members) - len(waiting)
                sent = await self._delivered(group.name, members=waiting, count=others)
                return dataclasses.replace(sent, outcome=Outcome.WAITING)
            case CreateGroup(group=name, members=names):
                if any(g.name == name for g in client.groups()):
                    return Refused(Reason.CONFLICT, "a group by that name exists already", name=name)
                members = [self._contact(m) for m in dict.fromkeys(names)]
                group = await client.create_group(name, members)
                return await self._delivered(group.name, members=tuple(m.name for m in members))
            case AddToGroup(group=name, member=member):
                group = self._group(name)
                contact = self._contact(member)
                if not await client.add_to_group(group, contact):
                    return self._handled(Outcome.UNCHANGED, group.name, members=(contact.name,))
                return await self._delivered(group.name, members=(contact.name,))
            case SetBlocked(to=to, blocked=blocked):
                contact = self._contact(to)
                changed = await (client.block_contact if blocked else client.unblock_contact)(contact)
                return self._handled(Outcome.DONE, changed.name)
            case RemoveContact(to=to, forget_history=forget):
                contact = self._contact(to)
                if contact.removed and not forget:
                    return self._handled(Outcome.UNCHANGED, contact.name)
                await client.remove_contact(contact, forget_history=forget)
                return self._handled(Outcome.DONE, contact.name)
            case RotateMailboxes():
                rotated = await client.rotate_mailboxes()
                return await self._delivered("", count=rotated)
            case CreateInvite():
                made = await client.create_invite()
                return Invited(made.link, made.qr_text, made.expires_ms)
            case AcceptInvite(link=link, name=name):
                contact = await client.accept_invite(link, name)
                return self._handled(Outcome.DONE, contact.name)

    def _contact(self, name: str) -> Contact:
        try:
            return self._client.contact(name)
        except UnknownContactError:
            known = tuple(c.name for c in self._client.contacts())
            refusal = Refused(Reason.UNKNOWN_NAME, "no such contact", known, "contact", name)
            raise UnknownName(refusal) from None

    def _group(self, name: str) -> Group:
        groups = self._client.groups()
        found = next((g for g in groups if g.name == name), None)
        if found is None and name.startswith("#"):
            found = next((g for g in groups if g.name == name[1:]), None)
        if found is None:
            known = tuple(f"#{g.name}" for g in groups)
            raise UnknownName(Refused(Reason.UNKNOWN_NAME, "no such group", known, "group", name))
        return found

    def _handled(
        self, outcome: Outcome, name: str, *, members: tuple[str, ...] = (), count: int = 0
    ) -> Handled:
        client = self._client
        return Handled(outcome, name, client.pending_outbox(), client.server_url, None, members, count)

    async def _delivered(self, name: str, *, members: tuple[str, ...] = (), count: int = 0) -> Handled:
        """Cadence mode: queued for a tick. Default mode: everything queued tried now, as a
        command does on its own; past :data:`FLUSH_WAIT_S` the answer says what is still queued
        and the attempt goes on."""
        client = self._client
        if client.cadence:
            return self._handled(Outcome.QUEUED, name, members=members, count=count)
        flush = asyncio.create_task(client.flush())
        self._background.add(flush)
        flush.add_done_callback(self._background.discard)
        done, _ = await asyncio.wait({flush}, timeout=FLUSH_WAIT_S)
        finished = flush in done and not flush.cancelled() and flush.exception() is None
        left = flush.result() if finished else client.pending_outbox()
        refusal = client.last_refusal
        return Handled(
            Outcome.SENT if left == 0 else Outcome.UNSENT,
            name,
            left,
            client.server_url,
            None if refusal is None else Refusal.of(refusal),
            members,
            count,
        )
