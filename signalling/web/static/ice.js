// Our ICE candidates for either peer connection: held until its SDP went out, then trickled.
import { call, sig } from './state.js';

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
