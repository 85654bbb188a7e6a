// Shared state: the signalling connection, the current call, and window.basement's data.

// ---------------------------------------------------------------------------------------------
// Call state (one join at a time)
// ---------------------------------------------------------------------------------------------
export let sig = null;         // Signal
export let call = null;        // this page's part in the call it joined: per-join state, one per join()

// Modules read `sig` and `call` as live bindings and change them only through these.
export function setSig(value) { sig = value; }
export function setCall(value) { call = value; }

// join.js's `rejoin(reason)`, set there: messages.js calls it on `removed` with `rejoin: true`
// (join.js imports messages.js, so the reverse import would be a cycle)
export const hooks = { rejoin: null };

export function newCall(room) {
  let publishSettled;
  const publishDone = new Promise((resolve) => { publishSettled = resolve; });
  return {
    room,
    me: null,                    // {id, name, identity}
    participants: new Map(),     // id -> {id, name, identity}
    trackInfo: new Map(),        // track id -> track description (latest known)
    stream: null,                // local MediaStream
    pub: null,                   // publisher RTCPeerConnection
    data: null,                  // its data channels {reliable, lossy, nextId} (chat.js)
    sub: null,                   // subscriber RTCPeerConnection
    audioTx: null,
    videoTx: null,
    screen: null,                // the shared screen's video track, while sharing (share.js)
    screenStream: null,
    screenTx: null,              // its transceivers, kept for the next share
    screenAudioTx: null,
    encodings: null,             // the video sendEncodings we offered
    dynacast: new Map(),         // track id -> last dynacast message
    published: {},               // kind -> our track id on the server
    pending: { publisher: [], subscriber: [] },   // candidates gathered before the SDP went out
    signalled: { publisher: false, subscriber: false },
    offers: Promise.resolve(),   // serialises subscriber offers
    publishing: Promise.resolve(), // serialises ICE-restart offers of the publish connection
    publishRestartQueued: false,   // a restart offer waits in `publishing` (publish.js)
    iceRestarts: {},             // target -> ICE restarts asked for (ice.js)
    current: {},                 // mid -> track, from the last applied subscriber offer
    tiles: new Map(),            // key -> Tile
    speaker: null,
    micMuted: false,
    camMuted: false,
    pingTimer: null,
    iceServers: [],              // STUN/TURN for our peer connections, from joined.ice_servers
    direct: null,                // the peer-to-peer connection while paired (p2p.js)
    e2ee: null,                  // end-to-end encryption of our media: its keys and worker (e2ee.js)
    publishDone,                 // settles once our camera and microphone are published (or not)
    publishSettled,              // (join.js and teardown.js call it)
  };
}

// The data half of window.basement (the debugging/test surface); app.js adds the functions and
// publishes it. state, participant, remote [{track, participant, name, kind}], events (every
// server message), log, published, ... token-gated rooms: gate = {room, reason} while the wallet
// choices are shown; wallet = {kind, address} once signed in; walletError = the last refusal
// shown in #wallet-error.
export const B = {
  state: 'idle',
  room: null,
  participant: null,
  remote: [],
  events: [],
  log: [],
  published: {},
  activeSpeaker: null,
  publisherState: null,
  subscriberState: null,
  lastError: null,
  gate: null,
  wallet: null,
  walletError: null,
  direct: 'off',                 // peer to peer: 'off' | 'connecting' | 'direct' (p2p.js)
  directSwitches: 0,
  sfuStandby: false,             // our media goes peer to peer: nothing is sent to the SFU
  e2ee: null,                    // end-to-end encryption, after a join (e2ee.js)
};
