import { gateError } from './errors.js';

// --- EIP-55 checksums (Keccak-256; browsers have no Keccak, so a small one lives here) ---------
const KECCAK_MASK = (1n << 64n) - 1n;
const KECCAK_RC = [];
const KECCAK_ROT = [];   // rho offsets, in the order of the pi walk
const KECCAK_PI = [];    // the lanes the pi step visits, starting after lane (1, 0)
(() => {
  let r = 1; // the LFSR x^8 + x^6 + x^5 + x^4 + 1 of the Keccak reference, one bit per lane bit 2^j - 1
  for (let i = 0; i < 24; i++) {
    let c = 0n;
    for (let j = 0; j < 7; j++) {
      if (r & 1) c ^= 1n << BigInt((1 << j) - 1);
      r = (r & 0x80 ? (r << 1) ^ 0x71 : r << 1) & 0xff;
    }
    KECCAK_RC.push(c);
  }
  let x = 1;
  let y = 0;
  for (let t = 0; t < 24; t++) {
    [x, y] = [y, (2 * x + 3 * y) % 5];
    KECCAK_PI.push(x + 5 * y);
    KECCAK_ROT.push((((t + 1) * (t + 2)) / 2) % 64);
  }
})();

function rotl64(v, n) {
  return n === 0 ? v : ((v << BigInt(n)) | (v >> BigInt(64 - n))) & KECCAK_MASK;
}

function keccakF(s) {
  const c = new Array(5);
  for (let round = 0; round < 24; round++) {
    for (let x = 0; x < 5; x++) c[x] = s[x] ^ s[x + 5] ^ s[x + 10] ^ s[x + 15] ^ s[x + 20];
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5] ^ rotl64(c[(x + 1) % 5], 1);
      for (let y = 0; y < 25; y += 5) s[x + y] ^= d;
    }
    let cur = s[1];
    for (let t = 0; t < 24; t++) {
      const i = KECCAK_PI[t];
      const tmp = s[i];
      s[i] = rotl64(cur, KECCAK_ROT[t]);
      cur = tmp;
    }
    for (let y = 0; y < 25; y += 5) {
      const row = s.slice(y, y + 5);
      for (let x = 0; x < 5; x++) s[y + x] = row[x] ^ (~row[(x + 1) % 5] & KECCAK_MASK & row[(x + 2) % 5]);
    }
    s[0] ^= KECCAK_RC[round];
  }
}

// Keccak-256 (Ethereum's, with the original 0x01 padding - not SHA3-256) of bytes; returns hex.
export function keccak256(bytes) {
  const rate = 136;
  const padded = new Uint8Array(Math.floor(bytes.length / rate) * rate + rate);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  const s = new Array(25).fill(0n);
  for (let off = 0; off < padded.length; off += rate) {
    for (let i = 0; i < rate / 8; i++) {
      let lane = 0n;
      for (let b = 7; b >= 0; b--) lane = (lane << 8n) | BigInt(padded[off + 8 * i + b]);
      s[i] ^= lane;
    }
    keccakF(s);
  }
  let hex = '';
  for (let i = 0; i < 4; i++) {
    for (let b = 0; b < 8; b++) hex += Number((s[i] >> BigInt(8 * b)) & 0xffn).toString(16).padStart(2, '0');
  }
  return hex;
}

// EIP-55: the server only accepts checksummed addresses in SIWE messages; wallets often return
// lowercase ones.
export function toChecksumAddress(address) {
  if (typeof address !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(address)) throw gateError(`The wallet returned an invalid address: ${address}`);
  const lower = address.slice(2).toLowerCase();
  const hash = keccak256(new TextEncoder().encode(lower));
  let out = '0x';
  for (let i = 0; i < 40; i++) out += parseInt(hash[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i];
  return out;
}
