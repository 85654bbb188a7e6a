import { resetChat } from './chat.js';
import { keysNeeded, startE2ee } from './e2ee.js';
import { isGateRefusal, keysError } from './errors.js';
import { onMessage } from './messages.js';
import { OPTIONS } from './options.js';
import { publishData, startPublishing } from './publish.js';
import { Signal } from './signal.js';
import { B, call, hooks, newCall, setCall, setSig, sig } from './state.js';
import { onSocketClosed, teardown } from './teardown.js';
import { $, hideError, logEvent, setState, showError, showRoom, withQuery } from './ui.js';
import { getGrant, offerWallets, setWalletError, walletJoined } from './wallet.js';

const PING_INTERVAL_MS = 15000;  // unless joined.ping says otherwise (client_ping_interval_s)
// `removed` with `rejoin`: everyone of the room was told at once; spread the joins over this long
const REJOIN_SPREAD_MS = 1000;
const MAX_REJOINS = 3;          // within REJOIN_WINDOW_MS: a server that keeps failing us gets no more
const REJOIN_WINDOW_MS = 60000;
let rejoinedAt = [];            // Date.now() of the recent automatic rejoins

// The server ended this participant but asks it to come back (`removed` with `rejoin: true`: its
// media worker or node was lost, or the server is restarting; docs/protocol.md): leave what is left
// of the call and join the same room again under the same name, after a short random wait.
export function rejoin(reason) {
  const s = call;
  const room = s ? s.room : B.room;
  const name = s && s.me ? s.me.name : $('#name').value;
  const now = Date.now();
  rejoinedAt = rejoinedAt.filter((t) => now - t < REJOIN_WINDOW_MS);
  // this Signal is over: closed here, so its late close event cannot end the next join's (teardown.js)
  if (sig) sig.close();
  setSig(null);
  if (!room || rejoinedAt.length >= MAX_REJOINS) {
    logEvent(`removed from the room: ${reason}`, 'error');
    showError(`You were removed from the room: ${reason}`);
    teardown('removed');
    return;
  }
  rejoinedAt.push(now);
  logEvent(`the server moved this call (${reason}): joining again`, 'error');
  teardown('rejoining');
  setTimeout(() => { if (!sig) join(room, name).catch(() => {}); }, Math.random() * REJOIN_SPREAD_MS);
}
hooks.rejoin = rejoin;

// ---------------------------------------------------------------------------------------------
// Join / leave
// ---------------------------------------------------------------------------------------------
export async function join(room, name) {
  if (sig) throw new Error('already joined; leave first');
  room = (room || '').trim();
  name = (name || '').trim();
  setState('connecting');
  hideError();
  setCall(newCall(room));
  resetChat();
  const s = call;
  let grant = null;
  try {
    grant = await getGrant(room);
    if (!grant && await keysNeeded(room)) throw keysError(room);
    const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    setSig(new Signal(wsUrl, onMessage, onSocketClosed, {
      // the signalling socket dropped: media keeps flowing meanwhile (it does not use the socket)
      reconnecting: () => { if (call === s) { setState('reconnecting'); logEvent('connection lost; reconnecting', 'error'); } },
      resumed: () => { if (call === s) { setState('joined'); logEvent('reconnected'); } },
    }));
    await sig.open();
    const msg = { type: 'join', room, name, p2p: OPTIONS.p2p };
    if (grant) msg.grant = grant;
    // subscriber offers (subscribe.js chains them on s.offers) may come before the reply is handled:
    // they wait until end-to-end encryption is set up, so that no encrypted track reaches a decoder
    // without its transform
    let e2eeSet;
    s.offers = new Promise((resolve) => { e2eeSet = resolve; });
    const joined = await sig.request(msg).catch((e) => { e2eeSet(); throw e; });
    if (call !== s) return;
    s.me = joined.participant;
    s.iceServers = joined.ice_servers || [];
    for (const p of joined.participants || []) s.participants.set(p.id, p);
    for (const t of joined.tracks || []) s.trackInfo.set(t.track, t);
    try {
      await startE2ee(s, joined);  // (before publishing: what is published is encrypted from its first frame)
    } finally {
      e2eeSet();
    }
    if (call !== s) return;
    B.participant = s.me;
    B.room = room;
    setState('joined');
    showRoom(room);
    walletJoined();
    logEvent(`joined ${room} as ${s.me.name}`);
    for (const p of joined.participants || []) logEvent(`${p.name || p.id} is here`);
    const every = joined.ping && joined.ping.interval_s > 0 ? joined.ping.interval_s * 1000 : PING_INTERVAL_MS;
    s.pingTimer = setInterval(() => sig && sig.ping(), every);
    history.replaceState(null, '', withQuery({ room, name }));
    if (joined.permissions && joined.permissions.publish === false) {
      logEvent('this grant does not allow publishing; receiving only');
    } else {
      try {
        await startPublishing(s);
      } catch (e) {  // stay in the room, receiving only
        if (call === s) {
          showError(`publishing failed: ${e.message || e}`);
          logEvent(`publishing failed: ${e.message || e}`, 'error');
          // a publish connection whose offer failed never connects: drop it, so the chat gets a
          // data-only one below
          if (s.pub && s.pub.connectionState !== 'connected') {
            s.pub.close();
            s.pub = null;
          }
        }
      }
    }
    s.publishSettled();   // p2p.js waits for this: a pairing may come before `joined`
    // nothing published (a viewer, no devices): a publish connection for the chat alone
    if (call === s && !s.pub) {
      try {
        await publishData(s);
      } catch (e) {
        if (call === s) logEvent(`chat unavailable: ${e.message || e}`, 'error');
      }
    }
  } catch (e) {
    e.shown = true;
    logEvent(`join failed: ${e.message || e}`, 'error');
    teardown('error');
    if (isGateRefusal(e)) {
      offerWallets(room, e.message, !!e.e2ee);
      if ((e.code === 'unauthorized' && !grant) || e.e2ee) {
        // the expected first answer of a gated room: the wallet panel is the message (not the
        // banner onMessage raised for the error reply)
        hideError();
        B.lastError = e.message;
        setState('gated');
      } else {
        setWalletError(e.message);
        showError(e.message);
      }
    } else {
      showError(e.message || String(e));
    }
    throw e;
  }
}

export async function leave() {
  if (!sig) return;
  try { await sig.request({ type: 'leave' }, 5000); } catch { /* closing anyway */ }
  teardown('left');
  logEvent('you left the room');
}
