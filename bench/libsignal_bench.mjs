// libsignal's own speed, from Node: the reference point Sotto's protocol benchmark compares with.
//
//   node bench/libsignal_bench.mjs [--n 20000] [--setups 50] [--mode one-direction|ping-pong] [--json]
//   node bench/libsignal_bench.mjs --serve   # slices on request, for bench/protocol.py (below)
//
// per message = signalEncrypt + serialize + deserialize + signalDecrypt of a 100-byte plaintext.
//   one-direction: an Alice->Bob stream, after one untimed Bob->Alice reply;
//   ping-pong:     the direction alternates every message (a DH ratchet step each time).
// setup = processPreKeyBundle + first PreKey message encrypt + decrypt, averaged over fresh
//   sessions; key and bundle generation are not timed.
// Stores are in-memory maps holding live records, the cheapest an app could have; addresses
// are ServiceId-shaped, as in production.
//
// libsignal is loaded from $LIBSIGNAL_NODE_MODULES or, by default, from node/node_modules next
// to this script, then tests/interop/node/node_modules (installed by `make node`).
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

function locatePackage() {
  const candidates = process.env.LIBSIGNAL_NODE_MODULES
    ? [process.env.LIBSIGNAL_NODE_MODULES]
    : [path.join(HERE, 'node', 'node_modules'), path.join(HERE, '..', 'tests', 'interop', 'node', 'node_modules')];
  for (const base of candidates) {
    const dir = path.join(base, '@signalapp', 'libsignal-client');
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  process.stderr.write(`libsignal bench: @signalapp/libsignal-client not found under ${candidates.join(' or ')}; run \`make node\`\n`);
  process.exit(3);
}

function parseArgs(argv) {
  const opts = { n: 20000, setups: 50, mode: 'one-direction', json: false, serve: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--n') opts.n = Number.parseInt(value(), 10);
    else if (a === '--setups') opts.setups = Number.parseInt(value(), 10);
    else if (a === '--mode') opts.mode = value();
    else if (a === '--json') opts.json = true;
    else if (a === '--serve') opts.serve = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: libsignal_bench.mjs [--n N] [--setups N] [--mode one-direction|ping-pong] [--json] | --serve\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!['one-direction', 'ping-pong'].includes(opts.mode)) throw new Error(`unknown mode ${opts.mode}`);
  if (!(opts.n > 0) || !(opts.setups > 0)) throw new Error('--n and --setups must be positive');
  return opts;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`libsignal bench: ${e.message}\n`);
  process.exit(2);
}
const PKG_DIR = locatePackage();
const PKG = JSON.parse(fs.readFileSync(path.join(PKG_DIR, 'package.json'), 'utf8'));
const L = await import(pathToFileURL(path.join(PKG_DIR, PKG.main)).href);

const key = (a) => `${a.name()}.${a.deviceId()}`;

class Sessions extends L.SessionStore {
  m = new Map();
  async saveSession(a, r) { this.m.set(key(a), r); }
  async getSession(a) { return this.m.get(key(a)) ?? null; }
  async getExistingSessions(as) { return as.map((a) => this.m.get(key(a))); }
}
class Identities extends L.IdentityKeyStore {
  known = new Map();
  constructor(kp, reg) { super(); this.kp = kp; this.reg = reg; }
  async getIdentityKey() { return this.kp.privateKey; }
  async getLocalRegistrationId() { return this.reg; }
  async saveIdentity(a, k) {
    const prev = this.known.get(key(a));
    this.known.set(key(a), k);
    return prev && !prev.equals(k) ? L.IdentityChange.ReplacedExisting : L.IdentityChange.NewOrUnchanged;
  }
  async isTrustedIdentity(a, k) { const prev = this.known.get(key(a)); return !prev || prev.equals(k); }
  async getIdentity(a) { return this.known.get(key(a)) ?? null; }
}
class PreKeys extends L.PreKeyStore {
  m = new Map();
  async savePreKey(id, r) { this.m.set(id, r); }
  async getPreKey(id) { return this.m.get(id); }
  async removePreKey(id) { this.m.delete(id); }
}
class SignedPreKeys extends L.SignedPreKeyStore {
  m = new Map();
  async saveSignedPreKey(id, r) { this.m.set(id, r); }
  async getSignedPreKey(id) { return this.m.get(id); }
}
class KyberPreKeys extends L.KyberPreKeyStore {
  m = new Map();
  async saveKyberPreKey(id, r) { this.m.set(id, r); }
  async getKyberPreKey(id) { return this.m.get(id); }
  async markKyberPreKeyUsed(id) { this.m.delete(id); }
}

function newParty() {
  const kp = L.IdentityKeyPair.generate();
  const reg = 1 + (randomBytes(2).readUInt16BE(0) % 16380);
  return {
    kp, addr: L.ProtocolAddress.new(randomUUID(), 1), sessions: new Sessions(), identity: new Identities(kp, reg),
    prekeys: new PreKeys(), signed: new SignedPreKeys(), kyber: new KyberPreKeys(),
  };
}

async function bundleOf(p) {
  const ts = Date.now();
  const otk = L.PrivateKey.generate();
  await p.prekeys.savePreKey(1, L.PreKeyRecord.new(1, otk.getPublicKey(), otk));
  const spk = L.PrivateKey.generate();
  const spkSig = p.kp.privateKey.sign(spk.getPublicKey().serialize());
  await p.signed.saveSignedPreKey(2, L.SignedPreKeyRecord.new(2, ts, spk.getPublicKey(), spk, spkSig));
  const kem = L.KEMKeyPair.generate();
  const kemSig = p.kp.privateKey.sign(kem.getPublicKey().serialize());
  await p.kyber.saveKyberPreKey(3, L.KyberPreKeyRecord.new(3, ts, kem, kemSig));
  return L.PreKeyBundle.new(await p.identity.getLocalRegistrationId(), p.addr.deviceId(), 1, otk.getPublicKey(),
    2, spk.getPublicKey(), spkSig, p.kp.publicKey, 3, kem.getPublicKey(), kemSig);
}

const now = () => process.hrtime.bigint();
const us = (ns) => Number(ns) / 1000;

async function send(from, to, pt) {
  const m = await L.signalEncrypt(pt, to.addr, from.addr, from.sessions, from.identity);
  return [m.type(), m.serialize()];
}
async function receive(to, from, type, bytes) {
  if (type === L.CiphertextMessageType.PreKey) {
    return L.signalDecryptPreKey(L.PreKeySignalMessage.deserialize(bytes), from.addr, to.addr,
      to.sessions, to.identity, to.prekeys, to.signed, to.kyber);
  }
  return L.signalDecrypt(L.SignalMessage.deserialize(bytes), from.addr, to.addr, to.sessions, to.identity);
}

// One fresh session: returns [alice, bob, setup ns, first-message size].
async function setupSession(pt) {
  const alice = newParty();
  const bob = newParty();
  const bundle = await bundleOf(bob);
  const t0 = now();
  await L.processPreKeyBundle(bundle, bob.addr, alice.addr, alice.sessions, alice.identity);
  const [type, bytes] = await send(alice, bob, pt);
  const got = await receive(bob, alice, type, bytes);
  const elapsed = now() - t0;
  if (type !== L.CiphertextMessageType.PreKey || Buffer.compare(Buffer.from(got), Buffer.from(pt)) !== 0) {
    throw new Error('setup round trip failed');
  }
  return [alice, bob, elapsed, bytes.length];
}

async function main() {
  const pt = new Uint8Array(randomBytes(100));
  let setupNs = 0n;
  let prekeySize = 0;
  for (let i = 0; i < opts.setups; i++) {
    const [, , ns, size] = await setupSession(pt);
    setupNs += ns;
    prekeySize = size;
  }

  const [alice, bob] = await setupSession(pt);
  const [rt, rb] = await send(bob, alice, pt); // untimed reply: both sides now hold a full session
  await receive(alice, bob, rt, rb);

  let encNs = 0n;
  let decNs = 0n;
  let sizeMin = Infinity;
  let sizeMax = 0;
  const t0 = now();
  for (let i = 0; i < opts.n; i++) {
    const forward = opts.mode === 'one-direction' || i % 2 === 0;
    const [from, to] = forward ? [alice, bob] : [bob, alice];
    const a = now();
    const [type, bytes] = await send(from, to, pt);
    const b = now();
    const got = await receive(to, from, type, bytes);
    decNs += now() - b;
    encNs += b - a;
    if (got.length !== pt.length) throw new Error(`message ${i} did not round-trip`);
    sizeMin = Math.min(sizeMin, bytes.length);
    sizeMax = Math.max(sizeMax, bytes.length);
  }
  const totalNs = now() - t0;

  const result = {
    per_message_us: us(totalNs) / opts.n,
    setup_us: us(setupNs) / opts.setups,
    mode: opts.mode,
    n: opts.n,
    setups: opts.setups,
    encrypt_us: us(encNs) / opts.n,
    decrypt_us: us(decNs) / opts.n,
    plaintext_bytes: pt.length,
    message_bytes_min: sizeMin,
    message_bytes_max: sizeMax,
    prekey_message_bytes: prekeySize,
    libsignal: PKG.version,
    node: process.version,
  };
  if (opts.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
  } else {
    process.stdout.write(
      `libsignal ${result.libsignal} (${result.mode}, n=${result.n}): ${result.per_message_us.toFixed(1)} µs/message ` +
      `(encrypt ${result.encrypt_us.toFixed(1)}, decrypt ${result.decrypt_us.toFixed(1)}), ` +
      `setup ${result.setup_us.toFixed(0)} µs over ${result.setups} sessions\n`);
  }
}

// --serve: one session per mode is set up (untimed), then each stdin line "<mode> <count>" runs
// that many more messages on it, or that many fresh setups for "setup <count>", and is answered
// with one line: microseconds per message (or per setup). "quit" or end of input stops. The
// protocol benchmark interleaves short slices of every side this way, so that all of them see
// the same moments of a noisy machine.
async function serve() {
  const pt = new Uint8Array(randomBytes(100));
  const streams = {};
  for (const mode of ['one-direction', 'ping-pong']) {
    const [alice, bob] = await setupSession(pt);
    const [rt, rb] = await send(bob, alice, pt);
    await receive(alice, bob, rt, rb);
    streams[mode] = { alice, bob, i: 0 };
  }
  process.stdout.write(JSON.stringify({ ready: true, libsignal: PKG.version }) + '\n');
  const readline = await import('node:readline');
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === 'quit' || cmd === undefined) break;
    const count = Number.parseInt(arg, 10);
    if (!(count > 0)) throw new Error(`bad request: ${line}`);
    let ns = 0n;
    if (cmd === 'setup') {
      for (let k = 0; k < count; k++) ns += (await setupSession(pt))[2];
    } else {
      const s = streams[cmd];
      if (s === undefined) throw new Error(`unknown mode ${cmd}`);
      const t0 = now();
      for (let k = 0; k < count; k++, s.i++) {
        const forward = cmd === 'one-direction' || s.i % 2 === 0;
        const [from, to] = forward ? [s.alice, s.bob] : [s.bob, s.alice];
        const [type, bytes] = await send(from, to, pt);
        const got = await receive(to, from, type, bytes);
        if (got.length !== pt.length) throw new Error('a message did not round-trip');
      }
      ns = now() - t0;
    }
    process.stdout.write(`${us(ns) / count}\n`);
  }
}

(opts.serve ? serve() : main()).catch((e) => {
  process.stderr.write(`libsignal bench: ${e?.stack ?? e}\n`);
  process.exit(1);
});
