// Basement web client: implements docs/protocol.md (version 1) in the browser.
//
// Two peer connections per participant, both BUNDLEd:
//   publisher  - we offer sendonly audio + video (VP8 simulcast q/h/f by default), the server answers;
//   subscriber - the server offers one m-line per remote track, we answer. Each offer carries a
//                `tracks` map {mid: track}, which is how a transceiver is matched to a participant.
// The server never trickles; we trickle our own candidates.
//
// Query parameters (options.js): room, name, autojoin=1 (focus Join), codec=h264|vp9|av1, svc=L3T3_KEY, simulcast=0, video=WxH, audio=0, camera=0, grant.
// Token-gated rooms: a join refused with `unauthorized` offers Sign-In with Ethereum in #grant-slot
// (the dev wallet of the embedded chain, or an EIP-1193 browser wallet); see wallet.js.
// Debug / test surface: window.basement (below).
//
// This is the entry module (index.html loads it; plain ES modules, no bundler). Modules, and
// what they import (no cycles):
//   options.js    query-string options                       -
//   state.js      sig, call, window.basement's data           -
//   errors.js     ServerError, HttpError, gate refusals       -
//   signal.js     the WebSocket request/reply client          errors
//   http.js       /api and /auth fetches, GET /api/info       errors
//   keccak.js     Keccak-256, EIP-55 checksums                errors
//   siwe.js       EIP-4361 messages, dev/browser wallet       errors, http, keccak
//   devchain.js   buying the demo pass on the dev chain       errors, http, siwe
//   ui.js         state dot, room header, event log, banner   state
//   wallet.js     grants, wallet sign-in, #grant-slot panel   devchain, errors, http, options, siwe, state, ui
//   tiles.js      local and remote video tiles                state, ui
//   ice.js        candidate trickling                         state
//   dynacast.js   pausing unwanted simulcast encodings        state, ui
//   chat.js       chat over the data channels, its panel      state, ui
//   publish.js    camera/mic, publisher PC, mute              chat, dynacast, ice, options, state, tiles, ui
//   share.js      screen share: start, stop, share again      options, publish, state, ui
//   subscribe.js  subscriber PC, remote tracks -> tiles       ice, state, tiles, ui
//   teardown.js   ending a join                               chat, state, ui
//   messages.js   server messages                             dynacast, state, subscribe, teardown, tiles, ui
//   join.js       join / leave                                chat, errors, messages, publish, signal, state, teardown, ui, wallet
//   stats.js      getStats views for tests                    state
//   app.js        window.basement and the DOM wiring          all of the above

import { chat, wireChat } from './chat.js';
import { serverInfo } from './http.js';
import { join, leave } from './join.js';
import { keccak256, toChecksumAddress } from './keccak.js';
import { onMessage } from './messages.js';
import { OPTIONS } from './options.js';
import { fallBack } from './p2p.js';
import { toggleCamera, toggleMic } from './publish.js';
import { toggleShare } from './share.js';
import { siweMessage } from './siwe.js';
import { B, call, sig } from './state.js';
import { senderEncodings, stats, transceivers } from './stats.js';
import { onVisibilityChange } from './tiles.js';
import { $, hideError } from './ui.js';
import { getGrant, signOut, walletJoin as walletSignInAndJoin } from './wallet.js';

const walletJoin = (kind) => walletSignInAndJoin(kind, join);

// window.basement: state, participant, participants() (the others), remote [{track, participant, name,
// kind}], stats(), events
// (every server message), plus a few handles for debugging and tests (the data: state.js).
// chat: the chat's messages, notices, unread count, send(text), open() ... (described in chat.js).
window.basement = Object.assign(B, {
  chat,
  options: OPTIONS,
  stats,
  transceivers,
  senderEncodings,
  join,
  leave,
  toggleMic,
  toggleCamera,
  toggleShare,
  getGrant,
  walletJoin,
  signOut,
  serverInfo,
  siweMessage,
  participants: () => (call ? [...call.participants.values()] : []), // the others in the room

  keccak256: (text) => keccak256(new TextEncoder().encode(text)),
  toChecksumAddress,
  handle: (msg) => onMessage(msg), // feed a server message by hand (debugging)
  // act as if the peer-to-peer connection had failed (debugging, tests): both go back to the SFU
  directFail: () => call && call.direct && fallBack(call, call.direct, 'asked to', true),
  send: (msg) => sig && sig.send(msg), // send a protocol message by hand (debugging, tests)
});

// ---------------------------------------------------------------------------------------------
// Wiring
// ---------------------------------------------------------------------------------------------
$('#room').value = OPTIONS.room;
$('#name').value = OPTIONS.name;
$('#join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  $('#join-button').disabled = true;
  join($('#room').value, $('#name').value).catch(() => {});
});
$('#toggle-mic').addEventListener('click', () => toggleMic());
$('#toggle-camera').addEventListener('click', () => toggleCamera());
$('#toggle-share').addEventListener('click', () => toggleShare());
wireChat();
$('#leave').addEventListener('click', () => leave());
$('#error-close').addEventListener('click', hideError);
$('#wallet-dev').addEventListener('click', () => walletJoin('dev'));
$('#wallet-browser').addEventListener('click', () => walletJoin('browser'));
$('#wallet-pass').addEventListener('click', () => walletJoin('pass'));
$('#wallet-signout').addEventListener('click', () => signOut());
document.addEventListener('visibilitychange', onVisibilityChange);
window.addEventListener('pagehide', () => { if (sig) sig.send({ type: 'leave' }); });

if (OPTIONS.autojoin && OPTIONS.room) {
  // A link alone must not switch on a camera and microphone (any site can open one): autojoin
  // prefills the form and puts the focus on Join; capture starts with the user's click or Enter.
  $('#join-button').focus();
  $('#join-hint').textContent = `Press Join to enter ${OPTIONS.room} with your camera and microphone.`;
}
