// End-to-end encryption of the call's media (docs/e2ee.md). After the join the page encrypts what it
// publishes and decrypts what it receives: in a room that requires it, with wallet keys when it
// signed in with a wallet (each key announcement signed by it, which the wallet asks for), else
// with the passphrase typed on the join form (not identity-bound); in an optional room, only when
// a passphrase was typed. The key provider (e2ee_keys.js) runs here;
// the frames go through one worker (e2ee_worker.js) behind RTCRtpScriptTransforms, which gets the
// keys as they change. The key messages travel as data messages (topics e2ee/…, chat.js).
//
// window.basement.e2ee (the test surface): {room: 'required' | 'optional' | 'off', keys: 'wallet' |
// 'passphrase' | null, verified: {participant: address}, refused: [[participant, why]], and the
// worker's counts: encrypted, decrypted, undecryptable (frames dropped), unsent (no key yet)}.
import { dataHooks, sendData } from './chat.js';
import { PassphraseKeys, WalletKeys } from './e2ee_keys.js';
import { B, call } from './state.js';
import { $, logEvent, showError } from './ui.js';
import { walletSigner } from './wallet.js';

const TICK_MS = 250;

// Called once joined: sets s.e2ee = {provider, worker, ...} when this page encrypts, else null.
export async function startE2ee(s, joined) {
  const room = joined.e2ee || 'optional';
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
  if (typeof RTCRtpScriptTransform === 'undefined') {
    showError('This browser cannot encrypt media end to end (no RTCRtpScriptTransform)');
    return;
  }
  const worker = new Worker('/static/e2ee_worker.js', { type: 'module' });
  const e = { provider, worker, outbox: [], sendKid: null, timer: null };
  s.e2ee = e;
  B.e2ee.keys = provider.identityBound ? 'wallet' : 'passphrase';
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
}

export function e2eeLeft(s, participantId) {
  if (s.e2ee) s.e2ee.provider.onLeft(participantId, now()).then((out) => send(s, out));
}

// A sender of ours: its frames are encrypted (before the packetizer) from the first one.
export function protectSender(s, transceiver) {
  if (!s.e2ee) return;
  transceiver.sender.transform = new RTCRtpScriptTransform(s.e2ee.worker, { side: 'send',
    kind: transceiver.sender.track ? transceiver.sender.track.kind : transceiver.receiver.track.kind });
}

// A receiver whose track is (or is no longer) encrypted: decrypted before the decoder, or not.
export function protectReceiver(s, receiver, info) {
  const want = info.encryption === 'sframe' && s.e2ee ? 'sframe' : 'none';
  if ((receiver.basementE2ee || 'none') === want) return;
  if (want === 'sframe') {
    s.e2ee.provider.senderSeen(info.participant);
    receiver.transform = new RTCRtpScriptTransform(s.e2ee.worker, { side: 'receive', kind: receiver.track.kind });
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
