// End-to-end encryption of the call's media (docs/e2ee.md). After the join the page encrypts what it
// publishes and decrypts what it receives: in a room that requires it, with wallet keys when it
// signed in with a wallet (each key announcement signed by it, which the wallet asks for), else
// with the passphrase typed on the join form (not identity-bound); in an optional room, only when
// a passphrase was typed. The key provider (e2ee_keys.js) runs here;
// the frames go through one worker (e2ee_worker.js) behind RTCRtpScriptTransforms (or, in a
// Chromium without them, Chromium's encoded streams posted to it), which gets the keys as they change. The key messages travel as data messages (topics e2ee/…, chat.js).
//
// A room that requires it, joined without keys: join.js first offers a wallet sign-in (keysNeeded).
// With wallet keys every remote tile shows the address that signed its participant's key, or that
// its keys were refused and why.
//
// window.basement.e2ee (the test surface): {room: 'required' | 'optional' | 'off', keys: 'wallet' |
// 'passphrase' | null, api: 'script-transform' | 'encoded-streams' (how frames reach the worker),
// verified: {participant: address}, refused: [[participant, why]], and the
// worker's counts: encrypted, decrypted, undecryptable (frames dropped), unsent (no key yet)}.
import { dataHooks, sendData } from './chat.js';
import { PassphraseKeys, WalletKeys } from './e2ee_keys.js';
import { api } from './http.js';
import { B, call } from './state.js';
import { badge } from './tiles.js';
import { $, logEvent, showError } from './ui.js';
import { walletSigner } from './wallet.js';

const TICK_MS = 250;

// Before a join without a grant: does `room` require E2EE of a page that has no keys for it (no
// passphrase typed; a signed-in wallet brings a grant, and so never gets here)? Then the join
// asks for a wallet sign-in first (join.js). An unreadable answer is no: the join goes on, and
// startE2ee says what is missing.
// Each room's mode is asked once per page (and learnt again from each `joined`): rejoins ask
// nothing, and /api/rooms shares the per-address budget of the sign-in requests.
const modes = new Map();

export async function keysNeeded(room) {
  if (($('#e2ee-passphrase') || {}).value) return false;
  if (!modes.has(room)) {
    try {
      modes.set(room, (await api(`/api/rooms/${encodeURIComponent(room)}`)).e2ee);
    } catch {
      return false;
    }
  }
  return modes.get(room) === 'required';
}

// Called once joined: sets s.e2ee = {provider, worker, ...} when this page encrypts, else null.
export async function startE2ee(s, joined) {
  const room = joined.e2ee || 'optional';
  modes.set(s.room, room);
  B.e2ee = { room, keys: null, verified: {}, refused: [], encrypted: 0, decrypted: 0, undecryptable: 0, unsent: 0 };
  s.e2ee = null;
  if (room === 'off') return;
  const passphrase = ($('#e2ee-passphrase') || {}).value || '';
  const sign = walletSigner();
  let provider = null;
  if (room === 'required' && sign && String(s.me.identity).startsWith('0x')) provider = new WalletKeys(sign);
  else if (passphrase) provider = new PassphraseKeys(passphrase);
  if (!provider) {
    if (room === 'required') {
      showError('This room is end-to-end encrypted: sign in with a wallet, or enter the room’s passphrase, '
        + 'and join again. Until then you can neither send nor see anything here.');
    }
    return;
  }
  const api = framesApi();
  if (!api) {
    showError('This browser cannot encrypt media end to end (neither RTCRtpScriptTransform nor encoded streams)');
    return;
  }
  const worker = new Worker('/static/e2ee_worker.js', { type: 'module' });
  const e = { provider, worker, api, outbox: [], sendKid: null, timer: null };
  s.e2ee = e;
  B.e2ee.keys = provider.identityBound ? 'wallet' : 'passphrase';
  B.e2ee.api = api;
  worker.onmessage = ({ data }) => {
    if (data.type === 'stats' && call === s) Object.assign(B.e2ee, data);
  };
  // the provider's keyring, mirrored into the worker
  const ring = provider.keyring;
  const add = ring.add.bind(ring);
  const remove = ring.remove.bind(ring);
  ring.add = async (kid, base) => {
    await add(kid, base);
    worker.postMessage({ type: 'recv-key', kid: String(kid), base });
  };
  ring.remove = (kid) => {
    remove(kid);
    worker.postMessage({ type: 'remove-key', kid: String(kid) });
  };
  dataHooks.e2ee = (msg) => { if (call === s) provider.onMessage(msg, now()).then((out) => send(s, out)); };
  dataHooks.ready = () => { if (call === s) send(s, []); };
  send(s, await provider.start(s.room, s.me.id, now()));
  e.timer = setInterval(() => { if (call === s) provider.tick(now()).then((out) => send(s, out)); }, TICK_MS);
  $('#e2ee-lock').hidden = false;
  // (a passphrase binds no one: said on the lock itself, not only in its tooltip)
  $('#e2ee-lock').textContent = provider.identityBound ? '🔒 end-to-end encrypted'
    : '🔒 end-to-end encrypted (passphrase: not identity-bound)';
  $('#e2ee-lock').title = provider.identityBound
    ? 'End-to-end encrypted: keys signed by each participant’s wallet'
    : 'End-to-end encrypted with the room’s passphrase (not bound to anyone’s identity)';
  logEvent(`media end-to-end encrypted (${B.e2ee.keys} keys)`);
}

function now() {
  return Date.now() / 1000;
}

// What the provider says to send, once the data channel is open; and the key to send with.
function send(s, out) {
  const e = s.e2ee;
  if (!e) return;
  e.outbox.push(...out);
  while (e.outbox.length && sendData(e.outbox[0])) e.outbox.shift();
  const key = e.provider.sendKey();
  if (key && key.kid !== e.sendKid) {
    e.sendKid = key.kid;
    e.worker.postMessage({ type: 'send-key', kid: String(key.kid), base: key.base });
  }
  B.e2ee.verified = Object.fromEntries(e.provider.verified || []);
  const refused = e.provider.refused || [];
  for (const [pid, why] of refused.slice(B.e2ee.refused.length)) {
    logEvent(`refused the keys of ${(s.participants.get(pid) || {}).name || pid}: ${why}`, 'error');
  }
  B.e2ee.refused = refused.map(([pid, why]) => [pid, why]);
  markTiles(s);
}

// With wallet keys, each remote tile says whose keys its media is under: the address the
// participant's key announcement was signed by (not the name it chose, nor what the server says),
// or that its keys were refused and why.
function markTiles(s) {
  if (!s.e2ee || !s.e2ee.provider.identityBound) return;
  const refused = new Map();  // (the first reason: what followed from it, e.g. its keys, says less)
  for (const [pid, why] of B.e2ee.refused) if (!refused.has(pid)) refused.set(pid, why);
  for (const tile of s.tiles.values()) {
    if (tile.participant === s.me.id) continue;
    const address = B.e2ee.verified[tile.participant];
    const why = refused.get(tile.participant);
    badge(tile.el, 'verified', address && !why ? `🔒 ${address.slice(0, 6)}…${address.slice(-4)}` : null);
    badge(tile.el, 'refused', why ? '⚠ keys refused' : null);
    const b = tile.el.querySelector('.badge.verified') || tile.el.querySelector('.badge.refused');
    if (b) {
      b.title = why ? `End-to-end keys refused: ${why}` : `Media end-to-end encrypted with keys signed by ${address}`;
      b.dataset.address = address || '';
    }
  }
}

export function e2eeLeft(s, participantId) {
  if (s.e2ee) s.e2ee.provider.onLeft(participantId, now()).then((out) => send(s, out));
}

// Which API gets the encoded frames to the worker: RTCRtpScriptTransform (Firefox, Chromium 141+),
// else Chromium's older encoded streams (createEncodedStreams, the streams posted to the worker),
// else none.
function framesApi() {
  if (typeof RTCRtpScriptTransform !== 'undefined') return 'script-transform';
  if (typeof RTCRtpSender !== 'undefined' && 'createEncodedStreams' in RTCRtpSender.prototype) return 'encoded-streams';
  return null;
}

// The config of a connection to the SFU: with encoded streams, the connection must be made for them
// (and then every sender and receiver of it is piped through the worker, or its frames go nowhere).
export function e2eeConfig(s, config) {
  return s.e2ee && s.e2ee.api === 'encoded-streams' ? { ...config, encodedInsertableStreams: true } : config;
}

let pipes = 0;  // ids of the encoded-streams pipes (the worker's)

function pipeToWorker(s, endpoint, side, codec, decrypt) {
  const { readable, writable } = endpoint.createEncodedStreams();
  endpoint.basementPipe = ++pipes;
  s.e2ee.worker.postMessage({ type: 'streams', id: endpoint.basementPipe, side, codec, decrypt, readable, writable },
    [readable, writable]);
}

// The video codecs an encrypted call may use: those whose frames the SFU needs nothing of but what
// stays in the clear (e2ee_worker.js). H.264's and AV1's packetizers parse the frame they send, which
// they cannot once it is encrypted.
export const E2EE_CODECS = ['vp8', 'vp9'];

// A sender of ours: its frames are encrypted (before the packetizer) from the first one. `codec`:
// the one it was set to prefer (the worker reads each frame's own where the browser says it).
export function protectSender(s, transceiver, codec) {
  if (!s.e2ee) return;
  const kind = transceiver.sender.track ? transceiver.sender.track.kind : transceiver.receiver.track.kind;
  const name = kind === 'audio' ? 'opus' : codec;
  if (s.e2ee.api === 'encoded-streams') pipeToWorker(s, transceiver.sender, 'send', name, true);
  else transceiver.sender.transform = new RTCRtpScriptTransform(s.e2ee.worker, { side: 'send', codec: name });
}

// The video codec of a call: what the codec option asks for, and in an encrypted call VP8 unless
// that is one it may use.
export function callCodec(s, wanted) {
  return !s.e2ee || E2EE_CODECS.includes(wanted) ? wanted : 'vp8';
}

// A receiver whose track is (or is no longer) encrypted: decrypted before the decoder, or not.
// (`info` null: a receiver the offer says nothing of, piped as it is when the connection needs it.)
export function protectReceiver(s, receiver, info) {
  const want = info && info.encryption === 'sframe' && s.e2ee ? 'sframe' : 'none';
  const codec = info && info.codec ? info.codec.toLowerCase() : null;
  if (want === 'sframe') s.e2ee.provider.senderSeen(info.participant);
  if (s.e2ee && s.e2ee.api === 'encoded-streams') {
    // the streams can be taken once: the worker decrypts, or passes frames on, as told
    if (!receiver.basementPipe) pipeToWorker(s, receiver, 'receive', codec, want === 'sframe');
    else if ((receiver.basementE2ee || 'none') !== want) {
      s.e2ee.worker.postMessage({ type: 'decrypt', id: receiver.basementPipe, decrypt: want === 'sframe' });
    }
    receiver.basementE2ee = want;
    return;
  }
  if ((receiver.basementE2ee || 'none') === want) return;
  if (want === 'sframe') {
    receiver.transform = new RTCRtpScriptTransform(s.e2ee.worker, { side: 'receive', codec });
  } else {
    receiver.transform = null;
  }
  receiver.basementE2ee = want;
}

export function stopE2ee(s) {
  if (!s.e2ee) return;
  clearInterval(s.e2ee.timer);
  s.e2ee.worker.terminate();
  dataHooks.e2ee = dataHooks.ready = null;
}
