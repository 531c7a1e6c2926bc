"""The storage contract, held against every backend (``storage`` is parametrized)."""

from __future__ import annotations

from sotto.server.storage import MemoryStorage, Storage
from sotto.server.storage.base import (
    EXPIRY_STEP_DAYS,
    AccountId,
    CreateOutcome,
    KeyCounts,
    KeyUpload,
    PutOutcome,
    UploadOutcome,
    UsernameOutcome,
    drained_expiry,
    expiry_phase,
)
from sotto.server.storage.sqlite import id_tag
from tests.server.storage.conftest import (
    DAY,
    account_id,
    kyber,
    mailbox,
    mailbox_id,
    message_id,
    new_account,
    one_time,
    run,
    sha,
    signed,
)

TOKEN = b"t" * 32
PAYLOAD = bytes(256)


# ---------------------------------------------------------------------------- accounts
def test_account_and_device_round_trip(storage: Storage) -> None:
    async def body() -> None:
        aid, secret = await new_account(storage)
        account = await storage.get_account(aid)
        assert account is not None and account.created_day == DAY and account.identity_key[0] == 5
        device = await storage.get_device(aid, 1)
        assert device is not None and device.secret_hash == sha(secret) and device.registration_id == 1234
        assert await storage.get_device(aid, 2) is None
        assert await storage.get_account(account_id()) is None

    run(body())


def test_account_id_taken(storage: Storage) -> None:
    async def body() -> None:
        aid, _ = await new_account(storage)
        account = await storage.get_account(aid)
        device = await storage.get_device(aid, 1)
        assert account is not None and device is not None
        assert not await storage.create_account(account, device)

    run(body())


def test_usernames(storage: Storage) -> None:
    async def body() -> None:
        alice, _ = await new_account(storage)
        bob, _ = await new_account(storage)
        assert await storage.set_username(alice, b"h1" * 16) is UsernameOutcome.SET
        assert await storage.set_username(alice, b"h1" * 16) is UsernameOutcome.SET
        assert await storage.set_username(bob, b"h1" * 16) is UsernameOutcome.TAKEN
        assert await storage.find_username(b"h1" * 16) == alice
        assert await storage.set_username(alice, b"h2" * 16) is UsernameOutcome.SET
        assert await storage.find_username(b"h1" * 16) is None
        assert await storage.set_username(bob, b"h1" * 16) is UsernameOutcome.SET
        await storage.clear_username(alice)
        assert await storage.find_username(b"h2" * 16) is None
        assert await storage.find_username(b"h1" * 16) == bob

    run(body())


# ---------------------------------------------------------------------------- prekeys
FULL = KeyUpload(
    signed_pre_key=signed(1),
    kyber_last_resort=kyber(900),
    one_time_pre_keys=(one_time(1), one_time(2)),
    kyber_pre_keys=(kyber(1), kyber(2)),
)


async def _with_token(storage: Storage) -> tuple[AccountId, bytes]:
    aid, _ = await new_account(storage)
    await storage.add_access_token(aid, sha(b"a" * 32), DAY + 5)
    return aid, sha(b"a" * 32)


def test_upload_is_idempotent_per_key_id(storage: Storage) -> None:
    async def body() -> None:
        aid, _ = await new_account(storage)
        assert await storage.upload_keys(aid, 1, FULL) is UploadOutcome.STORED
        assert await storage.upload_keys(aid, 1, FULL) is UploadOutcome.STORED
        assert await storage.key_counts(aid, 1) == KeyCounts(one_time=2, kyber=2)
        more = KeyUpload(one_time_pre_keys=(one_time(2), one_time(3)), kyber_pre_keys=(kyber(3),))
        assert await storage.upload_keys(aid, 1, more) is UploadOutcome.STORED
        assert await storage.key_counts(aid, 1) == KeyCounts(one_time=3, kyber=3)

    run(body())


def test_upload_conflict_writes_nothing(storage: Storage) -> None:
    async def body() -> None:
        aid, _ = await new_account(storage)
        await storage.upload_keys(aid, 1, FULL)
        before = await storage.export_account(aid)
        other = one_time(2).__class__(2, one_time(99).public_key)
        bad_uploads = [
            KeyUpload(one_time_pre_keys=(one_time(5), other)),
            KeyUpload(
                kyber_pre_keys=(kyber(7), kyber(2).__class__(2, kyber(8).public_key, kyber(2).signature))
            ),
            KeyUpload(kyber_pre_keys=(kyber(2).__class__(2, kyber(2).public_key, kyber(9).signature),)),
            KeyUpload(signed_pre_key=signed(1).__class__(1, signed(5).public_key, signed(1).signature)),
            KeyUpload(
                signed_pre_key=signed(3),
                kyber_last_resort=kyber(900).__class__(900, kyber(5).public_key, b"s" * 64),
            ),
            KeyUpload(one_time_pre_keys=(one_time(10), one_time(10).__class__(10, one_time(11).public_key))),
        ]
        for upload in bad_uploads:
            assert await storage.upload_keys(aid, 1, upload) is UploadOutcome.CONFLICT, upload
        assert await storage.export_account(aid) == before

    run(body())


def test_new_signed_prekey_replaces_the_old(storage: Storage) -> None:
    async def body() -> None:
        aid, token = await _with_token(storage)
        await storage.upload_keys(aid, 1, FULL)
        assert await storage.upload_keys(aid, 1, KeyUpload(signed_pre_key=signed(2))) is UploadOutcome.STORED
        bundle = await storage.take_bundle(aid, token, DAY)
        assert bundle is not None and bundle.devices[0].signed_pre_key == signed(2)

    run(body())


def test_bundle_consumes_one_time_keys_then_falls_back_to_last_resort(storage: Storage) -> None:
    async def body() -> None:
        aid, token = await _with_token(storage)
        await storage.upload_keys(aid, 1, FULL)
        first = await storage.take_bundle(aid, token, DAY)
        second = await storage.take_bundle(aid, token, DAY)
        third = await storage.take_bundle(aid, token, DAY)
        assert first and second and third
        assert [b.devices[0].pre_key for b in (first, second, third)] == [one_time(1), one_time(2), None]
        assert [b.devices[0].kyber_pre_key for b in (first, second, third)] == [
            kyber(1),
            kyber(2),
            kyber(900),
        ]
        assert first.devices[0].registration_id == 1234 and first.identity_key[0] == 5
        assert await storage.key_counts(aid, 1) == KeyCounts(one_time=0, kyber=0)
        fourth = await storage.take_bundle(aid, token, DAY)
        assert fourth and fourth.devices[0].kyber_pre_key == kyber(900)

    run(body())


def test_consumed_key_ids_are_never_put_back(storage: Storage) -> None:
    async def body() -> None:
        aid, token = await _with_token(storage)
        await storage.upload_keys(aid, 1, FULL)
        await storage.take_bundle(aid, token, DAY)
        # A retried upload (say after a crash) carries the consumed keys 1 again: ignored.
        assert await storage.upload_keys(aid, 1, FULL) is UploadOutcome.STORED
        assert await storage.key_counts(aid, 1) == KeyCounts(one_time=1, kyber=1)
        bundle = await storage.take_bundle(aid, token, DAY)
        assert bundle and bundle.devices[0].pre_key == one_time(2)

    run(body())


def test_bundle_needs_a_valid_token(storage: Storage) -> None:
    async def body() -> None:
        aid, token = await _with_token(storage)
        other, _ = await new_account(storage)
        await storage.upload_keys(aid, 1, FULL)
        assert await storage.take_bundle(aid, sha(b"wrong"), DAY) is None
        assert await storage.take_bundle(other, token, DAY) is None
        assert await storage.take_bundle(account_id(), token, DAY) is None
        assert await storage.take_bundle(aid, token, DAY + 5) is None  # its expiry day
        assert await storage.key_counts(aid, 1) == KeyCounts(one_time=2, kyber=2)
        await storage.delete_access_token(aid, token)
        assert await storage.take_bundle(aid, token, DAY) is None

    run(body())


def test_an_access_token_is_held_by_one_account_at_most(storage: Storage) -> None:
    """Registering a token hash another account holds moves it; a delete, a sweep or the
    account's deletion lets it go, and it can be registered afresh."""

    async def body() -> None:
        first, token = await _with_token(storage)
        second, _ = await new_account(storage)
        bystander, _ = await new_account(storage)
        assert await storage.add_access_token(bystander, sha(b"b" * 32), DAY + 5)
        assert await storage.add_access_token(second, token, DAY + 5)
        assert not await storage.has_access(first, token, DAY)
        assert await storage.has_access(second, token, DAY)
        assert await storage.add_access_token(first, token, DAY + 6)
        await storage.delete_access_token(second, token)  # not its token any more: nothing changes
        assert await storage.has_access(first, token, DAY)
        assert not await storage.has_access(second, token, DAY)
        await storage.delete_access_token(first, token)
        assert not await storage.has_access(first, token, DAY)
        assert await storage.add_access_token(second, token, DAY + 5)
        assert await storage.has_access(second, token, DAY) and not await storage.has_access(
            first, token, DAY
        )
        assert await storage.delete_account(second)
        assert await storage.add_access_token(first, token, DAY + 5)
        assert await storage.has_access(first, token, DAY)
        assert (await storage.sweep(DAY + 5, 30)).access_tokens == 2
        assert await storage.add_access_token(first, token, DAY + 10)
        assert await storage.has_access(first, token, DAY + 6)
        assert await storage.add_access_token(bystander, token, DAY + 10)
        assert not await storage.has_access(first, token, DAY + 6)
        assert await storage.has_access(bystander, token, DAY + 6)

    run(body())


def test_bundle_without_keys_lists_no_device(storage: Storage) -> None:
    async def body() -> None:
        aid, token = await _with_token(storage)
        bundle = await storage.take_bundle(aid, token, DAY)
        assert bundle is not None and bundle.devices == ()
        await storage.upload_keys(aid, 1, KeyUpload(signed_pre_key=signed(1)))
        bundle = await storage.take_bundle(aid, token, DAY)
        assert bundle is not None and bundle.devices == ()  # no Kyber key at all

    run(body())


def test_export_account(storage: Storage) -> None:
    async def body() -> None:
        aid, token = await _with_token(storage)
        await storage.upload_keys(aid, 1, FULL)
        await storage.set_username(aid, b"u" * 32)
        export = await storage.export_account(aid)
        assert set(export) == {"accounts", "devices", "one_time_pre_keys", "kyber_pre_keys", "access_tokens"}
        assert export["accounts"][0]["username_hash"] == b"u" * 32
        assert export["devices"][0]["signed_pre_key_id"] == 1
        assert [r["key_id"] for r in export["one_time_pre_keys"]] == [1, 2]
        assert [r["key_id"] for r in export["kyber_pre_keys"]] == [1, 2]
        assert export["access_tokens"] == [{"token_hash": token, "account_id": aid, "expires_day": DAY + 5}]
        assert await storage.export_account(account_id()) == {}

    run(body())


# ---------------------------------------------------------------------------- mailboxes
def test_create_mailbox_outcomes(storage: Storage) -> None:
    async def body() -> None:
        box = mailbox()
        assert await storage.create_mailbox(box) is CreateOutcome.CREATED
        assert await storage.create_mailbox(box) is CreateOutcome.EXISTS
        other = mailbox(box.mailbox_id, token=b"u" * 32)
        assert await storage.create_mailbox(other) is CreateOutcome.CONFLICT
        assert (await storage.get_mailboxes([box.mailbox_id]))[box.mailbox_id] == box

    run(body())


def test_put_dedupes_and_orders(storage: Storage) -> None:
    async def body() -> None:
        box = mailbox()
        await storage.create_mailbox(box)
        ids = [message_id() for _ in range(5)]
        for i, mid in enumerate(ids):
            result = await storage.put_envelope(box.mailbox_id, sha(TOKEN), mid, bytes([i]) * 256, DAY)
            assert result.outcome is PutOutcome.STORED and result.envelope is not None
        again = await storage.put_envelope(box.mailbox_id, sha(TOKEN), ids[2], bytes(512), DAY)
        assert again.outcome is PutOutcome.DUPLICATE and again.envelope is None
        pending = await storage.pending(box.mailbox_id, 10)
        assert [e.message_id for e in pending] == ids
        assert pending[2].payload == bytes([2]) * 256  # the first copy, stored once
        assert [e.seq for e in pending] == [1, 2, 3, 4, 5]
        skipped = await storage.pending(box.mailbox_id, 2, frozenset(ids[:2]))
        assert [e.message_id for e in skipped] == ids[2:4]

    run(body())


def test_pending_reads_no_more_than_a_byte_budget_and_one_envelope(storage: Storage) -> None:
    async def body() -> None:
        box = mailbox()
        await storage.create_mailbox(box)
        ids = [message_id() for _ in range(6)]
        for i, mid in enumerate(ids):
            await storage.put_envelope(box.mailbox_id, sha(TOKEN), mid, bytes([i]) * 1000, DAY)
        # 2,500 bytes: the third envelope takes the total past it and is the last read.
        within = await storage.pending(box.mailbox_id, 10, max_bytes=2500)
        assert [e.message_id for e in within] == ids[:3]
        assert within[2].payload == bytes([2]) * 1000
        exact = await storage.pending(box.mailbox_id, 10, max_bytes=3000)
        assert [e.message_id for e in exact] == ids[:4]
        # The first always comes, however small the budget; skip and limit still apply.
        assert [e.message_id for e in await storage.pending(box.mailbox_id, 10, max_bytes=1)] == ids[:1]
        skipped = await storage.pending(box.mailbox_id, 10, frozenset(ids[:2]), max_bytes=1500)
        assert [e.message_id for e in skipped] == ids[2:4]
        assert [e.message_id for e in await storage.pending(box.mailbox_id, 2, max_bytes=10**6)] == ids[:2]

    run(body())


def test_put_refuses_unknown_wrong_token_and_expired_alike(storage: Storage) -> None:
    async def body() -> None:
        box = mailbox(ttl=2)
        await storage.create_mailbox(box)
        outcomes = [
            await storage.put_envelope(mailbox_id(), sha(TOKEN), message_id(), PAYLOAD, DAY),
            await storage.put_envelope(box.mailbox_id, sha(b"x" * 32), message_id(), PAYLOAD, DAY),
            await storage.put_envelope(box.mailbox_id, sha(TOKEN), message_id(), PAYLOAD, DAY + 2),
        ]
        assert [o.outcome for o in outcomes] == [PutOutcome.NOT_FOUND] * 3
        assert await storage.pending(box.mailbox_id, 10) == []

    run(body())


def test_ack_deletes_and_unknown_refs_are_ignored(storage: Storage) -> None:
    async def body() -> None:
        box = mailbox()
        await storage.create_mailbox(box)
        ids = [message_id() for _ in range(3)]
        for mid in ids:
            await storage.put_envelope(box.mailbox_id, sha(TOKEN), mid, PAYLOAD, DAY)
        deleted = await storage.delete_envelopes(
            [(box.mailbox_id, ids[0]), (box.mailbox_id, message_id()), (mailbox_id(), ids[1])]
        )
        assert deleted == 1
        assert [e.message_id for e in await storage.pending(box.mailbox_id, 10)] == ids[1:]
        # After an ack, the same id may be stored again (receivers drop ids they have seen).
        again = await storage.put_envelope(box.mailbox_id, sha(TOKEN), ids[0], PAYLOAD, DAY)
        assert again.outcome is PutOutcome.STORED and again.envelope and again.envelope.seq == 4

    run(body())


def test_touch_moves_expiry_in_weekly_steps(storage: Storage) -> None:
    async def body() -> None:
        box = mailbox(ttl=3)
        phase = expiry_phase(box.mailbox_id)
        await storage.create_mailbox(box)
        await storage.touch_mailboxes([box.mailbox_id, mailbox_id()], DAY + 10)
        first = (await storage.get_mailboxes([box.mailbox_id]))[box.mailbox_id].expires_day
        assert DAY + 13 <= first <= DAY + 19 and first % EXPIRY_STEP_DAYS == phase
        # Daily drains leave the stored day alone until the week turns, then move it a week on.
        seen = [first]
        for day in range(DAY + 11, DAY + 25):
            await storage.touch_mailboxes([box.mailbox_id], day)
            held = (await storage.get_mailboxes([box.mailbox_id]))[box.mailbox_id].expires_day
            assert day + 3 <= held <= day + 9
            seen.append(held)
        assert sorted(set(seen)) == [first, first + 7, first + 14]
        # A drain never moves the expiry back.
        await storage.touch_mailboxes([box.mailbox_id], DAY)
        assert (await storage.get_mailboxes([box.mailbox_id]))[box.mailbox_id].expires_day == first + 14

    run(body())


def test_mailboxes_drained_together_move_on_their_own_weekdays(storage: Storage) -> None:
    async def body() -> None:
        boxes = [mailbox(ttl=30) for _ in range(40)]
        for box in boxes:
            await storage.create_mailbox(box)
        ids = [b.mailbox_id for b in boxes]
        await storage.touch_mailboxes(ids, DAY)
        held = await storage.get_mailboxes(ids)
        assert {held[m].expires_day for m in ids} == {drained_expiry(m, DAY, 30) for m in ids}
        assert len({held[m].expires_day for m in ids}) > 1

    run(body())


def test_delete_mailbox_takes_its_envelopes(storage: Storage) -> None:
    async def body() -> None:
        box = mailbox()
        await storage.create_mailbox(box)
        await storage.put_envelope(box.mailbox_id, sha(TOKEN), message_id(), PAYLOAD, DAY)
        await storage.delete_mailbox(box.mailbox_id)
        assert await storage.get_mailboxes([box.mailbox_id]) == {}
        assert await storage.pending(box.mailbox_id, 10) == []
        assert await storage.export_mailbox(box.mailbox_id) == {}
        assert await storage.create_mailbox(box) is CreateOutcome.CREATED

    run(body())


def test_export_mailbox(storage: Storage) -> None:
    async def body() -> None:
        box = mailbox()
        await storage.create_mailbox(box)
        mid = message_id()
        await storage.put_envelope(box.mailbox_id, sha(TOKEN), mid, PAYLOAD, DAY)
        export = await storage.export_mailbox(box.mailbox_id)
        assert export["mailboxes"] == [
            {
                "mailbox_id": box.mailbox_id,
                "auth_key": box.auth_key,
                "token_hash": box.token_hash,
                "ttl_days": 30,
                "expires_day": DAY + 30,
            }
        ]
        (row,) = export["envelopes"]
        sealed, slot = row.pop("sealed"), row.pop("key_slot")
        assert row == {
            "mailbox_id": box.mailbox_id,
            "seq": 1,
            "id_tag": id_tag(box.mailbox_id, mid),
            "received_day": DAY,
        }
        assert isinstance(sealed, bytes) and len(sealed) == len(mid) + len(PAYLOAD)
        assert PAYLOAD not in sealed or isinstance(storage, MemoryStorage)  # encrypted at rest
        (key,) = export["envelope_keys"]
        assert key["slot"] == slot and isinstance(key["key"], bytes) and len(key["key"]) == 32

    run(body())


def test_sweep(storage: Storage) -> None:
    async def body() -> None:
        short, long = mailbox(ttl=5), mailbox(ttl=90)
        for box in (short, long):
            await storage.create_mailbox(box)
            await storage.put_envelope(box.mailbox_id, sha(TOKEN), message_id(), PAYLOAD, DAY)
        late = message_id()
        await storage.put_envelope(long.mailbox_id, sha(TOKEN), late, PAYLOAD, DAY + 3)
        aid, token = await _with_token(storage)  # expires DAY + 5
        assert (await storage.sweep(DAY + 4, 30)).envelopes == 0
        result = await storage.sweep(DAY + 5, 30)
        assert (result.mailboxes, result.envelopes, result.access_tokens) == (1, 1, 1)
        assert await storage.get_mailboxes([short.mailbox_id]) == {}
        assert await storage.take_bundle(aid, token, DAY) is None
        result = await storage.sweep(DAY + 30, 30)
        assert result.envelopes == 1
        assert [e.message_id for e in await storage.pending(long.mailbox_id, 10)] == [late]
        assert (await storage.sweep(DAY + 33, 30)).envelopes == 1

    run(body())


def test_has_access(storage: Storage) -> None:
    async def body() -> None:
        aid, token = await _with_token(storage)
        assert await storage.has_access(aid, token, DAY)
        assert not await storage.has_access(aid, token, DAY + 5)
        assert not await storage.has_access(aid, sha(b"x"), DAY)
        assert not await storage.has_access(account_id(), token, DAY)

    run(body())
