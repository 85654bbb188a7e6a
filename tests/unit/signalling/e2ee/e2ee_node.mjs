// The web client's key providers (signalling/web/static/e2ee_keys.js) and signature recovery
// (secp256k1.js) run by node for test_e2ee_js.py: one JSON command per stdin line, one JSON reply
// per stdout line. A participant's wallet signature is asked of the test ({"sign": req, "text"}).
import { createInterface } from 'node:readline';
import { PassphraseKeys, WalletKeys } from '../../../../signalling/web/static/e2ee_keys.js';
import { recoverAddress } from '../../../../signalling/web/static/secp256k1.js';

const hex = (b) => Buffer.from(b).toString('hex');
const bytes = (h) => new Uint8Array(Buffer.from(h, 'hex'));
const write = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const participants = new Map();
const signatures = new Map();
let nextSign = 1;

function sign(text) {
  const req = nextSign++;
  write({ sign: req, text });
  return new Promise((resolve) => signatures.set(req, resolve));
}

const ops = {
  new: ({ name, passphrase }) => {
    participants.set(name, passphrase ? new PassphraseKeys(passphrase) : new WalletKeys(sign));
  },
  start: ({ name, room, pid, now }) => participants.get(name).start(room, pid, now),
  message: ({ name, msg, now }) => participants.get(name).onMessage(msg, now),
  left: ({ name, pid, now }) => participants.get(name).onLeft(pid, now),
  tick: ({ name, now }) => participants.get(name).tick(now),
  seen: ({ name, pid }) => participants.get(name).senderSeen(pid),
  encrypt: async ({ name }) => hex(await participants.get(name).sendKey().encrypt(new TextEncoder().encode('a frame'),
    new TextEncoder().encode('clear'))),
  decrypt: async ({ name, ct }) => {
    try {
      const { plaintext } = await participants.get(name).keyring.decrypt(bytes(ct), new TextEncoder().encode('clear'));
      return new TextDecoder().decode(plaintext);
    } catch (e) {
      return `${e.constructor.name}: ${e.message}`;
    }
  },
  state: ({ name }) => {
    const p = participants.get(name);
    return { verified: Object.fromEntries(p.verified || []), refused: p.refused || [],
      kid: Number(p.sendKey().kid) };
  },
  recover: ({ text, signature }) => {
    try {
      return recoverAddress(text, signature);
    } catch (e) {
      return `${e.constructor.name}: ${e.message}`;
    }
  },
};

createInterface({ input: process.stdin }).on('line', async (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === 'signed') {
    signatures.get(cmd.req)(cmd.signature);
    return;
  }
  try {
    const result = await ops[cmd.op](cmd);
    write({ id: cmd.id, result: result === undefined ? null : result });
  } catch (e) {
    write({ id: cmd.id, error: `${e.constructor.name}: ${e.message}\n${e.stack}` });
  }
});
