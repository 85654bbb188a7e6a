// Where the page's SFrame keys come from (docs/e2ee.md "Keys"): the JavaScript twin of
// signalling/e2ee/keys.py and announce.py, message for message, so that browsers and Python clients
// share a room. WalletKeys: X25519 keys announced with the wallet's EIP-191 signature, SFrame keys
// wrapped for each verified recipient, a new key when anyone leaves; PassphraseKeys: every sender's
// key derived from one passphrase (not identity-bound). Both sans-IO: messages in, { topic, text, to }
// out, the clock passed in. Checked against the Python ones in tests/unit/signalling/e2ee.
import { Keyring, SendKey } from './sframe.js';
import { recoverAddress } from './secp256k1.js';

const subtle = globalThis.crypto.subtle;
const encoder = new TextEncoder();

export const ANNOUNCE_TOPIC = 'e2ee/announce';
export const KEY_TOPIC = 'e2ee/key';
export const PBKDF2_ITERATIONS = 200000;
export const ANNOUNCEMENT_LIFETIME_S = 12 * 3600;
export const MAX_LIFETIME_S = 24 * 3600;
export const REKEY_EVERY_S = 600;
export const SWITCH_AFTER_S = 1;
const HEADER = 'Basement end-to-end encryption key';
const ANNOUNCEMENT = new RegExp(`^${HEADER}\\nRoom: ([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\\n`
  + 'Participant: ([A-Za-z0-9_-]{1,64})\\nKey: ([0-9a-f]{64})\\nExpires: ([0-9]{1,12})$');

export class AnnouncementError extends Error {}

const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const fromHex = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
const b64 = (b) => btoa(String.fromCharCode(...b));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

function bigEndian8(value) {
  const out = new Uint8Array(8);
  let v = BigInt(value);
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

// 24 bits of SHA-256 of a participant id: the high part of each of its KIDs
export async function senderPrefix(participantId) {
  const d = new Uint8Array(await subtle.digest('SHA-256', encoder.encode(participantId)));
  return (BigInt(d[0]) << 16n) | (BigInt(d[1]) << 8n) | BigInt(d[2]);
}

export async function kidOf(participantId, epoch = 0) {
  return ((await senderPrefix(participantId)) << 8n) | BigInt(epoch & 0xff);
}

// --- announcements ------------------------------------------------------------------------------
export function announcementText({ room, participant, publicKey, expiresAt }) {
  return `${HEADER}\nRoom: ${room}\nParticipant: ${participant}\nKey: ${hex(publicKey)}\nExpires: ${expiresAt}`;
}

export function parseAnnouncement(text) {
  if (typeof text !== 'string' || text.length > 1024) throw new AnnouncementError('an announcement is a text of at most 1 KiB');
  const m = ANNOUNCEMENT.exec(text);
  if (!m) throw new AnnouncementError('not a key announcement (header, Room, Participant, Key, Expires lines)');
  return { room: m[1], participant: m[2], publicKey: fromHex(m[3]), expiresAt: Number(m[4]) };
}

// The announcement `participant` sent in `room`, if the wallet `identity` signed it (the same
// checks, in the same order and with the same words, as signalling/e2ee/announce.py)
export function verifyAnnouncement(text, signature, room, participant, identity, now) {
  const a = parseAnnouncement(text);
  if (a.room !== room) throw new AnnouncementError(`the announcement is for room '${a.room}', not this one`);
  if (a.participant !== participant) {
    throw new AnnouncementError('the announcement names another participant than the one who sent it');
  }
  if (!(now < a.expiresAt && a.expiresAt <= now + MAX_LIFETIME_S)) {
    throw new AnnouncementError(a.expiresAt <= now ? 'the announcement has expired'
      : "the announcement's expiry is too far ahead");
  }
  if (!identity.startsWith('0x')) {
    throw new AnnouncementError(`${identity} has no wallet: its keys cannot be bound to an identity`);
  }
  let signer;
  try {
    signer = recoverAddress(text, signature);
  } catch {
    throw new AnnouncementError("the announcement's signature is not a valid EIP-191 signature");
  }
  if (signer.toLowerCase() !== identity.toLowerCase()) {
    throw new AnnouncementError(`the announcement is signed by ${signer}, not by the participant's wallet ${identity}`);
  }
  return { ...a, address: signer };
}

// --- wrapped keys -------------------------------------------------------------------------------
async function kek(privateKey, theirPublic, room, sender, recipient) {
  const pub = await subtle.importKey('raw', theirPublic, { name: 'X25519' }, false, []);
  const shared = await subtle.deriveBits({ name: 'X25519', public: pub }, privateKey, 256);
  const ikm = await subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey']);
  const info = encoder.encode(`basement e2ee wrap v1\n${room}\n${sender}\n${recipient}`);
  return subtle.deriveKey({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info }, ikm,
    { name: 'AES-GCM', length: 128 }, false, ['encrypt', 'decrypt']);
}

export async function wrapKey(privateKey, theirPublic, room, sender, recipient, kid, baseKey) {
  const nonce = globalThis.crypto.getRandomValues(new Uint8Array(12));
  const key = await kek(privateKey, theirPublic, room, sender, recipient);
  const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: bigEndian8(kid) }, key,
    baseKey));
  return new Uint8Array([...nonce, ...ct]);
}

export async function unwrapKey(privateKey, theirPublic, room, sender, recipient, kid, wrapped) {
  if (wrapped.length < 44 || wrapped.length > 92) throw new AnnouncementError('a wrapped key is 44 to 92 bytes');
  const key = await kek(privateKey, theirPublic, room, sender, recipient);
  try {
    return new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: wrapped.slice(0, 12),
      additionalData: bigEndian8(kid) }, key, wrapped.slice(12)));
  } catch {
    throw new AnnouncementError("the wrapped key does not open with the sender's announced key");
  }
}

// --- providers ----------------------------------------------------------------------------------
export class PassphraseKeys {
  constructor(passphrase) {
    if (passphrase.length < 8) throw new Error('a passphrase has at least 8 characters');
    this.identityBound = false;
    this.passphrase = passphrase;
    this.keyring = new Keyring();
  }

  async start(room, participantId) {
    const material = await subtle.importKey('raw', encoder.encode(this.passphrase), 'PBKDF2', false, ['deriveBits']);
    const salt = encoder.encode(`basement e2ee passphrase v1 ${room}`);
    const secret = await subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations: PBKDF2_ITERATIONS },
      material, 256);
    // HKDF-Expand alone (the secret is the PRK): one HMAC block is enough for 16 bytes
    this.prk = await subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    this.send = await SendKey.create(await kidOf(participantId), await this.baseKey(participantId));
    return [];
  }

  async baseKey(participantId) {
    const info = encoder.encode(`basement e2ee sender ${participantId}`);
    const block = await subtle.sign('HMAC', this.prk, new Uint8Array([...info, 1]));
    return new Uint8Array(block).slice(0, 16);
  }

  sendKey() {
    return this.send;
  }

  async senderSeen(participantId) {
    const kid = await kidOf(participantId);
    if (!this.keyring.keys.has(String(kid))) await this.keyring.add(kid, await this.baseKey(participantId));
  }

  async onMessage() {
    return [];
  }

  async onLeft() {
    return [];
  }

  async tick() {
    return [];
  }
}

// `sign(text)`: the wallet's personal_sign of text (hex). `verified`: participant id -> the address
// its announcement was signed by; `refused`: [participant id, why] of what was refused.
export class WalletKeys {
  constructor(sign, { rekeyEveryS = REKEY_EVERY_S, switchAfterS = SWITCH_AFTER_S } = {}) {
    this.identityBound = true;
    this.sign = sign;
    this.rekeyEveryS = rekeyEveryS;
    this.switchAfterS = switchAfterS;
    this.keyring = new Keyring();
    this.verified = new Map();
    this.refused = [];
    this.peers = new Map();
    this.epoch = 0;
    this.pending = null;
  }

  async start(room, participantId, now) {
    this.room = room;
    this.me = participantId;
    this.pair = await subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
    const publicKey = new Uint8Array(await subtle.exportKey('raw', this.pair.publicKey));
    const text = announcementText({ room, participant: participantId, publicKey,
      expiresAt: Math.floor(now) + ANNOUNCEMENT_LIFETIME_S });
    this.announcement = { v: 1, text, signature: await this.sign(text) };
    this.base = globalThis.crypto.getRandomValues(new Uint8Array(16));
    this.send = await SendKey.create(await kidOf(participantId, 0), this.base);
    this.keyedAt = now;
    return [{ topic: ANNOUNCE_TOPIC, text: JSON.stringify(this.announcement), to: null }];
  }

  sendKey() {
    return this.send;
  }

  async senderSeen() {}

  async keyMessage(recipients, kid, base) {
    const keys = {};
    for (const pid of recipients) {
      const peer = this.peers.get(pid);
      keys[pid] = b64(await wrapKey(this.pair.privateKey, peer.publicKey, this.room, this.me, pid, kid, base));
    }
    return { topic: KEY_TOPIC, text: JSON.stringify({ v: 1, kid: Number(kid), keys }),
      to: recipients.length === 1 ? recipients : null };
  }

  async rekey(now) {
    this.epoch += 1;
    const base = globalThis.crypto.getRandomValues(new Uint8Array(16));
    const key = await SendKey.create(await kidOf(this.me, this.epoch), base);
    this.pending = { key, base, at: now + this.switchAfterS };
    this.keyedAt = now;
    return this.peers.size ? [await this.keyMessage([...this.peers.keys()], key.kid, base)] : [];
  }

  async onLeft(participantId, now) {
    this.peers.delete(participantId);
    this.verified.delete(participantId);
    const prefix = await senderPrefix(participantId);
    for (const kid of [...this.keyring.keys.keys()]) if (BigInt(kid) >> 8n === prefix) this.keyring.remove(kid);
    return this.send ? this.rekey(now) : [];
  }

  async tick(now) {
    if (this.pending && now >= this.pending.at) {
      this.send = this.pending.key;
      this.base = this.pending.base;
      this.pending = null;
    }
    if (this.send && !this.pending && now - this.keyedAt >= this.rekeyEveryS) return this.rekey(now);
    return [];
  }

  async onMessage(msg, now) {
    const sender = String(msg.from || '');
    try {
      let body;
      try {
        body = JSON.parse(msg.data || '');
      } catch {
        throw new AnnouncementError('an e2ee message is a JSON object with v: 1');
      }
      if (!body || typeof body !== 'object' || Array.isArray(body) || body.v !== 1) {
        throw new AnnouncementError('an e2ee message is a JSON object with v: 1');
      }
      if (msg.topic === ANNOUNCE_TOPIC) return await this.announced(sender, String(msg.identity || ''), body, now);
      if (msg.topic === KEY_TOPIC) await this.keyed(sender, body);
    } catch (e) {
      this.refused.push([sender, e instanceof AnnouncementError ? e.message : `${e.name}: ${e.message}`]);
    }
    return [];
  }

  async announced(sender, identity, body, now) {
    const a = verifyAnnouncement(body.text, body.signature, this.room, sender, identity, now);
    const known = this.peers.get(sender);
    this.peers.set(sender, a);
    this.verified.set(sender, a.address);
    const out = [];
    if (!body.reply && this.announcement) {
      out.push({ topic: ANNOUNCE_TOPIC, text: JSON.stringify({ ...this.announcement, reply: true }), to: [sender] });
    }
    if (!known || hex(known.publicKey) !== hex(a.publicKey)) {
      out.push(await this.keyMessage([sender], this.send.kid, this.base));
      if (this.pending) out.push(await this.keyMessage([sender], this.pending.key.kid, this.pending.base));
    }
    return out;
  }

  async keyed(sender, body) {
    const peer = this.peers.get(sender);
    if (!peer) throw new AnnouncementError('a key from a participant whose announcement was not verified');
    if (!Number.isSafeInteger(body.kid) || BigInt(body.kid) >> 8n !== await senderPrefix(sender)) {
      throw new AnnouncementError("a key under a KID that is not the sender's");
    }
    const wrapped = body.keys && typeof body.keys === 'object' ? body.keys[this.me] : undefined;
    if (typeof wrapped !== 'string') return; // (a rekey for the others)
    const base = await unwrapKey(this.pair.privateKey, peer.publicKey, this.room, sender, this.me, BigInt(body.kid),
      unb64(wrapped));
    await this.keyring.add(BigInt(body.kid), base);
  }
}
