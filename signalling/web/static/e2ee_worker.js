// The page's end-to-end encryption of media (docs/e2ee.md): a module worker behind every
// RTCRtpScriptTransform of the call. Sending, each encoded frame becomes its clear prefix (what the
// SFU reads: a VP8 frame's tag, and on a key frame its start code and size) and an SFrame ciphertext
// of the rest, authenticated with the prefix; receiving, the reverse, and a frame that does not
// decrypt is dropped (counted), never decoded. The page (e2ee.js) posts the keys: the one to send
// with ({type: 'send-key', kid, base}) and the senders' ({type: 'recv-key' | 'remove-key', kid}).
import { Keyring, SendKey } from './sframe.js';

let sendKey = null;
let sendKid = null;
const keyring = new Keyring();
const counts = { encrypted: 0, decrypted: 0, undecryptable: 0, unsent: 0, lastError: null };

function clearBytes(kind, data) {
  if (kind !== 'video' || !data.length) return 0;
  return Math.min(data.length, data[0] & 1 ? 3 : 10); // RFC 6386 §9.1: bit 0 of the frame tag is 0 on a key frame
}

async function encrypt(kind, frame, controller) {
  if (!sendKey) { counts.unsent += 1; return; } // never a frame in the clear
  const data = new Uint8Array(frame.data);
  const n = clearBytes(kind, data);
  const ct = await sendKey.encrypt(data.subarray(n), data.subarray(0, n));
  const out = new Uint8Array(n + ct.length);
  out.set(data.subarray(0, n));
  out.set(ct, n);
  frame.data = out.buffer;
  counts.encrypted += 1;
  controller.enqueue(frame);
}

async function decrypt(kind, frame, controller) {
  const data = new Uint8Array(frame.data);
  const n = clearBytes(kind, data);
  try {
    const { plaintext } = await keyring.decrypt(data.subarray(n), data.subarray(0, n));
    const out = new Uint8Array(n + plaintext.length);
    out.set(data.subarray(0, n));
    out.set(plaintext, n);
    frame.data = out.buffer;
  } catch (e) {
    counts.undecryptable += 1;
    counts.lastError = e.message;
    return;
  }
  counts.decrypted += 1;
  controller.enqueue(frame);
}

self.onrtctransform = (event) => {
  const { readable, writable, options } = event.transformer;
  const step = options.side === 'send' ? encrypt : decrypt;
  readable.pipeThrough(new TransformStream({ transform: (frame, c) => step(options.kind, frame, c) }))
    .pipeTo(writable).catch(() => { /* the transceiver stopped */ });
};

self.onmessage = async ({ data }) => {
  if (data.type === 'send-key') {
    // a key is used from counter 0 once only: the same KID again would reuse its nonces
    const kid = BigInt(data.kid);
    if (kid === sendKid) return;
    sendKid = kid;
    const key = await SendKey.create(kid, data.base);
    if (sendKid === kid) sendKey = key;
  } else if (data.type === 'recv-key') await keyring.add(BigInt(data.kid), data.base);
  else if (data.type === 'remove-key') keyring.remove(BigInt(data.kid));
};

setInterval(() => self.postMessage({ type: 'stats', ...counts }), 500);
