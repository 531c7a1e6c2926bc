// The libsignal oracle: real @signalapp/libsignal-client parties, held in memory, driven over
// stdin/stdout so Sotto's interop tests can check every byte Sotto makes against the reference
// implementation.
//
// Protocol: one JSON request per line, {"id"?, "cmd", ...}; one JSON reply per line, in order:
//   {"id"?, "ok": true, ...fields}
//   {"id"?, "ok": false, "error": "<Name>: <message>", "code"?: <libsignal ErrorCode>, "operation"?}
// Byte strings travel as lowercase hex. Requests run one at a time, in arrival order.
// The command list with every field is in README.md next to this file.
//
// libsignal is loaded from $LIBSIGNAL_NODE_MODULES (a directory holding @signalapp/libsignal-client)
// or, by default, from ./node/node_modules next to this script (installed by `make node`).
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

function locatePackage() {
  const base = process.env.LIBSIGNAL_NODE_MODULES || path.join(HERE, 'node', 'node_modules');
  const dir = path.join(base, '@signalapp', 'libsignal-client');
  if (!fs.existsSync(path.join(dir, 'package.json'))) {
    process.stderr.write(`libsignal oracle: @signalapp/libsignal-client not found under ${base}; run \`make node\`\n`);
    process.exit(3);
  }
  return dir;
}

const PKG_DIR = locatePackage();
const PKG = JSON.parse(fs.readFileSync(path.join(PKG_DIR, 'package.json'), 'utf8'));
const L = await import(pathToFileURL(path.join(PKG_DIR, PKG.main)).href);
const SealedSenderMultiRecipientMessage = (
  await import(pathToFileURL(path.join(PKG_DIR, 'dist', 'SealedSenderMultiRecipientMessage.js')).href)
).default;

// ------------------------------------------------------------------------------------ helpers
const hex = (b) => Buffer.from(b).toString('hex');
function unhex(s, field = 'bytes') {
  if (typeof s !== 'string' || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new TypeError(`${field} must be a hex string`);
  }
  return new Uint8Array(Buffer.from(s, 'hex'));
}
const addrKey = (a) => `${a.name()}.${a.deviceId()}`;
const DAY_MS = 86_400_000;
const asDate = (ms) => (ms === undefined || ms === null ? undefined : new Date(ms));

function need(req, ...fields) {
  for (const f of fields) {
    if (req[f] === undefined || req[f] === null) throw new TypeError(`missing field ${f}`);
  }
}

// Minimal protobuf writer, only for building an UnidentifiedSenderMessageContent around
// arbitrary inner bytes (libsignal's own constructor insists on a CiphertextMessage).
function varint(n) {
  const out = [];
  let v = BigInt(n);
  while (v > 0x7fn) {
    out.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}
const pbUint = (field, v) => Buffer.concat([varint((field << 3) | 0), varint(v)]);
const pbBytes = (field, b) => Buffer.concat([varint((field << 3) | 2), varint(b.length), Buffer.from(b)]);
// UnidentifiedSenderMessage.Message.Type: the protobuf numbers differ from CiphertextMessageType
// for PreKey (1 on this wire, 3 in the API).
const USMC_PROTO_TYPE = { 3: 1, 2: 2, 7: 7, 8: 8 };

// ------------------------------------------------------------------------------------- stores
class Sessions extends L.SessionStore {
  m = new Map(); // records kept serialized, as a real app persists them
  async saveSession(a, r) { this.m.set(addrKey(a), r.serialize()); }
  async getSession(a) {
    const b = this.m.get(addrKey(a));
    return b ? L.SessionRecord.deserialize(b) : null;
  }
  async getExistingSessions(as) {
    return Promise.all(as.map(async (a) => {
      const r = await this.getSession(a);
      if (!r) throw new Error(`no session for ${addrKey(a)}`);
      return r;
    }));
  }
}

class Identities extends L.IdentityKeyStore {
  known = new Map();
  constructor(kp, reg, trustAll) { super(); this.kp = kp; this.reg = reg; this.trustAll = trustAll; }
  async getIdentityKey() { return this.kp.privateKey; }
  async getLocalRegistrationId() { return this.reg; }
  async saveIdentity(a, k) {
    const prev = this.known.get(addrKey(a));
    this.known.set(addrKey(a), k);
    return prev && !prev.equals(k) ? L.IdentityChange.ReplacedExisting : L.IdentityChange.NewOrUnchanged;
  }
  // Trust on first use, unless the party was made with trust_all.
  async isTrustedIdentity(a, k) {
    if (this.trustAll) return true;
    const prev = this.known.get(addrKey(a));
    return !prev || prev.equals(k);
  }
  async getIdentity(a) { return this.known.get(addrKey(a)) ?? null; }
}

class PreKeys extends L.PreKeyStore {
  m = new Map();
  async savePreKey(id, r) { this.m.set(id, r); }
  async getPreKey(id) {
    const r = this.m.get(id);
    if (!r) throw new Error(`no prekey ${id}`);
    return r;
  }
  async removePreKey(id) { this.m.delete(id); }
}

class SignedPreKeys extends L.SignedPreKeyStore {
  m = new Map();
  async saveSignedPreKey(id, r) { this.m.set(id, r); }
  async getSignedPreKey(id) {
    const r = this.m.get(id);
    if (!r) throw new Error(`no signed prekey ${id}`);
    return r;
  }
}

class KyberPreKeys extends L.KyberPreKeyStore {
  m = new Map();
  lastResort = new Set();
  async saveKyberPreKey(id, r) { this.m.set(id, r); }
  async getKyberPreKey(id) {
    const r = this.m.get(id);
    if (!r) throw new Error(`no kyber prekey ${id}`);
    return r;
  }
  async markKyberPreKeyUsed(id) { if (!this.lastResort.has(id)) this.m.delete(id); }
}

class SenderKeys extends L.SenderKeyStore {
  m = new Map();
  async saveSenderKey(sender, dist, r) { this.m.set(`${addrKey(sender)}/${dist}`, r.serialize()); }
  async getSenderKey(sender, dist) {
    const b = this.m.get(`${addrKey(sender)}/${dist}`);
    return b ? L.SenderKeyRecord.deserialize(b) : null;
  }
}

// ------------------------------------------------------------------------------------ parties
const parties = new Map();
let partyCounter = 0;

function P(handle) {
  const p = parties.get(handle);
  if (!p) throw new Error(`unknown party ${handle}`);
  return p;
}
function remoteOf(req) {
  need(req, 'remote_name', 'remote_device');
  return L.ProtocolAddress.new(req.remote_name, req.remote_device);
}

// Sealed-sender trust: a root key and a server certificate it signed. Made on first need.
let trust = null;
function setTrust(rootPriv, serverPriv, keyId) {
  const root = rootPriv ? L.PrivateKey.deserialize(unhex(rootPriv, 'root_priv')) : L.PrivateKey.generate();
  const serverKey = serverPriv ? L.PrivateKey.deserialize(unhex(serverPriv, 'server_priv')) : L.PrivateKey.generate();
  const serverCert = L.ServerCertificate.new(keyId ?? 1, serverKey.getPublicKey(), root);
  trust = { root, serverKey, serverCert };
  return trustView();
}
function currentTrust() {
  if (!trust) setTrust();
  return trust;
}
function trustView() {
  const t = currentTrust();
  return {
    trust_root_pub: hex(t.root.getPublicKey().serialize()),
    trust_root_priv: hex(t.root.serialize()),
    server_pub: hex(t.serverKey.getPublicKey().serialize()),
    server_priv: hex(t.serverKey.serialize()),
    server_key_id: t.serverCert.keyId(),
    server_cert: hex(t.serverCert.serialize()),
  };
}
function senderCertFor(uuid, device, identityPub, expiresMs) {
  const t = currentTrust();
  return L.SenderCertificate.new(uuid, null, device, identityPub, expiresMs ?? Date.now() + DAY_MS,
    t.serverCert, t.serverKey);
}
function ownCert(p, expiresMs) {
  return senderCertFor(p.addr.name(), p.addr.deviceId(), p.kp.publicKey, expiresMs);
}
function certView(cert) {
  return {
    sender_uuid: cert.senderUuid(),
    sender_device: cert.senderDeviceId(),
    sender_identity_pub: hex(cert.key().serialize()),
    expiration_ms: cert.expiration(),
    server_key_id: cert.serverCertificate().keyId(),
  };
}
function normalizeServiceId(name) {
  return L.ServiceId.parseFromServiceIdString(name).getServiceIdString();
}

async function decryptOne(p, remote, type, bytes) {
  if (type === L.CiphertextMessageType.PreKey) {
    return L.signalDecryptPreKey(L.PreKeySignalMessage.deserialize(unhex(bytes)), remote, p.addr,
      p.sessions, p.identity, p.prekeys, p.signed, p.kyber);
  }
  if (type === L.CiphertextMessageType.Whisper) {
    return L.signalDecrypt(L.SignalMessage.deserialize(unhex(bytes)), remote, p.addr, p.sessions, p.identity);
  }
  throw new TypeError(`decrypt handles message types 2 and 3, not ${type}`);
}

function errorReply(e) {
  const name = e?.name ?? e?.constructor?.name ?? 'Error';
  const reply = { ok: false, error: `${name}: ${e?.message ?? String(e)}` };
  if (e instanceof L.LibSignalErrorBase) {
    reply.code = e.code;
    if (e.operation) reply.operation = e.operation;
  }
  return reply;
}

// ----------------------------------------------------------------------------------- commands
const handlers = {
  async hello() {
    return { version: PKG.version, node: process.version, commands: Object.keys(handlers).sort() };
  },

  // -- parties and bundles
  async new_party({ party, name, device, reg_id, identity_priv, trust_all }) {
    const handle = party ?? `party-${++partyCounter}`;
    if (parties.has(handle)) throw new Error(`party ${handle} exists`);
    const kp = identity_priv
      ? (() => { const k = L.PrivateKey.deserialize(unhex(identity_priv, 'identity_priv')); return new L.IdentityKeyPair(k.getPublicKey(), k); })()
      : L.IdentityKeyPair.generate();
    const reg = reg_id ?? 1 + (randomBytes(2).readUInt16BE(0) % 16380);
    const addr = L.ProtocolAddress.new(name ?? randomUUID(), device ?? 1);
    parties.set(handle, {
      kp, addr, reg,
      sessions: new Sessions(), identity: new Identities(kp, reg, Boolean(trust_all)),
      prekeys: new PreKeys(), signed: new SignedPreKeys(), kyber: new KyberPreKeys(), senderKeys: new SenderKeys(),
      nextIds: { pre: 1001, signed: 2001, kyber: 3001 },
    });
    return { party: handle, name: addr.name(), device: addr.deviceId(), reg_id: reg, identity_pub: hex(kp.publicKey.serialize()) };
  },

  async drop_party({ party }) {
    need({ party }, 'party');
    return { dropped: parties.delete(party) };
  },

  async make_bundle({ party, with_one_time = true, kyber_last_resort = false, now_ms }) {
    const p = P(party);
    const ts = now_ms ?? Date.now();
    const out = {
      registration_id: p.reg, device_id: p.addr.deviceId(), identity_pub: hex(p.kp.publicKey.serialize()),
      pre_key_id: null, pre_key_pub: null,
    };
    if (with_one_time) {
      const id = p.nextIds.pre++;
      const k = L.PrivateKey.generate();
      await p.prekeys.savePreKey(id, L.PreKeyRecord.new(id, k.getPublicKey(), k));
      out.pre_key_id = id;
      out.pre_key_pub = hex(k.getPublicKey().serialize());
    }
    const spkId = p.nextIds.signed++;
    const spk = L.PrivateKey.generate();
    const spkSig = p.kp.privateKey.sign(spk.getPublicKey().serialize());
    await p.signed.saveSignedPreKey(spkId, L.SignedPreKeyRecord.new(spkId, ts, spk.getPublicKey(), spk, spkSig));
    const kyberId = p.nextIds.kyber++;
    const kem = L.KEMKeyPair.generate();
    const kemSig = p.kp.privateKey.sign(kem.getPublicKey().serialize());
    await p.kyber.saveKyberPreKey(kyberId, L.KyberPreKeyRecord.new(kyberId, ts, kem, kemSig));
    if (kyber_last_resort) p.kyber.lastResort.add(kyberId);
    return Object.assign(out, {
      signed_pre_key_id: spkId, signed_pre_key_pub: hex(spk.getPublicKey().serialize()), signed_pre_key_sig: hex(spkSig),
      kyber_pre_key_id: kyberId, kyber_pre_key_pub: hex(kem.getPublicKey().serialize()), kyber_pre_key_sig: hex(kemSig),
      kyber_last_resort: Boolean(kyber_last_resort),
    });
  },

  async process_bundle(r) {
    const p = P(r.party);
    need(r, 'registration_id', 'device_id', 'signed_pre_key_id', 'signed_pre_key_pub', 'signed_pre_key_sig',
      'identity_pub', 'kyber_pre_key_id', 'kyber_pre_key_pub', 'kyber_pre_key_sig');
    const hasOneTime = r.pre_key_id !== undefined && r.pre_key_id !== null;
    const bundle = L.PreKeyBundle.new(
      r.registration_id, r.device_id,
      hasOneTime ? r.pre_key_id : null,
      hasOneTime ? L.PublicKey.deserialize(unhex(r.pre_key_pub, 'pre_key_pub')) : null,
      r.signed_pre_key_id, L.PublicKey.deserialize(unhex(r.signed_pre_key_pub, 'signed_pre_key_pub')),
      unhex(r.signed_pre_key_sig, 'signed_pre_key_sig'),
      L.PublicKey.deserialize(unhex(r.identity_pub, 'identity_pub')),
      r.kyber_pre_key_id, L.KEMPublicKey.deserialize(unhex(r.kyber_pre_key_pub, 'kyber_pre_key_pub')),
      unhex(r.kyber_pre_key_sig, 'kyber_pre_key_sig'));
    await L.processPreKeyBundle(bundle, remoteOf(r), p.addr, p.sessions, p.identity, asDate(r.now_ms));
    return {};
  },

  // -- 1:1 sessions
  async encrypt(r) {
    const p = P(r.party);
    need(r, 'pt');
    const m = await L.signalEncrypt(unhex(r.pt, 'pt'), remoteOf(r), p.addr, p.sessions, p.identity, asDate(r.now_ms));
    return { type: m.type(), bytes: hex(m.serialize()) };
  },

  async decrypt(r) {
    const p = P(r.party);
    need(r, 'type', 'bytes');
    return { pt: hex(await decryptOne(p, remoteOf(r), r.type, r.bytes)) };
  },

  async encrypt_many(r) {
    const p = P(r.party);
    need(r, 'pts');
    const remote = remoteOf(r);
    const messages = [];
    for (const pt of r.pts) {
      const m = await L.signalEncrypt(unhex(pt, 'pts[]'), remote, p.addr, p.sessions, p.identity, asDate(r.now_ms));
      messages.push({ type: m.type(), bytes: hex(m.serialize()) });
    }
    return { messages };
  },

  // Stops at the first failure (reported with its "index") unless keep_going is set, in which
  // case every message gets a result: {ok: true, pt} or {ok: false, error, code?}.
  async decrypt_many(r) {
    const p = P(r.party);
    need(r, 'messages');
    const remote = remoteOf(r);
    if (r.keep_going) {
      const results = [];
      for (const m of r.messages) {
        try {
          results.push({ ok: true, pt: hex(await decryptOne(p, remote, m.type, m.bytes)) });
        } catch (e) {
          results.push(errorReply(e));
        }
      }
      return { results };
    }
    const pts = [];
    for (const [i, m] of r.messages.entries()) {
      try {
        pts.push(hex(await decryptOne(p, remote, m.type, m.bytes)));
      } catch (e) {
        e.message = `message ${i}: ${e.message}`;
        e.index = i;
        throw e;
      }
    }
    return { pts };
  },

  async inspect({ type, bytes }) {
    need({ type, bytes }, 'type', 'bytes');
    const b = unhex(bytes);
    switch (type) {
      case L.CiphertextMessageType.PreKey: {
        const m = L.PreKeySignalMessage.deserialize(b);
        return { version: m.version(), registration_id: m.registrationId(), pre_key_id: m.preKeyId(), signed_pre_key_id: m.signedPreKeyId() };
      }
      case L.CiphertextMessageType.Whisper: {
        const m = L.SignalMessage.deserialize(b);
        return { version: m.messageVersion(), counter: m.counter(), body_len: m.body().length, pq_ratchet: hex(m.pqRatchet()) };
      }
      case L.CiphertextMessageType.SenderKey: {
        const m = L.SenderKeyMessage.deserialize(b);
        return { distribution_id: m.distributionId(), chain_id: m.chainId(), iteration: m.iteration(), ciphertext_len: m.ciphertext().length };
      }
      case L.CiphertextMessageType.Plaintext: {
        const m = L.PlaintextContent.deserialize(b);
        return { body: hex(m.body()) };
      }
      case 'skdm': {
        const m = L.SenderKeyDistributionMessage.deserialize(b);
        return { distribution_id: m.distributionId(), chain_id: m.chainId(), iteration: m.iteration(), chain_key: hex(m.chainKey()) };
      }
      case 'sender_cert': {
        const c = L.SenderCertificate.deserialize(b);
        return certView(c);
      }
      default:
        throw new TypeError(`inspect: unknown type ${type}`);
    }
  },

  async session_usable(r) {
    const p = P(r.party);
    const rec = await p.sessions.getSession(remoteOf(r));
    if (!rec) return { usable: false, exists: false, record_bytes: 0 };
    return {
      usable: rec.hasCurrentState(asDate(r.now_ms)), exists: true, record_bytes: rec.serialize().length,
      remote_registration_id: rec.hasCurrentState() ? rec.remoteRegistrationId() : null,
    };
  },

  async archive_session(r) {
    const p = P(r.party);
    const remote = remoteOf(r);
    const rec = await p.sessions.getSession(remote);
    if (!rec) return { archived: false };
    rec.archiveCurrentState();
    await p.sessions.saveSession(remote, rec);
    return { archived: true };
  },

  // The identity key this party has saved for a peer (null if none), and the prekey ids it still holds.
  async get_identity(r) {
    const p = P(r.party);
    const k = await p.identity.getIdentity(remoteOf(r));
    return { identity_pub: k ? hex(k.serialize()) : null };
  },

  async prekeys_held({ party }) {
    const p = P(party);
    const ids = (m) => [...m.keys()].sort((a, b) => a - b);
    return { pre_key_ids: ids(p.prekeys.m), signed_pre_key_ids: ids(p.signed.m), kyber_pre_key_ids: ids(p.kyber.m) };
  },

  // -- XEdDSA, directly
  async sign({ priv, msg }) {
    need({ priv, msg }, 'priv', 'msg');
    return { sig: hex(L.PrivateKey.deserialize(unhex(priv, 'priv')).sign(unhex(msg, 'msg'))) };
  },
  async verify({ pub, msg, sig }) {
    need({ pub, msg, sig }, 'pub', 'msg', 'sig');
    return { valid: L.PublicKey.deserialize(unhex(pub, 'pub')).verify(unhex(msg, 'msg'), unhex(sig, 'sig')) };
  },

  // -- sealed sender: trust and certificates
  async trust() { return trustView(); },
  async trust_set({ root_priv, server_priv, key_id }) { return setTrust(root_priv, server_priv, key_id); },

  async sender_cert({ uuid, device, identity_pub, expires_ms }) {
    need({ uuid, device, identity_pub }, 'uuid', 'device', 'identity_pub');
    const cert = senderCertFor(uuid, device, L.PublicKey.deserialize(unhex(identity_pub, 'identity_pub')), expires_ms);
    return { cert: hex(cert.serialize()) };
  },

  // Parses a sender certificate and validates it against the current trust root (or the one given).
  async sender_cert_validate({ cert, now_ms, trust_root_pub }) {
    need({ cert }, 'cert');
    const c = L.SenderCertificate.deserialize(unhex(cert, 'cert'));
    const root = trust_root_pub ? L.PublicKey.deserialize(unhex(trust_root_pub, 'trust_root_pub')) : currentTrust().root.getPublicKey();
    return { valid: c.validate(root, now_ms ?? Date.now()), ...certView(c) };
  },

  // -- sealed sender v1
  async sealed_v1_send(r) {
    const p = P(r.party);
    need(r, 'pt');
    const out = await L.sealedSenderEncryptMessage(unhex(r.pt, 'pt'), remoteOf(r), ownCert(p, r.expires_ms), p.sessions, p.identity);
    return { bytes: hex(out) };
  },

  async sealed_v1_recv({ party, bytes, now_ms }) {
    const p = P(party);
    need({ bytes }, 'bytes');
    const b = unhex(bytes);
    const usmc = await L.sealedSenderDecryptToUsmc(b, p.identity);
    const res = await L.sealedSenderDecryptMessage(b, currentTrust().root.getPublicKey(), now_ms ?? Date.now(), null,
      p.addr.name(), p.addr.deviceId(), p.sessions, p.identity, p.prekeys, p.signed, p.kyber);
    return { pt: hex(res.message()), sender_uuid: res.senderUuid(), sender_device: res.deviceId(), msg_type: usmc.msgType() };
  },

  // Opens the outer layer(s) of a sealed message (v1, or a v2 received form) without touching
  // sessions; the inner content is returned as is. cert_valid checks the certificate chain.
  async sealed_decrypt_to_usmc({ party, bytes, now_ms }) {
    const p = P(party);
    need({ bytes }, 'bytes');
    const usmc = await L.sealedSenderDecryptToUsmc(unhex(bytes), p.identity);
    const cert = usmc.senderCertificate();
    const groupId = usmc.groupId();
    return {
      msg_type: usmc.msgType(), content: hex(usmc.contents()), content_hint: usmc.contentHint(),
      group_id: groupId ? hex(groupId) : null, ...certView(cert),
      sender_cert: hex(cert.serialize()),
      cert_valid: cert.validate(currentTrust().root.getPublicKey(), now_ms ?? Date.now()),
    };
  },

  // -- sealed sender v2 (multi-recipient)
  // Content: with distribution_id, a SenderKeyMessage of pt (the SKDM made just before is
  // returned as "skdm"); otherwise pt itself, labelled msg_type (default 7, SenderKey).
  async sealed_v2_send(req) {
    // "group": {distribution_id, group_id?} is accepted as a spelling of the flat fields.
    const r = req.group ? { ...req, ...req.group } : req;
    const p = P(r.party);
    need(r, 'recipients', 'pt');
    const groupId = r.group_id ? unhex(r.group_id, 'group_id') : null;
    const hint = r.content_hint ?? L.ContentHint.Implicit;
    const out = {};
    let usmc;
    if (r.distribution_id) {
      const skdm = await L.SenderKeyDistributionMessage.create(p.addr, r.distribution_id, p.senderKeys);
      const msg = await L.groupEncrypt(p.addr, r.distribution_id, p.senderKeys, unhex(r.pt, 'pt'));
      out.skdm = hex(skdm.serialize());
      out.skm = hex(msg.serialize());
      usmc = L.UnidentifiedSenderMessageContent.new(msg, ownCert(p, r.expires_ms), hint, groupId);
    } else {
      const msgType = r.msg_type ?? L.CiphertextMessageType.SenderKey;
      if (!(msgType in USMC_PROTO_TYPE)) throw new TypeError(`msg_type ${msgType} not allowed`);
      const parts = [pbUint(1, USMC_PROTO_TYPE[msgType]), pbBytes(2, ownCert(p, r.expires_ms).serialize()),
        pbBytes(3, unhex(r.pt, 'pt'))];
      if (hint) parts.push(pbUint(4, hint));
      if (groupId) parts.push(pbBytes(5, groupId));
      usmc = L.UnidentifiedSenderMessageContent.deserialize(new Uint8Array(Buffer.concat(parts)));
    }
    const recipients = r.recipients.map(([n, d]) => L.ProtocolAddress.new(n, d));
    const excludedRecipients = (r.excluded ?? []).map((s) => L.ServiceId.parseFromServiceIdString(s));
    const sent = await L.sealedSenderMultiRecipientEncrypt({
      content: usmc, recipients, excludedRecipients, identityStore: p.identity, sessionStore: p.sessions,
    });
    const parsed = new SealedSenderMultiRecipientMessage(sent);
    const byId = parsed.recipientsByServiceIdString();
    out.sent = hex(sent);
    out.received = {};
    for (const [n] of r.recipients) out.received[n] = hex(parsed.messageForRecipient(byId[normalizeServiceId(n)]));
    return out;
  },

  // libsignal's server-side parse of a sent form: what each recipient would be delivered.
  async sealed_v2_split({ sent }) {
    need({ sent }, 'sent');
    const parsed = new SealedSenderMultiRecipientMessage(unhex(sent, 'sent'));
    const byId = parsed.recipientsByServiceIdString();
    const received = {};
    const recipients = {};
    for (const [sid, rec] of Object.entries(byId)) {
      received[sid] = hex(parsed.messageForRecipient(rec));
      recipients[sid] = { device_ids: rec.deviceIds, registration_ids: rec.registrationIds };
    }
    return { received, recipients, excluded: [...parsed.excludedRecipientServiceIdStrings()] };
  },

  // -- sender keys (groups)
  async group_create_skdm({ party, distribution_id }) {
    const p = P(party);
    need({ distribution_id }, 'distribution_id');
    const skdm = await L.SenderKeyDistributionMessage.create(p.addr, distribution_id, p.senderKeys);
    return { skdm: hex(skdm.serialize()) };
  },

  async group_send({ party, distribution_id, pt, sealed_v2_to, group_id, expires_ms }) {
    const p = P(party);
    need({ distribution_id, pt }, 'distribution_id', 'pt');
    const skdm = await L.SenderKeyDistributionMessage.create(p.addr, distribution_id, p.senderKeys);
    const msg = await L.groupEncrypt(p.addr, distribution_id, p.senderKeys, unhex(pt, 'pt'));
    const out = { skdm: hex(skdm.serialize()), skm: hex(msg.serialize()), sealed_v2: {} };
    if (sealed_v2_to?.length) {
      const gid = group_id ? unhex(group_id, 'group_id') : null;
      const usmc = L.UnidentifiedSenderMessageContent.new(msg, ownCert(p, expires_ms), L.ContentHint.Implicit, gid);
      const recipients = sealed_v2_to.map(([n, d]) => L.ProtocolAddress.new(n, d));
      const sent = await L.sealedSenderMultiRecipientEncrypt(usmc, recipients, p.identity, p.sessions);
      const parsed = new SealedSenderMultiRecipientMessage(sent);
      const byId = parsed.recipientsByServiceIdString();
      out.sent_v2 = hex(sent);
      for (const [n] of sealed_v2_to) out.sealed_v2[n] = hex(parsed.messageForRecipient(byId[normalizeServiceId(n)]));
    }
    return out;
  },

  async group_recv({ party, sender_name, sender_device, skdm, skm }) {
    const p = P(party);
    need({ sender_name, sender_device }, 'sender_name', 'sender_device');
    const sender = L.ProtocolAddress.new(sender_name, sender_device);
    if (skdm) {
      await L.processSenderKeyDistributionMessage(sender, L.SenderKeyDistributionMessage.deserialize(unhex(skdm, 'skdm')), p.senderKeys);
    }
    if (!skm) return {};
    return { pt: hex(await L.groupDecrypt(sender, p.senderKeys, unhex(skm, 'skm'))) };
  },

  // -- safety numbers
  async fingerprint({ version, iterations, local_id, local_key, remote_id, remote_key }) {
    need({ version, iterations, local_id, local_key, remote_id, remote_key },
      'version', 'iterations', 'local_id', 'local_key', 'remote_id', 'remote_key');
    const fp = L.Fingerprint.new(iterations, version,
      unhex(local_id, 'local_id'), L.PublicKey.deserialize(unhex(local_key, 'local_key')),
      unhex(remote_id, 'remote_id'), L.PublicKey.deserialize(unhex(remote_key, 'remote_key')));
    return { displayable: fp.displayableFingerprint().toString(), scannable: hex(fp.scannableFingerprint().toBuffer()) };
  },

  async fingerprint_compare({ scannable_a, scannable_b }) {
    need({ scannable_a, scannable_b }, 'scannable_a', 'scannable_b');
    const a = L.ScannableFingerprint._fromBuffer(unhex(scannable_a, 'scannable_a'));
    const b = L.ScannableFingerprint._fromBuffer(unhex(scannable_b, 'scannable_b'));
    return { match: a.compare(b) };
  },
};

// ---------------------------------------------------------------------------------- main loop
async function handle(line) {
  let id;
  try {
    const req = JSON.parse(line);
    id = req.id;
    const h = Object.hasOwn(handlers, req.cmd) ? handlers[req.cmd] : null;
    if (!h) throw new TypeError(`unknown cmd ${req.cmd}`);
    const reply = { ok: true, ...(await h(req)) };
    return id === undefined ? reply : { id, ...reply };
  } catch (e) {
    const reply = errorReply(e);
    if (e && typeof e.index === 'number') reply.index = e.index;
    return id === undefined ? reply : { id, ...reply };
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  process.stdout.write(JSON.stringify(await handle(line)) + '\n');
}
