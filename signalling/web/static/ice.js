// ICE: the peer connections' configuration, and our candidates, held until the SDP went out and
// then trickled.
import { OPTIONS } from './options.js';
import { B, call, sig } from './state.js';

// STUN/TURN servers come from the server (`joined.ice_servers`, with this participant's own TURN
// credentials); `relay=1` in the page's query makes media go through TURN only (iceTransportPolicy
// "relay"), as on a network that lets nothing else out.
export function pcConfig(s) {
  return {
    bundlePolicy: 'max-bundle',
    rtcpMuxPolicy: 'require',
    iceServers: s.iceServers || [],
    iceTransportPolicy: OPTIONS.relay ? 'relay' : 'all',
  };
}

// ICE restart (docs/protocol.md "A connection whose path died"): when a connection loses its path
// (the network changed: Wi-Fi to cellular, a new address) ICE finds a new one with new credentials,
// keeping the tracks and the DTLS session. `restart` asks for it: the publish connection offers
// again (iceRestart), the subscribe connection asks the server for such an offer.
export const RESTART_AFTER_MS = 2000;  // 'disconnected' this long (it often recovers by itself)
export const RESTART_EVERY_MS = 5000;  // at most one restart per connection this often
const SOCKET_WAIT_MS = 250;            // how often a restart due while the socket is down looks again

export function watchIce(s, pc, target, restart) {
  let timer = null;
  let last = 0;
  const attempt = () => {
    timer = null;
    const st = pc.iceConnectionState;
    if (call !== s || !sig || (st !== 'disconnected' && st !== 'failed')) return;
    // not while the WebSocket is down: restarts asked for then would all go out at once when it is
    // back, each superseding the one before it while it is still checking (a moved client finds its
    // socket gone and its ICE path gone together; the socket resumes first, then ICE restarts once)
    if (sig.resuming || !sig.open_) { timer = setTimeout(attempt, SOCKET_WAIT_MS); return; }
    const wait = last + RESTART_EVERY_MS - Date.now();
    if (wait > 0) { timer = setTimeout(attempt, wait); return; }
    last = Date.now();
    s.iceRestarts[target] = (s.iceRestarts[target] || 0) + 1;
    B.iceRestarts = { ...s.iceRestarts };
    restart();
    timer = setTimeout(attempt, RESTART_EVERY_MS);  // still not through: again
  };
  pc.addEventListener('iceconnectionstatechange', () => {
    const st = pc.iceConnectionState;
    if ((st === 'disconnected' || st === 'failed') && !timer) {
      timer = setTimeout(attempt, st === 'failed' ? 0 : RESTART_AFTER_MS);
    } else if ((st === 'connected' || st === 'completed') && timer) {
      clearTimeout(timer);
      timer = null;
    }
  });
}

export function trickle(s, target, candidate) {
  const c = candidate ? { candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex } : null;
  if (c && !c.candidate) return; // Chrome's empty end-of-generation candidate
  if (!s.signalled[target]) { s.pending[target].push(c); return; }
  if (call === s && sig) sig.send({ type: 'trickle', target, candidate: c });
}

export function flushCandidates(s, target) {
  s.signalled[target] = true;
  const pending = s.pending[target];
  s.pending[target] = [];
  for (const c of pending) sig && sig.send({ type: 'trickle', target, candidate: c });
}
