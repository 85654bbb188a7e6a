// The web client's SFrame (signalling/web/static/sframe.js) run by node on what test_sframe_js.py
// sends on stdin; it prints what it computed, and the Python test compares.
import { Keyring, SUITES, SendKey, deriveKey, encodeHeader, nonceOf, open, parseHeader, seal, withCryptoKeys }
  from '../../../../signalling/web/static/sframe.js';

const hex = (b) => Buffer.from(b).toString('hex');
const bytes = (h) => new Uint8Array(Buffer.from(h, 'hex'));

const input = JSON.parse(await new Promise((resolve) => {
  let text = '';
  process.stdin.on('data', (d) => { text += d; });
  process.stdin.on('end', () => resolve(text));
}));
const v = input.vectors;
const out = { header: [], parsed: [], aead: [], sframe: [] };
for (const h of v.header) {
  out.header.push(hex(encodeHeader(BigInt(h.kid), BigInt(h.ctr))));
  const p = parseHeader(bytes(h.encoded + 'ff'));
  out.parsed.push([p.kid.toString(), p.ctr.toString(), p.length]);
}
for (const a of v.aes_ctr_hmac) {
  const key = await withCryptoKeys(SUITES[a.cipher_suite], 0n, bytes(a.key), new Uint8Array(12));
  const ct = await seal(key, bytes(a.nonce), bytes(a.aad), bytes(a.pt));
  out.aead.push({ ct: hex(ct), pt: hex(await open(key, bytes(a.nonce), bytes(a.aad), bytes(a.ct))) });
}
for (const s of v.sframe) {
  const suite = SUITES[s.cipher_suite];
  const key = await deriveKey(suite, BigInt(s.kid), bytes(s.base_key));
  const sender = await SendKey.create(BigInt(s.kid), bytes(s.base_key), suite);
  sender.ctr = BigInt(s.ctr);
  const ct = await sender.encrypt(bytes(s.pt), bytes(s.metadata));
  const ring = new Keyring(suite);
  await ring.add(BigInt(s.kid), bytes(s.base_key));
  const { kid, plaintext } = await ring.decrypt(bytes(s.ct), bytes(s.metadata));
  out.sframe.push({ key: hex(key.key), salt: hex(key.salt), nonce: hex(nonceOf(key, BigInt(s.ctr))), ct: hex(ct),
    kid: kid.toString(), pt: hex(plaintext) });
}
// across implementations: decrypt what Python encrypted, encrypt for Python, and refuse a forgery
const c = input.cross;
const ring = new Keyring(SUITES[c.suite]);
await ring.add(BigInt(c.kid), bytes(c.base_key));
out.cross = { pt: hex((await ring.decrypt(bytes(c.ct), bytes(c.metadata))).plaintext) };
const mine = await SendKey.create(BigInt(c.kid) + 1n, bytes(c.base_key), SUITES[c.suite]);
out.cross.ct = [hex(await mine.encrypt(bytes(c.pt), bytes(c.metadata))),
  hex(await mine.encrypt(bytes(c.pt), bytes(c.metadata)))];
try {
  await ring.decrypt(bytes(c.ct), bytes(c.metadata).map((b) => b ^ 1));
  out.cross.forgery = 'accepted';
} catch (e) {
  out.cross.forgery = `${e.constructor.name}: ${e.message}`;
}
process.stdout.write(JSON.stringify(out));
