// Who signed an EIP-191 personal message: the address an Ethereum signature recovers (secp256k1
// public key recovery, SEC 1 §4.1.6). Browsers' WebCrypto has no secp256k1, so a small one lives
// here (BigInt, Jacobian coordinates); it only verifies, so nothing secret goes through it.
// Checked against eth_account's signatures (tests/unit/signalling/e2ee/test_e2ee_js.py).
import { keccak256, toChecksumAddress } from './keccak.js';

const P = 2n ** 256n - 2n ** 32n - 977n;
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const G = [0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798n,
  0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8n, 1n];

export class SignatureError extends Error {}

const mod = (a, m = P) => ((a % m) + m) % m;

function inverse(a, m = P) {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, m);
}

function power(b, e, m = P) {
  let out = 1n;
  b = mod(b, m);
  while (e > 0n) {
    if (e & 1n) out = (out * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return out;
}

// Jacobian points [X, Y, Z]; Z = 0 is the point at infinity
function double([x, y, z]) {
  if (!y || !z) return [0n, 1n, 0n];
  const yy = mod(y * y);
  const s = mod(4n * x * yy);
  const m = mod(3n * x * x);
  const x3 = mod(m * m - 2n * s);
  return [x3, mod(m * (s - x3) - 8n * yy * yy), mod(2n * y * z)];
}

function add(p, q) {
  if (!p[2]) return q;
  if (!q[2]) return p;
  const [x1, y1, z1] = p;
  const [x2, y2, z2] = q;
  const z1z1 = mod(z1 * z1);
  const z2z2 = mod(z2 * z2);
  const u1 = mod(x1 * z2z2);
  const u2 = mod(x2 * z1z1);
  const s1 = mod(y1 * z2 * z2z2);
  const s2 = mod(y2 * z1 * z1z1);
  if (u1 === u2) return s1 === s2 ? double(p) : [0n, 1n, 0n];
  const h = mod(u2 - u1);
  const r = mod(s2 - s1);
  const hh = mod(h * h);
  const hhh = mod(h * hh);
  const x3 = mod(r * r - hhh - 2n * u1 * hh);
  return [x3, mod(r * (u1 * hh - x3) - s1 * hhh), mod(h * z1 * z2)];
}

function multiply(point, k) {
  let out = [0n, 1n, 0n];
  for (let bit = BigInt(k.toString(2).length - 1); bit >= 0n; bit--) {
    out = double(out);
    if ((k >> bit) & 1n) out = add(out, point);
  }
  return out;
}

function affine([x, y, z]) {
  const zi = inverse(z);
  const zi2 = mod(zi * zi);
  return [mod(x * zi2), mod(y * zi2 * zi)];
}

const hexBig = (h) => BigInt(`0x${h}`);
const toHex = (v) => v.toString(16).padStart(64, '0');

function hexBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// The address that signed `text` with personal_sign (EIP-191), checksummed; SignatureError if the
// signature is not a well-formed one or recovers no point.
export function recoverAddress(text, signature) {
  if (typeof signature !== 'string' || !/^(0x)?[0-9a-fA-F]{130}$/.test(signature)) {
    throw new SignatureError('a signature is 65 bytes of hex');
  }
  const sig = signature.replace(/^0x/, '');
  const r = hexBig(sig.slice(0, 64));
  const s = hexBig(sig.slice(64, 128));
  let v = parseInt(sig.slice(128, 130), 16);
  if (v >= 27) v -= 27;
  if (v > 1 || !r || r >= N || !s || s >= N) throw new SignatureError('not a valid secp256k1 signature');
  const body = new TextEncoder().encode(text);
  const prefixed = new Uint8Array([...new TextEncoder().encode(`\x19Ethereum Signed Message:\n${body.length}`), ...body]);
  const e = mod(hexBig(keccak256(prefixed)), N);
  // R: the point whose x is r, of the parity v says (y^2 = x^3 + 7; P = 3 mod 4, so a root is a power)
  const y2 = mod(r * r * r + 7n);
  let y = power(y2, (P + 1n) / 4n);
  if (mod(y * y) !== y2) throw new SignatureError('the signature recovers no point');
  if ((y & 1n) !== BigInt(v)) y = P - y;
  // Q = r^-1 (s R - e G)
  const ri = inverse(r, N);
  const q = add(multiply([r, y, 1n], mod(s * ri, N)), multiply(G, mod(-e * ri, N)));
  if (!q[2]) throw new SignatureError('the signature recovers no point');
  const [qx, qy] = affine(q);
  const hash = keccak256(hexBytes(toHex(qx) + toHex(qy)));
  return toChecksumAddress(`0x${hash.slice(24)}`);
}
