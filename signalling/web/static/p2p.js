import { applyDynacast } from './dynacast.js';
import { pcConfig } from './ice.js';
import { B, call, sig } from './state.js';
import { $, logEvent } from './ui.js';

const WATCH_MS = 200;          // how often a switch checks that frames arrive on the new path
const SWITCH_TIMEOUT_MS = 5000; // switch anyway after this long (nothing may be sent: a muted camera)
const DISCONNECTED_MS = 2000;  // a direct connection disconnected this long has failed: back to the SFU

// ---------------------------------------------------------------------------------------------
// Peer to peer for two (docs/protocol.md "Peer to peer"). While the room holds only us and one
// other whose client can too, the server pairs us (`p2p` on) and relays our direct connection's
// signalling (`p2p_signal`). Our connections to the SFU stay up, standing by:
//  - going direct: once the peer tells us it decodes us directly (`ready`), we stop sending to the
//    SFU (replaceTrack(null)); once we decode the peer directly we show that and tell it `ready`;
//  - going back (`p2p` off, a third joined): we send to the SFU again at once, keep showing the
//    direct media until the SFU's arrives, then close the direct connection (make-before-break).
// B.direct: 'off' | 'connecting' | 'direct' (both ways) ; B.directSwitches counts switches.
// ---------------------------------------------------------------------------------------------
export function onP2p(s, msg) {
  if (msg.state === 'on' && typeof msg.peer === 'string') startDirect(s, msg.peer, !!msg.offerer);
  else if (msg.state === 'off') endDirect(s, msg.reason);
}

export function onP2pSignal(s, msg) {
  const d = s.direct;
  if (!d || msg.from !== d.peer || !msg.data) return;
  const data = msg.data;
  d.steps = d.steps.then(() => applySignal(s, d, data)).catch((e) => {
    logEvent(`direct connection: ${e.message}`, 'error');
  });
}

async function applySignal(s, d, data) {
  if (s.direct !== d) return;
  if (data.sdp && data.sdp.type === 'offer') {
    await d.pc.setRemoteDescription(data.sdp);
    await d.pc.setLocalDescription(await d.pc.createAnswer());
    send(d, { sdp: { type: 'answer', sdp: d.pc.localDescription.sdp } });
    await flushCandidates(d);
  } else if (data.sdp && data.sdp.type === 'answer') {
    await d.pc.setRemoteDescription(data.sdp);
    await flushCandidates(d);
  } else if ('candidate' in data) {
    if (d.pc.remoteDescription) await addCandidate(d, data.candidate);
    else d.candidates.push(data.candidate);
  } else if (data.failed) {
    fallBack(s, d, 'the direct connection failed on the other side');
  } else if (data.ready) {
    d.peerReady = true;
    standBy(s, true);   // the peer gets us directly: stop sending through the SFU
    updateState(s, d);
  }
}

function startDirect(s, peer, offerer) {
  if (s.direct) closeDirect(s, s.direct);
  const pc = new RTCPeerConnection(pcConfig(s));
  const d = {
    pc, peer, offerer, stream: new MediaStream(), candidates: [], steps: Promise.resolve(),
    ready: false, peerReady: false, closed: false,
  };
  s.direct = d;
  B.direct = 'connecting';
  pc.onicecandidate = (e) => send(d, { candidate: e.candidate ? e.candidate.toJSON() : null });
  pc.ontrack = (e) => { d.stream.addTrack(e.track); };
  pc.onconnectionstatechange = () => {
    const state = pc.connectionState;
    if (state === 'failed') fallBack(s, d, 'the direct connection failed', true);
    else if (state === 'disconnected') {
      setTimeout(() => {
        if (pc.connectionState !== 'connected') fallBack(s, d, 'the direct connection was lost', true);
      }, DISCONNECTED_MS);
    }
  };
  // our tracks go in first (the pairing may come before `joined`, before we publish): the
  // peer's offer, chained after this, is then answered with them
  d.steps = d.steps.then(async () => {
    await s.publishDone;
    if (s.direct !== d || call !== s) return;
    logEvent(`going peer to peer with ${nameOf(s, peer)}`);
    for (const t of s.stream ? s.stream.getTracks() : []) pc.addTrack(t, s.stream);
    if (!s.stream || !s.stream.getTracks().length) pc.addTransceiver('video', { direction: 'recvonly' });
    if (offerer) {
      await pc.setLocalDescription(await pc.createOffer());
      send(d, { sdp: { type: 'offer', sdp: pc.localDescription.sdp } });
    }
  }).catch((e) => logEvent(`direct connection: ${e.message}`, 'error'));
  // the peer's media shows here once it decodes on the direct path
  watch(s, d, () => directFrames(d), () => {
    d.ready = true;
    showPeer(s, d, true);
    send(d, { ready: true });
    updateState(s, d);
  }, 0);
}

// The direct path died (or the partner says so): both go back through the SFU for the rest of
// this pairing (the next `p2p` on tries again).
export function fallBack(s, d, why, tell = false) {
  if (s.direct !== d || d.closed) return;
  if (tell) send(d, { failed: true });
  logEvent(`${why}: back through the server`, 'error');
  endDirect(s, 'failed');
}

function endDirect(s, reason) {
  const d = s.direct;
  standBy(s, false);   // through the SFU again, at once
  if (!d) return;
  s.direct = null;
  B.direct = 'off';
  if (reason === 'left' || !d.ready) { closeDirect(s, d); return; }
  if (reason !== 'failed') logEvent(`${reason === 'joined' ? 'someone joined' : 'the room changed'}: back through the server`);
  // keep showing the direct media until the SFU's decodes (or the timeout)
  sfuFrames(s, d.peer).then((start) => watch(s, d, () => sfuFrames(s, d.peer).then((n) => n > start),
    () => closeDirect(s, d), SWITCH_TIMEOUT_MS));
}

function closeDirect(s, d) {
  if (d.closed) return;
  d.closed = true;
  showPeer(s, d, false);
  d.pc.close();
  if (s.direct === d) { s.direct = null; B.direct = 'off'; }
  if (d.ready) B.directSwitches = (B.directSwitches || 0) + 1;   // (one never shown changed nothing)
}

// Poll `check` until it is true (then `done`), or until `timeout` ms (then `done` too; 0: never).
function watch(s, d, check, done, timeout) {
  const t0 = Date.now();
  const tick = async () => {
    if (d.closed || call !== s) return;
    let ok = false;
    try { ok = await check(); } catch { ok = false; }
    if (ok || (timeout && Date.now() - t0 > timeout)) done();
    else setTimeout(tick, WATCH_MS);
  };
  setTimeout(tick, WATCH_MS);
}

async function directFrames(d) {
  let frames = 0;
  let audio = 0;
  (await d.pc.getStats()).forEach((r) => {
    if (r.type !== 'inbound-rtp') return;
    if (r.kind === 'video') frames += r.framesDecoded || 0;
    else audio += r.packetsReceived || 0;
  });
  const wantsVideo = d.stream.getVideoTracks().length > 0;
  return wantsVideo ? frames > 0 : audio > 0;
}

async function sfuFrames(s, participant) {
  if (!s.sub) return 0;
  let frames = 0;
  (await s.sub.getStats()).forEach((r) => {
    const info = r.type === 'inbound-rtp' ? s.current[r.mid] : null;
    if (info && info.participant === participant) frames += r.kind === 'video' ? r.framesDecoded || 0 : 0;
  });
  return frames;
}

// Our senders to the SFU: nothing while the peer gets us directly (no track, and no encoding
// active: an active one still sends padding), our tracks and the server's dynacast wish otherwise.
function standBy(s, idle) {
  if (!!s.sfuIdle === idle) return;
  s.sfuIdle = idle;
  for (const [tx, kind] of [[s.audioTx, 'audio'], [s.videoTx, 'video']]) {
    if (!tx || !s.stream) continue;
    const track = idle ? null : (kind === 'audio' ? s.stream.getAudioTracks() : s.stream.getVideoTracks())[0] || null;
    if (tx.sender.track !== track) tx.sender.replaceTrack(track).catch(() => {});
  }
  if (s.videoTx && s.published.video) {
    const every = (s.encodings || []).map((e) => e.rid).filter(Boolean);
    applyDynacast(s.dynacast.get(s.published.video) || { track: s.published.video, active: every.length ? every : [''] });
  }
  B.sfuStandby = idle;
}

// The peer's tiles and audio: from the direct connection, or back from the SFU's receivers.
export function showPeer(s, d, direct) {
  const video = d.stream.getVideoTracks()[0];
  for (const tile of s.tiles.values()) {
    if (tile.participant !== d.peer || !tile.video || tile.screen) continue;
    const sfuTrack = tile.receiverTrack;
    const track = direct && video ? video : sfuTrack;
    if (track && (!tile.video.srcObject || tile.video.srcObject.getTracks()[0] !== track)) {
      tile.video.srcObject = new MediaStream([track]);
      tile.video.play().catch(() => {});
    }
    tile.el.classList.toggle('direct', direct);
  }
  const sinks = $('#audio-sinks');
  for (const a of sinks.querySelectorAll(`audio[data-participant="${CSS.escape(d.peer)}"]`)) a.muted = direct;
  const mine = sinks.querySelector('audio[data-direct]');
  if (mine) { mine.srcObject = null; mine.remove(); }
  const audio = d.stream.getAudioTracks();
  if (direct && audio.length) {
    const a = document.createElement('audio');
    a.autoplay = true;
    a.dataset.direct = d.peer;
    a.srcObject = new MediaStream(audio);
    sinks.append(a);
    a.play().catch(() => {});
  }
}

// Tiles made while direct (a new subscribe offer) show the direct media too.
export function directFor(s, participant) {
  const d = s.direct;
  return d && d.ready && d.peer === participant ? d : null;
}

function updateState(s, d) {
  if (s.direct !== d) return;
  const was = B.direct;
  B.direct = d.ready && d.peerReady ? 'direct' : 'connecting';
  if (B.direct === 'direct' && was !== 'direct') {
    B.directSwitches = (B.directSwitches || 0) + 1;
    logEvent(`peer to peer with ${nameOf(s, d.peer)}: media no longer goes through the server`);
  }
}

async function flushCandidates(d) {
  const queued = d.candidates.splice(0);
  for (const c of queued) await addCandidate(d, c);
}

async function addCandidate(d, c) {
  try { await d.pc.addIceCandidate(c || null); } catch (e) { logEvent(`direct candidate refused: ${e.message}`, 'error'); }
}

function send(d, data) {
  if (!d.closed && sig) sig.send({ type: 'p2p_signal', to: d.peer, data });
}

function nameOf(s, id) { return (s.participants.get(id) || {}).name || id; }

export function teardownDirect(s) {
  if (s.direct) closeDirect(s, s.direct);
}
