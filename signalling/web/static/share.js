import { callCodec, protectSender } from './e2ee.js';
import { offerPublisher, preferCodec, publisherConnection } from './publish.js';
import { OPTIONS } from './options.js';
import { B, call, sig } from './state.js';
import { $, logEvent, showError } from './ui.js';

// ---------------------------------------------------------------------------------------------
// Screen share: a second video source on the publish connection (docs/protocol.md `sources`).
// Stopping unpublishes the track and leaves its m-line in place; sharing again puts a new capture
// on the same sender and offers again, which publishes it anew under the same track id.
// ---------------------------------------------------------------------------------------------
export async function toggleShare() {
  const s = call;
  if (!s || !sig || s.shareBusy) return; // one start or stop at a time (a double click asks once)
  s.shareBusy = true;
  try {
    await (s.screen ? stopShare(s) : startShare(s));
  } finally {
    s.shareBusy = false;
  }
}

async function startShare(s) {
  let stream;
  try {
    // audio too when the browser offers it (a tab's or the system's sound; Chromium asks)
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: true });
  } catch (e) {
    showError(`screen sharing unavailable (${e.name}: ${e.message})`);
    logEvent(`getDisplayMedia failed: ${e.name}`, 'error');
    return;
  }
  const track = stream.getVideoTracks()[0];
  if (call !== s || !track) { for (const t of stream.getTracks()) t.stop(); return; }
  track.contentHint = 'detail'; // text and edges stay sharp; the encoder gives up frame rate first
  s.screen = track;
  s.screenStream = stream;
  // the browser's own "Stop sharing" ends the track
  track.addEventListener('ended', () => { if (call === s && s.screen === track) stopShare(s); });
  const pc = publisherConnection(s);
  if (s.screenTx) {
    await s.screenTx.sender.replaceTrack(track);
  } else {
    s.screenTx = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream], sendEncodings: [{ maxBitrate: 2_500_000 }] });
    preferCodec(s.screenTx, callCodec(s, OPTIONS.codec));
    protectSender(s, s.screenTx, callCodec(s, OPTIONS.codec));
  }
  const audio = stream.getAudioTracks()[0];
  if (audio) {
    if (s.screenAudioTx) await s.screenAudioTx.sender.replaceTrack(audio);
    else {
      s.screenAudioTx = pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] });
      protectSender(s, s.screenAudioTx);
    }
  }
  try {
    if (!(await offerPublisher(s))) return;
  } catch (e) {
    showError(`screen share refused: ${e.message}`);
    await stopShare(s, false);
    return;
  }
  const ids = [`TR_${s.me.id}_${s.screenTx.mid}`, ...(audio ? [`TR_${s.me.id}_${s.screenAudioTx.mid}`] : [])];
  if (s.screen !== track) {
    // the browser's "Stop sharing" ended it while the offer was out: the server has just published
    // it, so take it back rather than leave a share without media in everyone's grid
    for (const id of ids) if (sig && call === s) await sig.request({ type: 'unpublish', track: id }).catch(() => {});
    return;
  }
  s.published.screen = ids[0];
  if (audio) s.published.screen_audio = ids[1];
  B.published = { ...s.published };
  setButton(true);
  logEvent('sharing your screen');
}

async function stopShare(s, unpublish = true) {
  const stream = s.screenStream;
  s.screen = s.screenStream = null;
  if (stream) for (const t of stream.getTracks()) t.stop();
  for (const tx of [s.screenTx, s.screenAudioTx]) if (tx) await tx.sender.replaceTrack(null).catch(() => {});
  const ids = [s.published.screen, s.published.screen_audio].filter(Boolean);
  delete s.published.screen;
  delete s.published.screen_audio;
  B.published = { ...s.published };
  setButton(false);
  for (const id of unpublish ? ids : []) {
    if (!sig || call !== s) break;
    try {
      await sig.request({ type: 'unpublish', track: id });
    } catch (e) {
      logEvent(`unpublish failed: ${e.message}`, 'error');
    }
  }
  logEvent('stopped sharing your screen');
}

function setButton(sharing) {
  const btn = $('#toggle-share');
  btn.setAttribute('aria-pressed', String(sharing));
  btn.querySelector('.ctl-text').textContent = sharing ? 'Stop sharing' : 'Share screen';
  btn.title = sharing ? 'Stop sharing your screen' : 'Share your screen';
}
