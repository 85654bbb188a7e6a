import { openChannels } from './chat.js';
import { applyDynacast } from './dynacast.js';
import { callCodec, e2eeConfig, protectSender } from './e2ee.js';
import { flushCandidates, pcConfig, trickle, watchIce } from './ice.js';
import { OPTIONS } from './options.js';
import { B, call, sig } from './state.js';
import { addLocalTile } from './tiles.js';
import { $, logEvent, showError, updateStatusDot } from './ui.js';

const SIMULCAST_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

// ---------------------------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------------------------
export async function startPublishing(s) {
  const constraints = {
    audio: OPTIONS.wantAudio ? { echoCancellation: true, noiseSuppression: true } : false,
    video: OPTIONS.wantVideo
      ? { width: { ideal: OPTIONS.video.width }, height: { ideal: OPTIONS.video.height }, frameRate: { ideal: 30 } }
      : false,
  };
  if (!constraints.audio && !constraints.video) return;
  try {
    s.stream = await navigator.mediaDevices.getUserMedia(constraints);
  } catch (e) {
    showError(`camera/microphone unavailable (${e.name}: ${e.message}); receiving only`);
    logEvent(`getUserMedia failed: ${e.name}`, 'error');
    return;
  }
  if (call !== s) { for (const t of s.stream.getTracks()) t.stop(); return; }
  addLocalTile(s);

  const pc = publisherConnection(s);
  const audio = s.stream.getAudioTracks()[0];
  const video = s.stream.getVideoTracks()[0];
  if (audio) s.audioTx = pc.addTransceiver(audio, { direction: 'sendonly', streams: [s.stream] });
  if (video) {
    s.encodings = videoEncodings(video, callCodec(s, OPTIONS.codec));
    s.videoTx = pc.addTransceiver(video, { direction: 'sendonly', streams: [s.stream], sendEncodings: s.encodings });
    preferCodec(s.videoTx, callCodec(s, OPTIONS.codec));
  }
  for (const tx of [s.audioTx, s.videoTx]) if (tx) protectSender(s, tx, callCodec(s, OPTIONS.codec));
  if (!(await offerPublisher(s))) return;
  if (s.audioTx) s.published.audio = `TR_${s.me.id}_${s.audioTx.mid}`;
  if (s.videoTx) s.published.video = `TR_${s.me.id}_${s.videoTx.mid}`;
  B.published = { ...s.published };
  if (s.dynacast.has(s.published.video)) applyDynacast(s.dynacast.get(s.published.video));
  if (s.micMuted) sendMute(s, 'audio', true);
  if (s.camMuted) sendMute(s, 'video', true);
  const rids = (s.encodings || []).map((e) => e.rid).filter(Boolean);
  logEvent(`publishing ${Object.keys(s.published).join(' + ')}` + (rids.length ? ` (simulcast ${rids.join('/')})` : ''));
}

// The publish connection, made on first use (the camera and microphone, or a screen share alone).
export function publisherConnection(s) {
  if (!s.pub) {
    const pc = (s.pub = new RTCPeerConnection(e2eeConfig(s, pcConfig(s))));
    pc.onicecandidate = (e) => trickle(s, 'publisher', e.candidate);
    pc.onconnectionstatechange = () => { B.publisherState = pc.connectionState; updateStatusDot(); };
    watchIce(s, pc, 'publisher', () => restartPublisher(s));
    openChannels(s, pc); // the chat's data channels, in the first offer (chat.js)
  }
  return s.pub;
}

// No camera or microphone (a viewer's grant, none asked for, or capture failed): the publish
// connection carries only the data channels, so the chat works all the same (docs/protocol.md:
// an offer with only the data m-line, `sources` empty). False when the call ended meanwhile.
export async function publishData(s) {
  if (s.pub) return true;
  publisherConnection(s);
  if (!(await offerPublisher(s))) return false;
  logEvent('connected for chat only');
  return true;
}

// Offer the publish connection (again) with what each m-line carries (docs/protocol.md `sources`);
// false when the call ended meanwhile. An m-line whose track was unpublished is published anew.
export async function offerPublisher(s, options = {}) {
  const pc = s.pub;
  s.signalled.publisher = false; // (a restart gathers anew: its candidates go after this offer)
  await pc.setLocalDescription(await pc.createOffer(options));
  const sources = {}; // (a new transceiver has its mid once the local description is set)
  for (const [tx, source] of [[s.audioTx, 'microphone'], [s.videoTx, 'camera'], [s.screenTx, 'screen'],
    [s.screenAudioTx, 'screen_audio']]) {
    // (a stopped share's m-lines stay, trackless: left unnamed, the server keeps them unpublished)
    if (tx && (tx.sender.track || source === 'microphone' || source === 'camera')) sources[tx.mid] = source;
  }
  const offer = { type: 'offer', target: 'publisher', sdp: pc.localDescription.sdp, sources };
  if (s.e2ee) offer.encryption = 'sframe';
  const reply = sig.request(offer);
  // the server handles messages in order: candidates sent after the offer find its transport
  flushCandidates(s, 'publisher');
  const answer = await reply;
  if (call !== s) return false;
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  return true;
}

// The publish connection's path died: offer it again with new ICE credentials (same tracks).
// At most one restart waits behind the offers already queued: a second would only supersede it.
function restartPublisher(s) {
  if (s.publishRestartQueued) return;
  logEvent('sending connection lost its path: restarting ICE', 'error');
  s.publishRestartQueued = true;
  s.publishing = s.publishing.then(() => {
    s.publishRestartQueued = false;
    return offerPublisher(s, { iceRestart: true });
  }).catch((e) => {
    logEvent(`ICE restart (sending) failed: ${e.message}`, 'error');
  });
}

// Simulcast encodings for a camera track. Chromium sends at most 3 layers from >= 960x540, 2 from
// >= 480x270 and 1 below (and silently drops the *top* encodings beyond that), so a smaller camera
// gets fewer layers whose top one is full resolution - the server then knows what really arrives.
function videoEncodings(track, codec) {
  // SVC: one encoding whose spatial layers the server forwards each subscriber a share of
  const svcCodec = codec === 'vp9' || codec === 'av1';
  if (OPTIONS.svc && svcCodec) return [{ scalabilityMode: OPTIONS.svc, maxBitrate: 2_000_000 }];
  const layers = cameraEncodings(track);
  // VP9 (and AV1): each encoding names its mode, or Chromium sends VP9's encodings as spatial layers
  // of the first one's stream (its legacy SVC), which the server would take for that one layer
  return svcCodec && layers.length > 1 ? layers.map((e) => ({ ...e, scalabilityMode: 'L1T3' })) : layers;
}

function cameraEncodings(track) {
  if (!OPTIONS.simulcast) return [{ maxBitrate: 1_500_000 }];
  const { width = OPTIONS.video.width, height = OPTIONS.video.height } = track.getSettings();
  const pixels = width * height;
  if (pixels >= 960 * 540) return SIMULCAST_ENCODINGS.map((e) => ({ ...e }));
  if (pixels >= 480 * 270) {
    return [
      { rid: 'q', scaleResolutionDownBy: 2, maxBitrate: 200_000 },
      { rid: 'h', scaleResolutionDownBy: 1, maxBitrate: 700_000 },
    ];
  }
  return [{ maxBitrate: 500_000 }];
}

export function preferCodec(transceiver, codec) {
  if (!transceiver.setCodecPreferences || !RTCRtpSender.getCapabilities) return;
  const caps = RTCRtpSender.getCapabilities('video').codecs;
  const want = { h264: /^video\/h264$/i, vp9: /^video\/vp9$/i, av1: /^video\/av1$/i }[codec] || /^video\/vp8$/i;
  // VP9 and AV1: profile 0 only (8-bit 4:2:0), what every browser decodes and the SFU offers subscribers
  const main = caps.filter((c) => want.test(c.mimeType) && !/(^|;)\s*profile(-id)?=[^0]/.test(c.sdpFmtpLine || ''));
  if (!main.length) {
    logEvent(`${codec.toUpperCase()} is not available in this browser; using its default`, 'error');
    return;
  }
  const extra = caps.filter((c) => /^video\/(rtx|red|ulpfec)$/i.test(c.mimeType));
  try { transceiver.setCodecPreferences([...main, ...extra]); } catch (e) { logEvent(`codec preference: ${e.message}`, 'error'); }
}


function sendMute(s, kind, muted) {
  const id = s.published[kind];
  if (id && sig) sig.send({ type: 'mute', track: id, muted });
}

export function toggleMic() { return setMuted('audio', !(call && call.micMuted)); }
export function toggleCamera() { return setMuted('video', !(call && call.camMuted)); }

function setMuted(kind, muted) {
  const s = call;
  if (!s) return;
  if (kind === 'audio') s.micMuted = muted; else s.camMuted = muted;
  if (s.stream) for (const t of (kind === 'audio' ? s.stream.getAudioTracks() : s.stream.getVideoTracks())) t.enabled = !muted;
  sendMute(s, kind, muted);
  const btn = kind === 'audio' ? $('#toggle-mic') : $('#toggle-camera');
  btn.setAttribute('aria-pressed', String(muted));
  btn.classList.toggle('off', muted);
  btn.querySelector('.ctl-text').textContent = kind === 'audio' ? (muted ? 'Mic off' : 'Mic on') : (muted ? 'Camera off' : 'Camera on');
  btn.title = kind === 'audio' ? (muted ? 'Unmute microphone' : 'Mute microphone') : (muted ? 'Turn camera on' : 'Turn camera off');
  const local = s.tiles.get('local');
  if (local) local.setFlags({ camMuted: s.camMuted, micMuted: s.micMuted });
  return muted;
}
