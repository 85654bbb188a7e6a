import { e2eeConfig, protectReceiver } from './e2ee.js';
import { flushCandidates, pcConfig, trickle, watchIce } from './ice.js';
import { directFor } from './p2p.js';
import { B, call, sig } from './state.js';
import { RemoteTile } from './tiles.js';
import { $, logEvent, showError, updateStatusDot } from './ui.js';

// ---------------------------------------------------------------------------------------------
// Subscribing
// ---------------------------------------------------------------------------------------------
export function onSubscriberOffer(msg) {
  const s = call;
  s.offers = s.offers.then(() => applySubscriberOffer(s, msg)).catch((e) => {
    showError(`subscriber offer failed: ${e.message}`);
    logEvent(`subscriber offer failed: ${e.message}`, 'error');
  });
}

async function applySubscriberOffer(s, msg) {
  if (call !== s || !sig) return;
  if (!s.sub) {
    const pc = (s.sub = new RTCPeerConnection(e2eeConfig(s, pcConfig(s))));
    pc.onicecandidate = (e) => trickle(s, 'subscriber', e.candidate);
    pc.onconnectionstatechange = () => { B.subscriberState = pc.connectionState; updateStatusDot(); };
    watchIce(s, pc, 'subscriber', () => {
      logEvent('receiving connection lost its path: restarting ICE', 'error');
      sig.send({ type: 'restart_ice', target: 'subscriber' });  // a new offer follows
    });
  }
  const pc = s.sub;
  s.signalled.subscriber = false; // (after an ICE restart our new candidates go after the answer)
  await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
  for (const t of pc.getTransceivers()) {  // before any frame of them is decoded
    const info = (msg.tracks || {})[t.mid];
    if (t.receiver.track && (info || s.e2ee)) protectReceiver(s, t.receiver, info || null);
  }
  await pc.setLocalDescription(await pc.createAnswer());
  sig.send({ type: 'answer', target: 'subscriber', sdp: pc.localDescription.sdp });
  flushCandidates(s, 'subscriber');

  const tracks = msg.tracks || {};
  s.current = {};
  const remote = [];
  for (const t of pc.getTransceivers()) {
    const info = tracks[t.mid];
    if (!info || !t.receiver.track) continue;  // no track: the m-line is inactive
    const name = info.name || (s.participants.get(info.participant) || {}).name || info.participant;
    const entry = { ...info, name, mid: t.mid, receiver: t.receiver };
    s.current[t.mid] = entry;
    const known = s.trackInfo.get(info.track);
    s.trackInfo.set(info.track, { ...info, muted: known ? known.muted : info.muted, name });
    remote.push(entry);
  }
  B.remote = remote.map(({ track, participant, name, kind, source, mid }) => ({ track, participant, name, kind, source, mid }));
  renderRemote(s);
}

// Tiles are derived from the current remote tracks: one per video track, plus one per participant
// that only sends audio. A tile whose track is gone (m-line inactive) is removed; a recycled
// m-line carrying a new track gets a new tile.
function renderRemote(s) {
  const want = new Map(); // key -> {participant, name, video entry | null}
  const byParticipant = new Map();
  for (const e of Object.values(s.current)) {
    if (!byParticipant.has(e.participant)) byParticipant.set(e.participant, []);
    byParticipant.get(e.participant).push(e);
  }
  for (const [pid, entries] of byParticipant) {
    const videos = entries.filter((e) => e.kind === 'video');
    const name = entries[0].name;
    if (videos.length) for (const v of videos) want.set(`v:${v.track}`, { participant: pid, name, video: v });
    else want.set(`a:${pid}`, { participant: pid, name, video: null });
  }
  for (const [key, tile] of s.tiles) {
    if (key !== 'local' && !want.has(key)) { tile.destroy(); s.tiles.delete(key); }
  }
  for (const [key, spec] of want) {
    if (!s.tiles.has(key)) s.tiles.set(key, new RemoteTile(s, key, spec));
  }
  // audio: one <audio> per remote audio track, outside the tiles
  const sinks = $('#audio-sinks');
  const audioIds = new Set();
  for (const e of Object.values(s.current)) {
    if (e.kind !== 'audio') continue;
    audioIds.add(e.track);
    if (!sinks.querySelector(`audio[data-track="${CSS.escape(e.track)}"]`)) {
      const a = document.createElement('audio');
      a.autoplay = true;
      a.dataset.track = e.track;
      a.dataset.participant = e.participant;
      a.srcObject = new MediaStream([e.receiver.track]);
      a.muted = !!directFor(s, e.participant);  // heard through the direct connection meanwhile
      sinks.append(a);
      a.play().catch(() => {});
    }
  }
  for (const a of [...sinks.querySelectorAll('audio')]) {
    if (!audioIds.has(a.dataset.track)) { a.srcObject = null; a.remove(); }
  }
  refreshFlags(s);
  highlightSpeaker(s);
}

export function refreshFlags(s) {
  for (const [key, tile] of s.tiles) {
    if (key === 'local') continue;
    let micMuted = false;
    let camMuted = false;
    for (const e of Object.values(s.current)) {
      if (e.participant !== tile.participant) continue;
      const info = s.trackInfo.get(e.track) || e;
      if (e.kind === 'audio' && info.muted) micMuted = true;
      if (e.kind === 'video' && tile.track === e.track && info.muted) camMuted = true;
    }
    tile.setFlags({ micMuted, camMuted });
  }
}

export function highlightSpeaker(s) {
  for (const tile of s.tiles.values()) tile.el.classList.toggle('speaking', !!s.speaker && tile.participant === s.speaker);
}
