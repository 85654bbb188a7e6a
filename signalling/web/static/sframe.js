// SFrame (RFC 9605) on WebCrypto: encrypts one encoded media frame under a key the SFU never holds.
// The same construction as signalling/e2ee/sframe.py, checked against the same RFC test vectors
// (tests/unit/signalling/e2ee). Runs in a page and in the worker of an RTCRtpScriptTransform.
//
// A ciphertext is the SFrame header (KID, CTR), the frame encrypted, and a tag. The header and the
// caller's `metadata` (the frame bytes the SFU still reads, e.g. a VP8 payload header) are
// authenticated, not encrypted. KID and CTR are BigInts (up to 2^64 - 1).

const subtle = globalThis.crypto.subtle;
const NONCE_BYTES = 12;
const MAX_VALUE = (1n << 64n) - 1n;

export class SFrameError extends Error {}

// RFC 9605 §4.5: CTR suites are AES-CTR + a truncated HMAC (§4.5.1)
export const SUITES = {
  1: { id: 1, name: 'AES_128_CTR_HMAC_SHA256_80', hash: 'SHA-256', keyBytes: 48, tagBytes: 10, ctr: true },
  2: { id: 2, name: 'AES_128_CTR_HMAC_SHA256_64', hash: 'SHA-256', keyBytes: 48, tagBytes: 8, ctr: true },
  3: { id: 3, name: 'AES_128_CTR_HMAC_SHA256_32', hash: 'SHA-256', keyBytes: 48, tagBytes: 4, ctr: true },
  4: { id: 4, name: 'AES_128_GCM_SHA256_128', hash: 'SHA-256', keyBytes: 16, tagBytes: 16, ctr: false },
  5: { id: 5, name: 'AES_256_GCM_SHA512_128', hash: 'SHA-512', keyBytes: 32, tagBytes: 16, ctr: false },
};
export const DEFAULT_SUITE = SUITES[4];
const CIPHER_KEY_BYTES = 16; // Nka of the CTR suites

function bigEndian(value, n) {
  const out = new Uint8Array(n);
  let v = BigInt(value);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function minimalBytes(value) {
  let n = 1;
  while (value >> BigInt(8 * n) > 0n) n++;
  return bigEndian(value, n);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// --- the header (§4.3) ------------------------------------------------------------------------------
export function encodeHeader(kid, ctr) {
  kid = BigInt(kid);
  ctr = BigInt(ctr);
  if (kid < 0n || kid > MAX_VALUE || ctr < 0n || ctr > MAX_VALUE) {
    throw new SFrameError('KID and CTR are integers from 0 to 2^64 - 1');
  }
  let config = 0;
  const tail = [];
  if (kid < 8n) {
    config |= Number(kid) << 4;
  } else {
    const k = minimalBytes(kid);
    config |= 0x80 | ((k.length - 1) << 4);
    tail.push(k);
  }
  if (ctr < 8n) {
    config |= Number(ctr);
  } else {
    const c = minimalBytes(ctr);
    config |= 0x08 | (c.length - 1);
    tail.push(c);
  }
  return concat(Uint8Array.of(config), ...tail);
}

// { kid, ctr, length } of a ciphertext's header; SFrameError if the ciphertext ends first
export function parseHeader(data) {
  if (!data.length) throw new SFrameError('an SFrame ciphertext has at least a config byte');
  const config = data[0];
  let at = 1;
  const values = [];
  for (const [extended, field] of [[config & 0x80, (config >> 4) & 7], [config & 0x08, config & 7]]) {
    if (!extended) {
      values.push(BigInt(field));
      continue;
    }
    const n = field + 1;
    if (data.length < at + n) throw new SFrameError(`the SFrame header says ${n} more bytes; the ciphertext ends first`);
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(data[at + i]);
    values.push(v);
    at += n;
  }
  return { kid: values[0], ctr: values[1], length: at };
}

// --- keys (§4.4.2) ----------------------------------------------------------------------------------
const encoder = new TextEncoder();

async function hkdf(hash, baseKey, info, length) {
  // HKDF with an empty salt (RFC 5869: a hash length of zeros, the same HMAC key)
  const ikm = await subtle.importKey('raw', baseKey, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits({ name: 'HKDF', hash, salt: new Uint8Array(0), info }, ikm, length * 8);
  return new Uint8Array(bits);
}

// sframe_key and sframe_salt of (suite, KID, base_key), with the WebCrypto keys made from them
export async function deriveKey(suite, kid, baseKey) {
  kid = BigInt(kid);
  if (kid < 0n || kid > MAX_VALUE) throw new SFrameError('a KID is an integer from 0 to 2^64 - 1');
  if (baseKey.length < 16) throw new SFrameError('a base key has at least 16 bytes');
  const suffix = concat(bigEndian(kid, 8), bigEndian(suite.id, 2));
  const key = await hkdf(suite.hash, baseKey, concat(encoder.encode('SFrame 1.0 Secret key '), suffix), suite.keyBytes);
  const salt = await hkdf(suite.hash, baseKey, concat(encoder.encode('SFrame 1.0 Secret salt '), suffix), NONCE_BYTES);
  return withCryptoKeys(suite, kid, key, salt);
}

// a derived key from its raw parts (the AEAD test vectors of RFC 9605 Appendix C.2 give these)
export async function withCryptoKeys(suite, kid, key, salt) {
  const derived = { suite, kid: BigInt(kid), key, salt };
  if (suite.ctr) {
    derived.aes = await subtle.importKey('raw', key.slice(0, CIPHER_KEY_BYTES), 'AES-CTR', false,
      ['encrypt', 'decrypt']);
    derived.hmac = await subtle.importKey('raw', key.slice(CIPHER_KEY_BYTES), { name: 'HMAC', hash: suite.hash },
      false, ['sign']);
  } else {
    derived.aes = await subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt', 'decrypt']);
  }
  return derived;
}

export function nonceOf(derived, ctr) {
  const c = bigEndian(ctr, NONCE_BYTES);
  return derived.salt.map((b, i) => b ^ c[i]);
}

async function tagOf(derived, nonce, aad, ct) {
  const s = derived.suite;
  const lengths = concat(bigEndian(aad.length, 8), bigEndian(ct.length, 8), bigEndian(s.tagBytes, 8));
  const mac = new Uint8Array(await subtle.sign('HMAC', derived.hmac, concat(lengths, nonce, aad, ct)));
  return mac.slice(0, s.tagBytes);
}

function ctrParams(nonce) {
  return { name: 'AES-CTR', counter: concat(nonce, new Uint8Array(4)), length: 32 };
}

// AEAD.Encrypt: the ciphertext with its tag
export async function seal(derived, nonce, aad, plaintext) {
  if (!derived.suite.ctr) {
    return new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad }, derived.aes,
      plaintext));
  }
  const ct = new Uint8Array(await subtle.encrypt(ctrParams(nonce), derived.aes, plaintext));
  return concat(ct, await tagOf(derived, nonce, aad, ct));
}

// AEAD.Decrypt; SFrameError when it does not authenticate
export async function open(derived, nonce, aad, sealed) {
  const s = derived.suite;
  if (sealed.length < s.tagBytes) throw new SFrameError('an SFrame ciphertext shorter than its tag');
  if (!s.ctr) {
    try {
      return new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad }, derived.aes,
        sealed));
    } catch {
      throw new SFrameError('the SFrame ciphertext does not authenticate');
    }
  }
  const ct = sealed.slice(0, sealed.length - s.tagBytes);
  const tag = sealed.slice(sealed.length - s.tagBytes);
  const want = await tagOf(derived, nonce, aad, ct);
  let diff = 0;
  for (let i = 0; i < tag.length; i++) diff |= tag[i] ^ want[i];
  if (diff) throw new SFrameError('the SFrame ciphertext does not authenticate');
  return new Uint8Array(await subtle.decrypt(ctrParams(nonce), derived.aes, ct));
}

// --- sending and receiving (§4.4.3, §4.4.4) ---------------------------------------------------------
// One sender's key: each encryption takes the next counter, so a (key, nonce) pair is never reused.
export class SendKey {
  static async create(kid, baseKey, suite = DEFAULT_SUITE) {
    const k = new SendKey();
    k.derived = await deriveKey(suite, kid, baseKey);
    k.base = baseKey; // (the page hands it to its frame worker)
    k.ctr = 0n;
    return k;
  }

  get kid() {
    return this.derived.kid;
  }

  async encrypt(plaintext, metadata = new Uint8Array(0)) {
    if (this.ctr > MAX_VALUE) throw new SFrameError("this key's counter is spent: rekey");
    const ctr = this.ctr++;
    const header = encodeHeader(this.derived.kid, ctr);
    return concat(header, await seal(this.derived, nonceOf(this.derived, ctr), concat(header, metadata), plaintext));
  }
}

export const MAX_KEYS = 64;

// Receive keys by KID; decrypt() gives { kid, plaintext } or throws SFrameError.
export class Keyring {
  constructor(suite = DEFAULT_SUITE, maxKeys = MAX_KEYS) {
    this.suite = suite;
    this.maxKeys = maxKeys;
    this.keys = new Map(); // String(kid) -> derived key, oldest first
  }

  async add(kid, baseKey) {
    const derived = await deriveKey(this.suite, kid, baseKey);
    this.keys.delete(String(derived.kid));
    this.keys.set(String(derived.kid), derived);
    while (this.keys.size > this.maxKeys) this.keys.delete(this.keys.keys().next().value);
  }

  remove(kid) {
    this.keys.delete(String(BigInt(kid)));
  }

  async decrypt(ciphertext, metadata = new Uint8Array(0)) {
    const { kid, ctr, length } = parseHeader(ciphertext);
    const derived = this.keys.get(String(kid));
    if (!derived) throw new SFrameError(`no key with KID ${kid}`);
    const aad = concat(ciphertext.subarray(0, length), metadata);
    return { kid, plaintext: await open(derived, nonceOf(derived, ctr), aad, ciphertext.subarray(length)) };
  }
}
