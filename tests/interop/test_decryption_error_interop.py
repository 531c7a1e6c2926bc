"""Retry receipts against libsignal 0.103 itself: the same DecryptionErrorMessage and
PlaintextContent bytes for the same failed message, and libsignal reads ours, Sotto's prekey
bundle field included (it skips a Content field it does not know)."""

from __future__ import annotations

import json
import shutil
import subprocess

from sotto.crypto.keys import KeyPair
from sotto.crypto.random import seeded_rng
from sotto.protocol import session
from sotto.protocol.bundle import KyberPreKeyRecord, PreKeyBundle, SignedPreKeyRecord
from sotto.protocol.decryption_error import DecryptionErrorMessage, PlaintextContent
from sotto.protocol.messages import CiphertextMessageType, PreKeySignalMessage
from tests.interop.oracle import OracleUnavailableError, node_modules_dir
from tests.protocol.test_decryption_error import ALICE, BOB, NOW_MS

TIMESTAMP = 0x2_0000_0001
DEVICE_ID = 0x8086_2021

SCRIPT = """
import { pathToFileURL } from 'node:url';
const modules = process.argv[1];
const lib = await import(pathToFileURL(modules + '/@signalapp/libsignal-client/dist/index.js').href);
const input = JSON.parse(await new Promise((ok) => {
  let text = ''; process.stdin.on('data', (d) => { text += d; }); process.stdin.on('end', () => ok(text));
}));
const hex = (b) => Buffer.from(b).toString('hex');
const bytes = (h) => Uint8Array.from(Buffer.from(h, 'hex'));
const out = {};
const types = lib.CiphertextMessageType;
for (const [name, type] of [['whisper', types.Whisper], ['prekey', types.PreKey]]) {
  const original = bytes(input[name]);
  const dem = lib.DecryptionErrorMessage.forOriginal(original, type, input.timestamp, input.device_id);
  out[name] = { dem: hex(dem.serialize()), plaintext: hex(lib.PlaintextContent.from(dem).serialize()) };
}
const ours = lib.PlaintextContent.deserialize(bytes(input.ours));
const read = lib.DecryptionErrorMessage.extractFromSerializedBody(ours.body());
out.read = {
  timestamp: Number(read.timestamp()),
  device_id: read.deviceId(),
  ratchet_key: hex(read.ratchetKey().serialize()),
};
process.stdout.write(JSON.stringify(out));
"""


def _prekey_message() -> bytes:
    rng = seeded_rng(11)
    alice, bob = KeyPair.generate(rng), KeyPair.generate(rng)
    signed = SignedPreKeyRecord.generate(7, bob, NOW_MS, rng)
    kyber = KyberPreKeyRecord.generate(9, bob, NOW_MS, rng, last_resort=True)
    bundle = PreKeyBundle(
        registration_id=1234,
        device_id=1,
        pre_key_id=None,
        pre_key_public=None,
        signed_pre_key_id=signed.id,
        signed_pre_key_public=signed.key_pair.public,
        signed_pre_key_signature=signed.signature,
        identity_key=bob.public,
        kyber_pre_key_id=kyber.id,
        kyber_pre_key_public=kyber.key_pair.public,
        kyber_pre_key_signature=kyber.signature,
    )
    record = session.process_prekey_bundle(
        None,
        our_identity=alice,
        our_registration_id=77,
        our_address=ALICE,
        their_address=BOB,
        bundle=bundle,
        now_ms=NOW_MS,
        rng=rng,
    )
    _, message = session.encrypt(record, b"hi", our_address=ALICE, their_address=BOB, now_ms=NOW_MS, rng=rng)
    return message.body


def test_libsignal_builds_the_same_retry_receipts_and_reads_ours() -> None:
    node = shutil.which("node")
    modules = node_modules_dir()
    if node is None or not (modules / "@signalapp" / "libsignal-client" / "package.json").is_file():
        raise OracleUnavailableError("node and @signalapp/libsignal-client are needed; run `make node`")
    prekey = _prekey_message()
    whisper = PreKeySignalMessage.decode(prekey).message.serialized
    ratchet_key = PreKeySignalMessage.decode(prekey).message.ratchet_key
    # Ours carries the bundle field, which libsignal must skip.
    identity = KeyPair.generate(seeded_rng(12))
    signed = SignedPreKeyRecord.generate(3, identity, NOW_MS, seeded_rng(13))
    kyber = KyberPreKeyRecord.generate(4, identity, NOW_MS, seeded_rng(14), last_resort=True)
    bundle = PreKeyBundle(
        registration_id=55,
        device_id=1,
        pre_key_id=None,
        pre_key_public=None,
        signed_pre_key_id=signed.id,
        signed_pre_key_public=signed.key_pair.public,
        signed_pre_key_signature=signed.signature,
        identity_key=identity.public,
        kyber_pre_key_id=kyber.id,
        kyber_pre_key_public=kyber.key_pair.public,
        kyber_pre_key_signature=kyber.signature,
    )
    ours = PlaintextContent.new(
        DecryptionErrorMessage.for_original(whisper, CiphertextMessageType.WHISPER, TIMESTAMP, DEVICE_ID),
        bundle,
    )
    request = {
        "whisper": whisper.hex(),
        "prekey": prekey.hex(),
        "timestamp": TIMESTAMP,
        "device_id": DEVICE_ID,
        "ours": ours.encode().hex(),
    }
    done = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, str(modules)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout)
    for name, original, kind in (
        ("whisper", whisper, CiphertextMessageType.WHISPER),
        ("prekey", prekey, CiphertextMessageType.PREKEY),
    ):
        dem = DecryptionErrorMessage.for_original(original, kind, TIMESTAMP, DEVICE_ID)
        assert theirs[name]["dem"] == dem.encode().hex()
        assert theirs[name]["plaintext"] == PlaintextContent.new(dem).encode().hex()
        parsed = PlaintextContent.decode(bytes.fromhex(theirs[name]["plaintext"]))
        assert parsed.decryption_error.ratchet_key == ratchet_key and parsed.bundle is None
    assert theirs["read"] == {
        "timestamp": TIMESTAMP,
        "device_id": DEVICE_ID,
        "ratchet_key": ratchet_key.to_bytes().hex(),
    }
