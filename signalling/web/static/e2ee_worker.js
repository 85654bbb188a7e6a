// The page's end-to-end encryption of media (docs/e2ee.md): a module worker behind every
// RTCRtpScriptTransform of the call (or every pair of Chromium's encoded streams the page posts).
// Sending, each encoded frame becomes its clear prefix (what the SFU reads: a VP8 frame's tag, and
// on a key frame its start code and size; nothing of VP9 and Opus) and an SFrame ciphertext
// of the rest, authenticated with the prefix; receiving, the reverse, and a frame that does not
// decrypt is dropped (counted), never decoded. The page (e2ee.js) posts the keys: the one to send
// with ({type: 'send-key', kid, base}) and the senders' ({type: 'recv-key' | 'remove-key', kid}).
import { Keyring, SendKey } from './sframe.js';

let sendKey = null;
let sendKid = null;
const keyring = new Keyring();
const counts = { encrypted: 0, decrypted: 0, undecryptable: 0, unsent: 0, lastError: null };

// The frame's codec: what its metadata says (mimeType, where the browser has it), else what the
// page said of the transceiver ('vp8', 'vp9', 'opus').
function codecOf(frame, codec) {
  const meta = frame.getMetadata ? frame.getMetadata() : null;
  return meta && meta.mimeType ? meta.mimeType.split('/').pop().toLowerCase() : codec;
}

// How many bytes of a frame stay in the clear: VP8's (the SFU reads its key-frame bit and a key
// frame's size in the frame itself); none of VP9's (its payload descriptor, which the packetizer
// writes from the encoder's information and not from the frame, carries all the SFU reads) or Opus's.
function clearBytes(codec, data) {
  if (codec !== 'vp8' || !data.length) return 0;
  return Math.min(data.length, data[0] & 1 ? 3 : 10); // RFC 6386 §9.1: bit 0 of the frame tag is 0 on a key frame
}

async function encrypt(codec, frame, controller) {
  if (!sendKey) { counts.unsent += 1; return; } // never a frame in the clear
  const data = new Uint8Array(frame.data);
  const n = clearBytes(codecOf(frame, codec), data);
  const ct = await sendKey.encrypt(data.subarray(n), data.subarray(0, n));
  const out = new Uint8Array(n + ct.length);
  out.set(data.subarray(0, n));
  out.set(ct, n);
  frame.data = out.buffer;
  counts.encrypted += 1;
  controller.enqueue(frame);
}

async function decrypt(codec, frame, controller) {
  const data = new Uint8Array(frame.data);
  const n = clearBytes(codecOf(frame, codec), data);
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

// Receivers' pipes of encoded streams (id -> {decrypt}): such streams can be taken once per
// receiver, so a track that stops being encrypted is passed on as it is rather than unpiped.
const pipes = new Map();

function pipe(readable, writable, side, codec, id) {
  const step = side === 'send' ? encrypt : decrypt;
  const transform = (frame, c) => {
    if (id !== undefined && !pipes.get(id).decrypt) { c.enqueue(frame); return undefined; }
    return step(codec, frame, c);
  };
  readable.pipeThrough(new TransformStream({ transform })).pipeTo(writable)
    .catch(() => { /* the transceiver stopped */ })
    .finally(() => { if (id !== undefined) pipes.delete(id); });
}

self.onrtctransform = (event) => {
  const { readable, writable, options } = event.transformer;
  pipe(readable, writable, options.side, options.codec);
};

self.onmessage = async ({ data }) => {
  if (data.type === 'streams') { // Chromium's encoded streams (createEncodedStreams), posted by the page
    pipes.set(data.id, { decrypt: data.decrypt });
    pipe(data.readable, data.writable, data.side, data.codec, data.id);
  } else if (data.type === 'decrypt') {
    if (pipes.has(data.id)) pipes.get(data.id).decrypt = data.decrypt;
  } else if (data.type === 'send-key') {
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
