// The end of a join, however it ends: leave, error, server close or removal.
import { endChat } from './chat.js';
import { stopE2ee } from './e2ee.js';
import { teardownDirect } from './p2p.js';
import { B, call, setSig, sig } from './state.js';
import { $, logEvent, setState } from './ui.js';

export function teardown(state) {
  const s = call;
  if (sig) { sig.close(); setSig(null); }
  if (s) {
    clearInterval(s.pingTimer);
    for (const tile of s.tiles.values()) tile.destroy();
    s.tiles.clear();
    s.publishSettled();
    teardownDirect(s);
    stopE2ee(s);
    for (const pc of [s.pub, s.sub]) if (pc) pc.close();
    endChat();
    if (s.stream) for (const t of s.stream.getTracks()) t.stop();
    if (s.screenStream) { for (const t of s.screenStream.getTracks()) t.stop(); s.screen = s.screenStream = null; }
  }
  $('#audio-sinks').replaceChildren();
  $('#grid').replaceChildren();
  B.remote = [];
  B.published = {};
  setState(state);
  $('#room-view').hidden = true;
  $('#controls').hidden = true;
  $('#room-info').hidden = true;
  $('#e2ee-lock').hidden = true;
  $('#join-view').hidden = false;
  $('#join-button').disabled = false;
}

export function onSocketClosed() {
  if (!sig) return;
  const why = sig.resumeError;
  setSig(null);
  logEvent(why ? `connection to the server lost (${why}): join again` : 'connection to the server closed', 'error');
  teardown('closed');
}
