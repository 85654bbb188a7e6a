// ICE: the peer connections' configuration, and our candidates, held until the SDP went out and
// then trickled.
import { OPTIONS } from './options.js';
import { call, sig } from './state.js';

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
