"""Build the committed seed corpus: real, valid encodings for every target, plus a few edge cases.

``python -m tests.fuzz.seeds`` writes the missing ``tests/fuzz/corpus/<target>/seed-*`` files
(``--rewrite``: all of them), leaving every other file there, such as the ``regression-*``
inputs of bugs the fuzzer found, alone. Most seeds come out the same each time (seeded
randomness); the 1:1 session's do not (Kyber encapsulation draws its own randomness), so a
session record and the messages it decrypts must be rewritten together (``--rewrite``).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from sotto.client import content as c
from sotto.client import device_list, linking
from sotto.client.attachment_pointer import AttachmentPointer
from sotto.client.backup_format import BackupSealer, Prologue, encode_prologue
from sotto.client.invite import InviteLink
from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.protocol.bundle import PreKeyRecord
from sotto.protocol.fingerprint import SCANNABLE_VERSION
from sotto.protocol.group import create_distribution, group_encrypt, process_distribution
from sotto.protocol.messages import PreKeySignalMessage
from sotto.protocol.ratchet.spqr import SpqrMessage, SpqrMessageType
from sotto.protocol.sealed_sender import (
    SealedSenderV1Message,
    SentMessage,
    seal_v1,
    seal_v2,
)
from sotto.store import codec
from sotto.store.cipher import StoreCipher
from sotto.wire import auth, b64, frames, ohttp, padding
from tests.fuzz import targets
from tests.protocol.parties import make_pair
from tests.protocol.sealed_sender.helpers import World, recipients_for
from tests.vectors import ohttp as ohttp_vectors

CORPUS = Path(__file__).resolve().parent / "corpus"


def _api(model: str, body: dict[str, object]) -> bytes:
    index = [m.__name__ for m in targets._API_MODELS].index(model)
    return bytes((index,)) + json.dumps(body, separators=(",", ":")).encode()


def build() -> Iterator[tuple[str, str, bytes]]:
    """``(target, seed name, bytes)`` for every seed."""
    # 1:1 messages, from a real session: a PreKey message, then a reply and a follow-up.
    alice, bob = make_pair(3)
    alice.start_session(bob)
    first = alice.encrypt(bob, b"first message")
    bob.decrypt(alice, first)
    reply = bob.encrypt(alice, b"reply")
    alice.decrypt(bob, reply)
    later = alice.encrypt(bob, b"x" * 300)
    prekey = PreKeySignalMessage.decode(first.body)
    yield "prekey_signal_message", "valid", first.body
    yield "signal_message", "valid-inner", prekey.message.serialized
    yield "signal_message", "valid-reply", reply.body
    yield "signal_message", "valid-long", later.body
    yield "session_decrypt", "valid", later.body
    yield "session_decrypt", "replayed", reply.body
    yield "signal_message", "legacy-version", b"\x33" + reply.body[1:]
    yield "spqr_message", "valid-inner", prekey.message.pq_ratchet
    yield "spqr_message", "valid-chunk", SpqrMessage(1, 2, SpqrMessageType.CT1, (3, bytes(32))).encode()
    # Session records as stored after each step.
    for peer, party in (("alice", alice), ("bob", bob)):
        for record in party.sessions.values():
            yield "session_record", f"valid-{peer}", record.to_bytes()
    yield "prekey_record", "valid", PreKeyRecord.generate(5, seeded_rng(4)).to_bytes()
    yield "signed_prekey_record", "valid", alice.signed.to_bytes()
    yield "kyber_prekey_record", "valid", alice.kyber.to_bytes()

    # Groups: an SKDM, the records on both sides and a few SKMs.
    rng = seeded_rng(5)
    distribution = uuid.UUID("d1d1d1d1-0000-4000-8000-000000000001")
    sender, skdm = create_distribution(None, distribution, rng)
    member = process_distribution(None, skdm)
    yield "sender_key_distribution_message", "valid", skdm.encode()
    for i in range(3):
        sender, skm = group_encrypt(sender, b"group message %d" % i, rng)
        yield "sender_key_message", f"valid-{i}", skm
        yield "group_decrypt", f"valid-{i}", skm
    yield "sender_key_record", "valid-sender", sender.to_bytes()
    yield "sender_key_record", "valid-member", member.to_bytes()

    # Sealed sender: certificates, content, a v1 envelope, a v2 sent form and its split.
    world = World.create(9)
    a, b, d = world.party(), world.party(2), world.party()
    usmc = world.content(a, b"inner", group_id=b"group")
    yield "server_certificate", "valid", world.server_certificate.serialized
    yield "sender_certificate", "valid", a.certificate.serialized
    yield "sealed_sender_content", "valid", usmc.serialized
    yield "sealed_sender_content", "valid-plain", world.content(b).serialized
    v1 = seal_v1(a.identity, b.identity.public, usmc, world.rng)
    yield "sealed_sender_v1", "valid", v1
    yield "open_sealed", "valid-v1", v1
    yield "sealed_sender_v1", "valid-roundtrip", SealedSenderV1Message.decode(v1).encode()
    sent = seal_v2(a.identity, recipients_for([b, d], devices=2), usmc, world.rng, excluded=[a.uuid])
    yield "sealed_sender_v2_sent", "valid", sent
    yield "sealed_sender_v2_received", "valid", SentMessage.parse(sent).received_message_for(0)
    yield "open_sealed", "valid-v2", SentMessage.parse(sent).received_message_for(0)

    # Relay wire: frames both ways, HTTP bodies, credential headers, padded envelopes.
    ids = [bytes([i]) * 16 for i in range(3)]
    for name, frame in (
        ("subscribe", frames.Subscribe(tuple(frames.MailboxProof(i, bytes(64)) for i in ids))),
        ("ack", frames.Ack(tuple(frames.EnvelopeRef(i, i) for i in ids))),
        ("send", frames.Send(ids[0], bytes(32), ids[1], padding.pad(b"payload"))),
    ):
        yield "client_frame", f"valid-{name}", frames.encode(frame).encode()
    for name, server_frame in (
        ("challenge", frames.Challenge(bytes(32))),
        ("subscribed", frames.Subscribed(tuple(ids[:2]), (ids[2],))),
        ("envelope", frames.Envelope(ids[0], ids[1], 20_000, padding.pad(b"payload"))),
        ("sent", frames.Sent(ids[0], False)),
        ("send-failed", frames.SendFailed(ids[0], "gone")),
        ("error", frames.Error("bad_frame", "frame is not JSON")),
    ):
        yield "server_frame", f"valid-{name}", frames.encode(server_frame).encode()
    yield "client_frame", "deep-nesting", b"[" * 5000 + b"]" * 5000
    key = KeyPair.generate(rng).public.to_bytes()
    e = b64.encode
    yield (
        "api_body",
        "valid-create-account",
        _api("CreateAccount", {"identity_key": e(key), "registration_id": 7, "device_secret": e(bytes(32))}),
    )
    yield (
        "api_body",
        "valid-send-message",
        _api("SendMessage", {"message_id": e(ids[0]), "payload": e(bytes(256))}),
    )
    yield (
        "api_body",
        "valid-upload-keys",
        _api(
            "UploadKeys",
            {
                "signed_pre_key": {"id": 1, "public_key": e(key), "signature": e(bytes(64))},
                "one_time_pre_keys": [{"id": 2, "public_key": e(key)}],
            },
        ),
    )
    yield "api_body", "valid-poll", _api("Poll", {"ack": [e(ids[0])], "limit": 5})
    yield (
        "api_body",
        "valid-poll-result",
        _api(
            "PollResult",
            {"envelopes": [{"id": e(ids[1]), "day": 3, "payload": e(bytes(256))}], "more": False},
        ),
    )
    yield "api_body", "valid-set-username", _api("SetUsername", {"username": "alice_1"})
    yield "device_auth_header", "valid", auth.encode_device_auth(ids[0], 1, bytes(32)).encode("latin-1")
    # Written out rather than encoded: the header as it is (milliseconds, a nonce) and as it was.
    yield "mailbox_auth_header", "old-format-seconds", f"1750000000.{e(bytes(64))}".encode()
    yield "mailbox_auth_header", "valid-ms-nonce", f"1750000000000.{e(bytes(16))}.{e(bytes(64))}".encode()
    yield "token_header", "valid", e(bytes(range(32))).encode()
    yield "sign_time_header", "valid", b"1750000000000"
    yield "envelope_padding", "valid", bytes((0,)) + b"hello\x80"
    yield "envelope_padding", "valid-full", padding.pad(b"x" * 300)
    for name, size in (("valid-one-chunk", 40), ("valid-chunks", 400)):
        sealer = BackupSealer(targets.BACKUP_KEY, seeded_rng(size), chunk_size=targets.BACKUP_CHUNK)
        plaintext = encode_prologue(Prologue({"format": 1, "counts": {"messages": 2}}, bytes(32)))
        sealed = sealer.seal(plaintext + bytes(range(256))[:size]) + sealer.finish()
        yield "backup_file", name, bytes((2,)) + sealer.header + sealed
    yield "backup_file", "valid-prologue", bytes((1,)) + plaintext
    yield "store_row", "valid", bytes((5,)) + codec.pack([None, True, 7, "text", b"bytes"])
    store = StoreCipher(targets.STORE_KEY, seeded_rng(13))
    yield "store_sealed_value", "valid", store.seal("contacts", "row", b"key", codec.pack(["Alice", 7]))
    yield "store_sealed_value", "other-row", store.seal("contacts", "row", b"other", codec.pack(["Bob", 1]))

    # Oblivious HTTP: the RFC 9292 examples, RFC 9458 Appendix A, and a key list of two.
    for example in ohttp_vectors.load("rfc9292_examples")["examples"]:
        yield f"bhttp_{example['kind']}", f"valid-rfc9292-{example['framing']}", bytes.fromhex(example["hex"])
    appendix = ohttp_vectors.load("rfc9458_appendix_a")
    config = ohttp.KeyConfig.decode(bytes.fromhex(appendix["key_config"]))
    yield "bhttp_request", "valid-rfc9458", bytes.fromhex(appendix["request"])
    yield "bhttp_response", "valid-rfc9458", bytes.fromhex(appendix["response"])
    yield "ohttp_key_configs", "valid-rfc9458", ohttp.encode_key_configs([config])
    own = ohttp.GatewayKey.generate(7, seeded_rng(14)).config
    yield "ohttp_key_configs", "valid-two", ohttp.encode_key_configs([own, config])
    yield "ohttp_request", "valid-rfc9458", bytes.fromhex(appendix["encapsulated_request"])
    yield "ohttp_response", "valid-rfc9458", bytes.fromhex(appendix["encapsulated_response"])

    # Client: content of every kind, invite links, safety-number codes.
    mailbox = c.MailboxAddress("https://relay.example:8787", ids[0], bytes(32))
    for content in (
        c.Text(ids[0], 1_700_000_000_000, "hello ünïcode"),
        c.DeliveryReceipt((ids[0], ids[1])),
        c.Typing(True, ids[2]),
        c.ContactRequest("Alice", mailbox, bytes(32)),
        c.MailboxRotated(mailbox),
        c.GroupUpdate(ids[0], "Team", (ids[0], ids[1]), skdm.encode()),
        c.Cover(),
        c.GroupText(ids[0], 1_700_000_000_000, "a reply", c.Quote(ids[1], ids[2]), 3600),
        c.Edit(ids[0], 1_700_000_000_001, "edited"),
        c.DeleteForEveryone(ids[0], 1_700_000_000_002),
        c.Reaction(ids[0], ids[1], "👍🏽", 1_700_000_000_003),
        c.Timer(ids[0], 1_700_000_000_004, 86_400),
        c.Attachment(
            ids[0],
            1_700_000_000_005,
            AttachmentPointer(ids[1], bytes(range(64)), bytes(32), 1_048_576, "image/png", "photo.png"),
            "a caption",
            "https://relay.example:8787",
            3600,
        ),
    ):
        yield "content", f"valid-{type(content).__name__.lower()}", c.encode(content)
    link = InviteLink("https://relay.example:8787", ids[0], bytes(range(32))).encode()
    yield "invite_link", "valid", link.encode()
    yield "invite_link", "bad-url", InviteLink("http://[::1", ids[0], bytes(32)).encode().encode()
    list_rng = seeded_rng(24)
    account, keys = (
        KeyPair.generate(seeded_rng(20)),
        [KeyPair.generate(seeded_rng(21 + i)).public for i in range(3)],
    )
    listed = device_list.first_list(
        device_list.Device(1, keys[0], "phone", 1_767_225_600_000), account, list_rng
    )
    yield "device_list", "valid-first", listed.encode()
    laptop = device_list.Device(2, keys[1], "Åsa's laptop", 1_767_312_000_000)
    head = device_list.add_device(listed.content, laptop, account, list_rng)
    rival = device_list.add_device(
        listed.content, device_list.Device(3, keys[2], "desk", 1), account, list_rng
    )
    yield "device_list", "valid-added", head.encode()
    merged = device_list.resolve(listed.content, (head, rival), account, list_rng).signed
    yield "device_list", "valid-merged", merged.encode()
    device_link = linking.DeviceLink(
        "https://relay.example:8787", bytes(range(32)), keys[1], keys[2], "Åsa's laptop"
    )
    yield "device_link", "valid", device_link.encode().encode()
    contact = linking.LinkedContact(
        "Bob", "Bob B.", ids[1], keys[0], True, False, ("https://relay.example", ids[2], bytes(32))
    )
    message = linking.Provisioning(ids[0], account, "Åsa", head, (contact,)).encode()
    yield "provisioning", "valid-plain", linking.Part(0, 1, message).encode()
    sealed = linking.seal(message, targets._LINK, seeded_rng(25))
    yield "provisioning", "valid-sealed", linking.Part(0, 1, sealed).encode()
    ours = targets._OURS
    theirs = type(ours)(ours.version, ours.remote, ours.local).encode()
    yield "scannable_fingerprint", "valid-match", theirs
    yield "scannable_fingerprint", "valid-ours", ours.encode()
    yield "scannable_fingerprint", "version-1", type(ours)(1, ours.remote, ours.local).encode()
    yield "safety_qr", "valid", ("sotto-safety:" + e(theirs)).encode()
    assert ours.version == SCANNABLE_VERSION


def main(argv: list[str] | None = None) -> None:
    rewrite = "--rewrite" in (sys.argv[1:] if argv is None else argv)
    written: dict[str, int] = {}
    for target, name, data in build():
        assert target in targets.TARGETS, target
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"seed-{name}"
        if rewrite or not path.exists():
            path.write_bytes(data)
            written[target] = written.get(target, 0) + 1
    for target in targets.TARGETS:
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        edge = {"empty": b"", "zero": b"\x00", "ff": b"\xff" * 64}
        for name, data in edge.items():
            (folder / f"seed-edge-{name}").write_bytes(data)
        print(f"{target:34} {written.get(target, 0)} seeds written")


if __name__ == "__main__":
    main()
