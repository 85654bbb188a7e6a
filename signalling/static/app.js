// Basement web client: implements docs/protocol.md (version 1) in the browser.
//
// Two peer connections per participant, both BUNDLEd:
//   publisher  - we offer sendonly audio + video (VP8 simulcast q/h/f by default), the server answers;
//   subscriber - the server offers one m-line per remote track, we answer. Each offer carries a
//                `tracks` map {mid: track}, which is how a transceiver is matched to a participant.
// The server never trickles; we trickle our own candidates.
//
// Query parameters: room, name, autojoin=1 (focus Join), codec=h264, simulcast=0, video=WxH, audio=0, camera=0, grant.
// Token-gated rooms: a join refused with `unauthorized` offers Sign-In with Ethereum in #grant-slot
// (the dev wallet of the embedded chain, or an EIP-1193 browser wallet); see "Grants" below.
// Debug / test surface: window.basement (see the bottom of this file).

const qs = new URLSearchParams(location.search);
const OPTIONS = {
  room: qs.get('room') || '',
  name: qs.get('name') || '',
  autojoin: qs.get('autojoin') === '1',
  codec: (qs.get('codec') || 'vp8').toLowerCase() === 'h264' ? 'h264' : 'vp8',
  simulcast: !['0', 'false', 'off'].includes((qs.get('simulcast') || '1').toLowerCase()),
  video: parseSize(qs.get('video')) || { width: 1280, height: 720 },
  wantAudio: qs.get('audio') !== '0',
  wantVideo: qs.get('camera') !== '0',
};

const PING_INTERVAL_MS = 15000;
const RESIZE_DEBOUNCE_MS = 300;
const REQUEST_TIMEOUT_MS = 15000;
const MAX_EVENTS = 2000;
const SIMULCAST_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

const $ = (sel) => document.querySelector(sel);

function parseSize(s) {
  const m = /^(\d{2,4})x(\d{2,4})$/.exec(s || '');
  return m ? { width: +m[1], height: +m[2] } : null;
}

// ---------------------------------------------------------------------------------------------
// Session state (one join at a time)
// ---------------------------------------------------------------------------------------------
let sig = null;                // Signal
let session = null;            // per-join state, reset by teardown()

function newSession(room) {
  return {
    room,
    me: null,                    // {id, name, identity}
    participants: new Map(),     // id -> {id, name, identity}
    trackInfo: new Map(),        // track id -> track description (latest known)
    stream: null,                // local MediaStream
    pub: null,                   // publisher RTCPeerConnection
    sub: null,                   // subscriber RTCPeerConnection
    audioTx: null,
    videoTx: null,
    encodings: null,             // the video sendEncodings we offered
    dynacast: new Map(),         // track id -> last dynacast message
    published: {},               // kind -> our track id on the server
    pending: { publisher: [], subscriber: [] },   // candidates gathered before the SDP went out
    signalled: { publisher: false, subscriber: false },
    offers: Promise.resolve(),   // serialises subscriber offers
    current: {},                 // mid -> track, from the last applied subscriber offer
    tiles: new Map(),            // key -> Tile
    speaker: null,
    micMuted: false,
    camMuted: false,
    pingTimer: null,
  };
}

// ---------------------------------------------------------------------------------------------
// Signalling: one WebSocket, JSON frames, request/reply by id
// ---------------------------------------------------------------------------------------------
class Signal {
  constructor(url, onMessage, onClose) {
    this.url = url;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.nextId = 1;
    this.waiters = new Map();
    this.ws = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = (this.ws = new WebSocket(this.url));
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot connect to ${this.url}`));
      ws.onmessage = (e) => {
        let msg;
        try { msg = JSON.parse(e.data); } catch { return; }
        if (msg.id !== undefined && this.waiters.has(msg.id)) {
          const w = this.waiters.get(msg.id);
          this.waiters.delete(msg.id);
          clearTimeout(w.timer);
          if (msg.type === 'error') w.reject(new ServerError(msg)); else w.resolve(msg);
        }
        this.onMessage(msg);
      };
      ws.onclose = (e) => {
        for (const w of this.waiters.values()) { clearTimeout(w.timer); w.reject(new Error('connection closed')); }
        this.waiters.clear();
        this.onClose(e);
      };
    });
  }

  get open_() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  send(msg) {
    if (!this.open_) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  // Sends now; the returned promise settles with the reply carrying the same id.
  request(msg, timeoutMs = REQUEST_TIMEOUT_MS) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new Error(`no reply to ${msg.type} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiters.set(id, { resolve, reject, timer });
      if (!this.send({ ...msg, id })) {
        clearTimeout(timer);
        this.waiters.delete(id);
        reject(new Error('not connected'));
      }
    });
  }

  close() {
    if (this.ws) { this.ws.onclose = null; try { this.ws.close(); } catch { /* already closed */ } }
    for (const w of this.waiters.values()) { clearTimeout(w.timer); w.reject(new Error('connection closed')); }
    this.waiters.clear();
  }
}

class ServerError extends Error {
  constructor(msg) {
    super(`${msg.code}: ${msg.message}`);
    this.code = msg.code;
  }
}

// ---------------------------------------------------------------------------------------------
// Grants for token-gated rooms: Sign-In with Ethereum (EIP-4361)
// ---------------------------------------------------------------------------------------------
// A join without a grant that a gated room refuses (`unauthorized`) shows the wallet choices in
// #grant-slot. Either wallet signs a SIWE message built from a fresh server nonce, POST /auth/siwe
// turns the signature into a session token, POST /auth/grant turns the session token into a grant
// for one room (after the server checked the room's gate: a 403 names the unmet condition), and
// the join is retried with it. The session token is kept (in memory) so the next gated join needs
// no new signature. A grant in the URL (&grant=...) is used as before.

class HttpError extends Error {
  constructor(status, message, path) {
    super(message);
    this.status = status;
    this.path = path;
  }
}

async function api(path, body) {
  const init = body === undefined ? {}
    : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new Error(`cannot reach the server (${path}): ${e.message || e}`);
  }
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) throw new HttpError(res.status, (data && data.error) || `${path} answered HTTP ${res.status}`, path);
  return data;
}

let infoPromise = null;
// GET /api/info: {chainId, embedded, demoGatedRoom?, demoWallet?, ...}; fetched once (retried on failure).
function serverInfo() {
  if (!infoPromise) infoPromise = api('/api/info').catch((e) => { infoPromise = null; throw e; });
  return infoPromise;
}

let wallet = null;        // {kind: 'dev'|'browser', address, sessionToken, expiresAt (ms)}
let walletGrant = null;   // {room, grant}: what the wallet flow just obtained, used by the next join

async function getGrant(room) {
  if (walletGrant && walletGrant.room === room) {
    const { grant } = walletGrant;
    walletGrant = null;
    return grant;
  }
  if (qs.get('grant')) return qs.get('grant');
  if (walletSignedIn()) return (await requestGrant(room)).grant; // signed in before: no new signature
  return null; // an open room (a gated one answers `unauthorized` and we offer the wallets)
}

function walletSignedIn() {
  return !!(wallet && wallet.expiresAt > Date.now() + 5000);
}

// POST /auth/grant with the session token. Errors name the reason (403: the unmet condition).
async function requestGrant(room) {
  try {
    return await api('/auth/grant', { room, sessionToken: wallet.sessionToken });
  } catch (e) {
    if (!(e instanceof HttpError)) throw e;
    if (e.status === 403) throw gateError(`Access to “${room}” denied for ${wallet.address}: ${e.message}`, e);
    if (e.status === 401) { // the session expired or the server's key changed: sign in again
      wallet = null;
      renderWallet();
      throw gateError(`Sign-in needed for “${room}”: ${e.message}`, e);
    }
    throw e;
  }
}

function gateError(message, cause) {
  const err = new Error(message);
  err.gate = true;
  err.status = cause && cause.status;
  return err;
}

// True when a join failed because the room wants (another) grant: offer the wallets.
function isGateRefusal(e) {
  return !!(e && (e.gate || e.code === 'unauthorized'));
}

// --- EIP-4361 ---------------------------------------------------------------------------------
// Built exactly like signalling/auth.py SiweMessage.to_text(): the server parses it strictly.
function siweMessage({ domain, address, uri, chainId, nonce, issuedAt, expirationTime,
  statement = 'Sign in to Basement' }) {
  const lines = [`${domain} wants you to sign in with your Ethereum account:`, address, ''];
  if (statement) lines.push(statement);
  lines.push('', `URI: ${uri}`, 'Version: 1', `Chain ID: ${chainId}`, `Nonce: ${nonce}`, `Issued At: ${issuedAt}`);
  if (expirationTime) lines.push(`Expiration Time: ${expirationTime}`);
  return lines.join('\n');
}

// A message for `address` from a fresh server nonce. Domain, URI and chain id come from the
// server (GET /auth/nonce), so they match what it verifies even behind a proxy.
async function freshSiweMessage(address) {
  const n = await api('/auth/nonce');
  const now = Date.now();
  return siweMessage({
    domain: n.domain, address, uri: n.uri, chainId: n.chainId, nonce: n.nonce,
    issuedAt: new Date(now).toISOString(), expirationTime: new Date(now + 10 * 60_000).toISOString(),
  });
}

async function signIn(kind, message, signature) {
  let r;
  try {
    r = await api('/auth/siwe', { message, signature });
  } catch (e) {
    if (e instanceof HttpError) throw gateError(`Sign-in refused: ${e.message}`, e);
    throw e;
  }
  return { kind, address: r.address, sessionToken: r.sessionToken, expiresAt: Date.parse(r.expiresAt) || Date.now() + 3_600_000 };
}

// The embedded chain's built-in demo wallet: the server signs with its (public) demo key.
async function signInWithDevWallet() {
  const info = await serverInfo();
  if (!info.embedded || !info.demoWallet) throw gateError('This server has no dev wallet (it runs against a real chain): use a browser wallet.');
  setWalletStatus('Dev wallet: signing in…');
  const message = await freshSiweMessage(info.demoWallet);
  const signed = await api('/api/dev-wallet/sign', { message });
  return signIn('dev', message, signed.signature);
}

// An EIP-1193 wallet (window.ethereum): accounts, chain check, personal_sign.
async function signInWithBrowserWallet() {
  const eth = window.ethereum;
  if (!eth || typeof eth.request !== 'function') {
    throw gateError('No browser wallet found (window.ethereum is missing): install or unlock one, or use the dev wallet.');
  }
  const info = await serverInfo();
  setWalletStatus('Browser wallet: waiting for your wallet to share an account…');
  const accounts = await walletRequest(eth, 'eth_requestAccounts');
  if (!Array.isArray(accounts) || !accounts.length) throw gateError('The wallet did not share any account.');
  const address = toChecksumAddress(accounts[0]);
  const want = BigInt(info.chainId);
  let have = BigInt(await walletRequest(eth, 'eth_chainId'));
  if (have !== want) {
    setWalletStatus(`Browser wallet: asking it to switch to chain ${want}…`);
    try {
      await eth.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: `0x${want.toString(16)}` }] });
      have = BigInt(await walletRequest(eth, 'eth_chainId'));
    } catch { /* the wallet does not know the chain: explained below */ }
  }
  if (have !== want) {
    throw gateError(`Wrong network: your wallet is on chain ${have}, but this server checks room access on chain ${want}`
      + `${info.embedded ? ' (its built-in demo chain)' : ''}. Switch your wallet to chain ${want}`
      + `${info.embedded ? ', or use the dev wallet' : ''}, and try again.`);
  }
  const message = await freshSiweMessage(address);
  setWalletStatus(`Browser wallet: please sign the sign-in message for ${address}…`);
  const signature = await walletRequest(eth, 'personal_sign', [utf8Hex(message), address]);
  setWalletStatus('Browser wallet: checking the signature…');
  return signIn('browser', message, signature);
}

async function walletRequest(eth, method, params) {
  try {
    return await eth.request(params === undefined ? { method } : { method, params });
  } catch (e) {
    if (e && e.code === 4001) throw gateError(`You declined the wallet request (${method}).`);
    throw gateError(`Wallet error (${method}): ${(e && e.message) || e}`);
  }
}

function utf8Hex(text) {
  return '0x' + [...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// --- EIP-55 checksums (Keccak-256; browsers have no Keccak, so a small one lives here) ---------
const KECCAK_MASK = (1n << 64n) - 1n;
const KECCAK_RC = [];
const KECCAK_ROT = [];   // rho offsets, in the order of the pi walk
const KECCAK_PI = [];    // the lanes the pi step visits, starting after lane (1, 0)
(() => {
  let r = 1; // the LFSR x^8 + x^6 + x^5 + x^4 + 1 of the Keccak reference, one bit per lane bit 2^j - 1
  for (let i = 0; i < 24; i++) {
    let c = 0n;
    for (let j = 0; j < 7; j++) {
      if (r & 1) c ^= 1n << BigInt((1 << j) - 1);
      r = (r & 0x80 ? (r << 1) ^ 0x71 : r << 1) & 0xff;
    }
    KECCAK_RC.push(c);
  }
  let x = 1;
  let y = 0;
  for (let t = 0; t < 24; t++) {
    [x, y] = [y, (2 * x + 3 * y) % 5];
    KECCAK_PI.push(x + 5 * y);
    KECCAK_ROT.push((((t + 1) * (t + 2)) / 2) % 64);
  }
})();

function rotl64(v, n) {
  return n === 0 ? v : ((v << BigInt(n)) | (v >> BigInt(64 - n))) & KECCAK_MASK;
}

function keccakF(s) {
  const c = new Array(5);
  for (let round = 0; round < 24; round++) {
    for (let x = 0; x < 5; x++) c[x] = s[x] ^ s[x + 5] ^ s[x + 10] ^ s[x + 15] ^ s[x + 20];
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5] ^ rotl64(c[(x + 1) % 5], 1);
      for (let y = 0; y < 25; y += 5) s[x + y] ^= d;
    }
    let cur = s[1];
    for (let t = 0; t < 24; t++) {
      const i = KECCAK_PI[t];
      const tmp = s[i];
      s[i] = rotl64(cur, KECCAK_ROT[t]);
      cur = tmp;
    }
    for (let y = 0; y < 25; y += 5) {
      const row = s.slice(y, y + 5);
      for (let x = 0; x < 5; x++) s[y + x] = row[x] ^ (~row[(x + 1) % 5] & KECCAK_MASK & row[(x + 2) % 5]);
    }
    s[0] ^= KECCAK_RC[round];
  }
}

// Keccak-256 (Ethereum's, with the original 0x01 padding - not SHA3-256) of bytes; returns hex.
function keccak256(bytes) {
  const rate = 136;
  const padded = new Uint8Array(Math.floor(bytes.length / rate) * rate + rate);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  const s = new Array(25).fill(0n);
  for (let off = 0; off < padded.length; off += rate) {
    for (let i = 0; i < rate / 8; i++) {
      let lane = 0n;
      for (let b = 7; b >= 0; b--) lane = (lane << 8n) | BigInt(padded[off + 8 * i + b]);
      s[i] ^= lane;
    }
    keccakF(s);
  }
  let hex = '';
  for (let i = 0; i < 4; i++) {
    for (let b = 0; b < 8; b++) hex += Number((s[i] >> BigInt(8 * b)) & 0xffn).toString(16).padStart(2, '0');
  }
  return hex;
}

// EIP-55: the server only accepts checksummed addresses in SIWE messages; wallets often return
// lowercase ones.
function toChecksumAddress(address) {
  if (typeof address !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(address)) throw gateError(`The wallet returned an invalid address: ${address}`);
  const lower = address.slice(2).toLowerCase();
  const hash = keccak256(new TextEncoder().encode(lower));
  let out = '0x';
  for (let i = 0; i < 40; i++) out += parseInt(hash[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i];
  return out;
}

// --- the wallet panel in #grant-slot ----------------------------------------------------------
let walletBusy = false;

// Show the wallet choices for `room`; `reason` is why (the server's refusal), shown as the prompt.
async function offerWallets(room, reason) {
  B.gate = { room, reason: reason || null };
  $('#grant-slot').hidden = false;
  $('#wallet-prompt').textContent = `“${room}” is a token-gated room: sign in with a wallet that qualifies to join.`;
  renderWallet();
  try {
    const info = await serverInfo();
    $('#wallet-dev').hidden = !info.embedded;
    if (info.embedded) $('#wallet-dev').title = `Sign in with the demo wallet ${info.demoWallet}, which holds the demo membership pass`;
  } catch (e) {
    setWalletError(`cannot read /api/info: ${e.message || e}`);
  }
}

function renderWallet() {
  const who = walletSignedIn() ? `Signed in as ${wallet.address} (${wallet.kind === 'dev' ? 'dev wallet' : 'browser wallet'}).` : '';
  B.wallet = walletSignedIn() ? { kind: wallet.kind, address: wallet.address } : null;
  setWalletStatus(who);
  $('#wallet-signout').hidden = !who;
  for (const id of ['#wallet-dev', '#wallet-browser', '#wallet-signout']) $(id).disabled = walletBusy;
}

function setWalletStatus(text) {
  $('#wallet-status').textContent = text;
}

function setWalletError(text) {
  B.walletError = text || null;
  $('#wallet-error').textContent = text || '';
  $('#wallet-error').hidden = !text;
}

// A wallet button: sign in (unless already signed in with that wallet), get a grant, join.
async function walletJoin(kind) {
  if (walletBusy || sig) return;
  const room = $('#room').value.trim() || (B.gate && B.gate.room) || '';
  const name = $('#name').value;
  walletBusy = true;
  $('#join-button').disabled = true;
  setWalletError(null);
  hideError();
  renderWallet();
  try {
    if (!walletSignedIn() || wallet.kind !== kind) {
      wallet = null;
      wallet = await (kind === 'dev' ? signInWithDevWallet() : signInWithBrowserWallet());
      logEvent(`signed in as ${wallet.address}`);
    }
    renderWallet();
    setWalletStatus(`Signed in as ${wallet.address}: asking for a grant to “${room}”…`);
    walletGrant = { room, grant: (await requestGrant(room)).grant };
    walletBusy = false;
    await join(room, name);
  } catch (e) {
    if (!e.shown) {  // join() shows its own errors
      setWalletError(e.message || String(e));
      logEvent(`wallet sign-in failed: ${e.message || e}`, 'error');
    }
  } finally {
    walletBusy = false;
    walletGrant = null;
    if (!sig) $('#join-button').disabled = false;
    renderWallet();
  }
}

function signOut() {
  wallet = null;
  setWalletError(null);
  renderWallet();
}

// After a join: forget the gate prompt; the panel stays (showing who is signed in) only when
// a wallet session exists, for the next join.
function walletJoined() {
  B.gate = null;
  setWalletError(null);
  $('#wallet-prompt').textContent = '';
  $('#grant-slot').hidden = !walletSignedIn();
  renderWallet();
}

// ---------------------------------------------------------------------------------------------
// Join / leave
// ---------------------------------------------------------------------------------------------
async function join(room, name) {
  if (sig) throw new Error('already joined; leave first');
  room = (room || '').trim();
  name = (name || '').trim();
  setState('connecting');
  hideError();
  session = newSession(room);
  const s = session;
  let grant = null;
  try {
    grant = await getGrant(room);
    const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    sig = new Signal(wsUrl, onMessage, onSocketClosed);
    await sig.open();
    const msg = { type: 'join', room, name };
    if (grant) msg.grant = grant;
    const joined = await sig.request(msg);
    if (session !== s) return;
    s.me = joined.participant;
    for (const p of joined.participants || []) s.participants.set(p.id, p);
    for (const t of joined.tracks || []) s.trackInfo.set(t.track, t);
    B.participant = s.me;
    B.room = room;
    setState('joined');
    showRoom(room);
    walletJoined();
    logEvent(`joined ${room} as ${s.me.name}`);
    for (const p of joined.participants || []) logEvent(`${p.name || p.id} is here`);
    s.pingTimer = setInterval(() => sig && sig.send({ type: 'ping' }), PING_INTERVAL_MS);
    history.replaceState(null, '', withQuery({ room, name }));
    if (joined.permissions && joined.permissions.publish === false) {
      logEvent('this grant does not allow publishing; receiving only');
    } else {
      try {
        await startPublishing(s);
      } catch (e) {  // stay in the room, receiving only
        if (session === s) {
          showError(`publishing failed: ${e.message || e}`);
          logEvent(`publishing failed: ${e.message || e}`, 'error');
        }
      }
    }
  } catch (e) {
    e.shown = true;
    logEvent(`join failed: ${e.message || e}`, 'error');
    teardown('error');
    if (isGateRefusal(e)) {
      offerWallets(room, e.message);
      if (e.code === 'unauthorized' && !grant) {
        // the expected first answer of a gated room: the wallet panel is the message (not the
        // banner onMessage raised for the error reply)
        hideError();
        B.lastError = e.message;
        setState('gated');
      } else {
        setWalletError(e.message);
        showError(e.message);
      }
    } else {
      showError(e.message || String(e));
    }
    throw e;
  }
}

async function leave() {
  if (!sig) return;
  try { await sig.request({ type: 'leave' }, 5000); } catch { /* closing anyway */ }
  teardown('left');
  logEvent('you left the room');
}

function teardown(state) {
  const s = session;
  if (sig) { sig.close(); sig = null; }
  if (s) {
    clearInterval(s.pingTimer);
    for (const tile of s.tiles.values()) tile.destroy();
    s.tiles.clear();
    for (const pc of [s.pub, s.sub]) if (pc) pc.close();
    if (s.stream) for (const t of s.stream.getTracks()) t.stop();
  }
  $('#audio-sinks').replaceChildren();
  $('#grid').replaceChildren();
  B.remote = [];
  B.published = {};
  setState(state);
  $('#room-view').hidden = true;
  $('#controls').hidden = true;
  $('#room-info').hidden = true;
  $('#join-view').hidden = false;
  $('#join-button').disabled = false;
}

function onSocketClosed() {
  if (!sig) return;
  sig = null;
  logEvent('connection to the server closed', 'error');
  teardown('closed');
}

// ---------------------------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------------------------
async function startPublishing(s) {
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
  if (session !== s) { for (const t of s.stream.getTracks()) t.stop(); return; }
  addLocalTile(s);

  const pc = (s.pub = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', iceServers: [] }));
  pc.onicecandidate = (e) => trickle(s, 'publisher', e.candidate);
  pc.onconnectionstatechange = () => { B.publisherState = pc.connectionState; updateStatusDot(); };
  const audio = s.stream.getAudioTracks()[0];
  const video = s.stream.getVideoTracks()[0];
  if (audio) s.audioTx = pc.addTransceiver(audio, { direction: 'sendonly', streams: [s.stream] });
  if (video) {
    s.encodings = videoEncodings(video);
    s.videoTx = pc.addTransceiver(video, { direction: 'sendonly', streams: [s.stream], sendEncodings: s.encodings });
    preferCodec(s.videoTx, OPTIONS.codec);
  }
  await pc.setLocalDescription(await pc.createOffer());
  const reply = sig.request({ type: 'offer', target: 'publisher', sdp: pc.localDescription.sdp });
  // the server handles messages in order: candidates sent after the offer find its transport
  flushCandidates(s, 'publisher');
  const answer = await reply;
  if (session !== s) return;
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  for (const t of pc.getTransceivers()) {
    if (t.sender.track) s.published[t.sender.track.kind] = `TR_${s.me.id}_${t.mid}`;
  }
  B.published = { ...s.published };
  if (s.dynacast.has(s.published.video)) applyDynacast(s.dynacast.get(s.published.video));
  if (s.micMuted) sendMute(s, 'audio', true);
  if (s.camMuted) sendMute(s, 'video', true);
  const rids = (s.encodings || []).map((e) => e.rid).filter(Boolean);
  logEvent(`publishing ${Object.keys(s.published).join(' + ')}` + (rids.length ? ` (simulcast ${rids.join('/')})` : ''));
}

// Simulcast encodings for a camera track. Chromium sends at most 3 layers from >= 960x540, 2 from
// >= 480x270 and 1 below (and silently drops the *top* encodings beyond that), so a smaller camera
// gets fewer layers whose top one is full resolution - the server then knows what really arrives.
function videoEncodings(track) {
  if (!OPTIONS.simulcast || OPTIONS.codec !== 'vp8') return [{ maxBitrate: 1_500_000 }];
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

function preferCodec(transceiver, codec) {
  if (!transceiver.setCodecPreferences || !RTCRtpSender.getCapabilities) return;
  const caps = RTCRtpSender.getCapabilities('video').codecs;
  const want = codec === 'h264' ? /^video\/h264$/i : /^video\/vp8$/i;
  const main = caps.filter((c) => want.test(c.mimeType));
  if (!main.length) {
    logEvent(`${codec.toUpperCase()} is not available in this browser; using its default`, 'error');
    return;
  }
  const extra = caps.filter((c) => /^video\/(rtx|red|ulpfec)$/i.test(c.mimeType));
  try { transceiver.setCodecPreferences([...main, ...extra]); } catch (e) { logEvent(`codec preference: ${e.message}`, 'error'); }
}

function trickle(s, target, candidate) {
  const c = candidate ? { candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex } : null;
  if (c && !c.candidate) return; // Chrome's empty end-of-generation candidate
  if (!s.signalled[target]) { s.pending[target].push(c); return; }
  if (session === s && sig) sig.send({ type: 'trickle', target, candidate: c });
}

function flushCandidates(s, target) {
  s.signalled[target] = true;
  const pending = s.pending[target];
  s.pending[target] = [];
  for (const c of pending) sig && sig.send({ type: 'trickle', target, candidate: c });
}

function sendMute(s, kind, muted) {
  const id = s.published[kind];
  if (id && sig) sig.send({ type: 'mute', track: id, muted });
}

function toggleMic() { return setMuted('audio', !(session && session.micMuted)); }
function toggleCamera() { return setMuted('video', !(session && session.camMuted)); }

function setMuted(kind, muted) {
  const s = session;
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

// Dynacast: the server tells us which simulcast layers anyone receives; stop encoding the others.
async function applyDynacast(msg) {
  const s = session;
  if (!s) return;
  s.dynacast.set(msg.track, msg); // may come before our publish answer; replayed after it
  if (!s.videoTx || msg.track !== s.published.video) return;
  // One setParameters at a time, always with the latest wish: a second call while the first is
  // pending fails (its getParameters transaction is stale), and the server does not repeat
  // itself, so a lost update would leave a layer off for good.
  s.dynacastWanted = msg;
  if (s.dynacastBusy) return;
  s.dynacastBusy = true;
  try {
    while (s.dynacastWanted && session === s) {
      const want = s.dynacastWanted;
      s.dynacastWanted = null;
      const sender = s.videoTx.sender;
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) return;
      const active = new Set(Array.isArray(want.active) ? want.active : []);
      for (const e of params.encodings) e.active = e.rid ? active.has(e.rid) : active.size > 0;
      try {
        await sender.setParameters(params);
        logEvent(`dynacast: sending ${[...active].join(', ') || 'no layers'}`);
      } catch (e) {
        want.tries = (want.tries || 0) + 1;
        logEvent(`dynacast failed (${e.message})${want.tries < 5 ? '; retrying' : ''}`, 'error');
        if (!s.dynacastWanted && want.tries < 5) s.dynacastWanted = want;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  } finally {
    s.dynacastBusy = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Subscribing
// ---------------------------------------------------------------------------------------------
function onSubscriberOffer(msg) {
  const s = session;
  s.offers = s.offers.then(() => applySubscriberOffer(s, msg)).catch((e) => {
    showError(`subscriber offer failed: ${e.message}`);
    logEvent(`subscriber offer failed: ${e.message}`, 'error');
  });
}

async function applySubscriberOffer(s, msg) {
  if (session !== s || !sig) return;
  if (!s.sub) {
    const pc = (s.sub = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', iceServers: [] }));
    pc.onicecandidate = (e) => trickle(s, 'subscriber', e.candidate);
    pc.onconnectionstatechange = () => { B.subscriberState = pc.connectionState; updateStatusDot(); };
  }
  const pc = s.sub;
  await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
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
  B.remote = remote.map(({ track, participant, name, kind, mid }) => ({ track, participant, name, kind, mid }));
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

function refreshFlags(s) {
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

function highlightSpeaker(s) {
  for (const tile of s.tiles.values()) tile.el.classList.toggle('speaking', !!s.speaker && tile.participant === s.speaker);
}

// ---------------------------------------------------------------------------------------------
// Tiles
// ---------------------------------------------------------------------------------------------
function tileSkeleton(name) {
  const el = document.createElement('div');
  el.className = 'tile';
  el.innerHTML = `
    <div class="avatar"><span></span></div>
    <video autoplay playsinline muted></video>
    <div class="badges"></div>
    <div class="label"><svg class="mic" viewBox="0 0 24 24" role="img" aria-label="microphone muted"><rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3M4 4l16 16"/></svg><span class="name"></span></div>`;
  el.querySelector('.name').textContent = name;
  el.querySelector('.avatar span').textContent = (name || '?').trim().charAt(0).toUpperCase() || '?';
  return el;
}

function badge(el, cls, text) {
  const box = el.querySelector('.badges');
  let b = box.querySelector(`.${cls}`);
  if (text == null) { if (b) b.remove(); return; }
  if (!b) { b = document.createElement('span'); b.className = `badge ${cls}`; box.append(b); }
  b.textContent = text;
}

function addLocalTile(s) {
  const el = tileSkeleton(`${s.me.name} (you)`);
  el.classList.add('local');
  el.dataset.participant = s.me.id;
  const video = el.querySelector('video');
  video.srcObject = s.stream;
  video.play().catch(() => {});
  if (!s.stream.getVideoTracks().length) el.classList.add('no-video');
  $('#grid').prepend(el);
  s.tiles.set('local', {
    el,
    participant: s.me.id,
    setFlags({ micMuted, camMuted }) {
      el.classList.toggle('mic-muted', !!micMuted);
      el.classList.toggle('cam-muted', !!camMuted);
    },
    destroy() { video.srcObject = null; el.remove(); },
  });
}

class RemoteTile {
  constructor(s, key, spec) {
    this.s = s;
    this.key = key;
    this.participant = spec.participant;
    this.track = spec.video ? spec.video.track : null;
    this.quality = 'auto';
    this.visible = true;
    this.lastSent = null;
    this.timer = null;
    const el = (this.el = tileSkeleton(spec.name));
    el.classList.add('remote');
    el.dataset.participant = spec.participant;
    if (this.track) el.dataset.track = this.track;
    this.video = el.querySelector('video');
    if (spec.video) {
      this.video.srcObject = new MediaStream([spec.video.receiver.track]);
      this.video.play().catch(() => {});
      const select = document.createElement('select');
      select.className = 'quality';
      select.title = 'Receive quality';
      for (const q of ['auto', 'low', 'medium', 'high', 'off']) select.add(new Option(q, q));
      select.onchange = () => { this.quality = select.value; this.lastSent = null; this.sendSubscription(); };
      el.append(select);
      this.resizeObs = new ResizeObserver(() => this.scheduleSubscription());
      this.resizeObs.observe(this.video);
      this.intersectObs = new IntersectionObserver((entries) => {
        for (const e of entries) this.visible = e.isIntersecting;
        this.scheduleSubscription();
      });
      this.intersectObs.observe(el);
    } else {
      el.classList.add('no-video');
    }
    $('#grid').append(el);
  }

  scheduleSubscription() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.sendSubscription(), RESIZE_DEBOUNCE_MS);
  }

  sendSubscription() {
    if (!this.track || !sig || this.s !== session) return;
    let msg;
    if (this.quality !== 'auto') {
      msg = { type: 'subscription', track: this.track, layer: this.quality };
    } else {
      const w = Math.round(this.video.clientWidth);
      const h = Math.round(this.video.clientHeight);
      const hidden = document.visibilityState === 'hidden' || !this.visible || w === 0 || h === 0;
      msg = hidden ? { type: 'subscription', track: this.track, layer: 'off' }
                   : { type: 'subscription', track: this.track, width: Math.min(w, 16384), height: Math.min(h, 16384) };
    }
    const key = JSON.stringify(msg);
    if (key === this.lastSent) return;
    this.lastSent = key;
    sig.send(msg);
  }

  setFlags({ micMuted, camMuted }) {
    this.el.classList.toggle('mic-muted', !!micMuted);
    this.el.classList.toggle('cam-muted', !!camMuted);
  }

  destroy() {
    clearTimeout(this.timer);
    if (this.resizeObs) this.resizeObs.disconnect();
    if (this.intersectObs) this.intersectObs.disconnect();
    this.video.srcObject = null;
    this.el.remove();
  }
}

function tileForTrack(s, trackId) {
  for (const t of s.tiles.values()) if (t.track === trackId) return t;
  return null;
}

document.addEventListener('visibilitychange', () => {
  if (!session) return;
  for (const t of session.tiles.values()) if (t.scheduleSubscription) t.scheduleSubscription();
});

// ---------------------------------------------------------------------------------------------
// Server messages
// ---------------------------------------------------------------------------------------------
function onMessage(msg) {
  B.events.push(msg);
  if (B.events.length > MAX_EVENTS) B.events.splice(0, B.events.length - MAX_EVENTS);
  const s = session;
  if (!s) return;
  const who = (id) => (s.participants.get(id) || {}).name || (s.me && s.me.id === id ? 'you' : id);
  switch (msg.type) {
    case 'offer':
      if (msg.target === 'subscriber') onSubscriberOffer(msg);
      break;
    case 'participant_joined':
      s.participants.set(msg.participant.id, msg.participant);
      logEvent(`${msg.participant.name || msg.participant.id} joined`, 'join');
      break;
    case 'participant_left':
      logEvent(`${who(msg.participant)} left${msg.reason && msg.reason !== 'left' ? ` (${msg.reason})` : ''}`, 'leave');
      s.participants.delete(msg.participant);
      break;
    case 'track_published':
      s.trackInfo.set(msg.track.track, msg.track);
      break;
    case 'track_unpublished':
      s.trackInfo.delete(msg.track);
      break;
    case 'track_muted': {
      const info = s.trackInfo.get(msg.track);
      if (info) info.muted = msg.muted;
      if (msg.participant !== (s.me && s.me.id)) {
        const kind = info ? info.kind : 'track';
        logEvent(`${who(msg.participant)} ${msg.muted ? 'muted' : 'unmuted'} ${kind === 'audio' ? 'mic' : kind === 'video' ? 'camera' : kind}`);
      }
      refreshFlags(s);
      break;
    }
    case 'active_speaker':
      s.speaker = msg.participant;
      B.activeSpeaker = msg.participant;
      highlightSpeaker(s);
      break;
    case 'subscription': {
      const tile = tileForTrack(s, msg.track);
      if (tile) {
        badge(tile.el, 'layer', msg.layer ? layerLabel(msg.layer) : null);
        badge(tile.el, 'paused', msg.paused ? 'paused' : null);
      }
      break;
    }
    case 'layer_changed': {
      const tile = tileForTrack(s, msg.track);
      if (tile) badge(tile.el, 'layer', msg.layer ? layerLabel(msg.layer) : null);
      break;
    }
    case 'paused': {
      const tile = tileForTrack(s, msg.track);
      if (tile) badge(tile.el, 'paused', msg.paused ? `paused${msg.reason ? ` · ${msg.reason}` : ''}` : null);
      break;
    }
    case 'dynacast':
      applyDynacast(msg);
      break;
    case 'error':
      showError(`${msg.code}: ${msg.message}`);
      logEvent(`error ${msg.code}: ${msg.message}`, 'error');
      break;
    case 'removed':
      logEvent(`removed from the room: ${msg.reason}`, 'error');
      showError(`You were removed from the room: ${msg.reason}`);
      sig = null; // the server closes the socket
      teardown('removed');
      break;
    case 'left':
      break;
    default:
      break;
  }
}

function layerLabel(rid) {
  return { q: 'low', h: 'medium', f: 'high' }[rid] || rid;
}

// ---------------------------------------------------------------------------------------------
// UI plumbing
// ---------------------------------------------------------------------------------------------
function setState(state) {
  B.state = state;
  document.body.dataset.state = state;
  updateStatusDot();
}

function updateStatusDot() {
  const dot = $('#status-dot');
  if (!dot) return;
  const states = [B.publisherState, B.subscriberState].filter(Boolean);
  let cls = 'pending';
  if (B.state !== 'joined') cls = 'down';
  else if (states.includes('failed')) cls = 'down';
  else if (states.length && states.every((x) => x === 'connected')) cls = 'up';
  dot.className = `status-dot ${cls}`;
  dot.title = `signalling: ${B.state}; publisher: ${B.publisherState || '-'}; subscriber: ${B.subscriberState || '-'}`;
}

function showRoom(room) {
  $('#join-view').hidden = true;
  $('#room-view').hidden = false;
  $('#controls').hidden = false;
  $('#room-info').hidden = false;
  $('#room-label').textContent = room;
  for (const [id, kind] of [['#toggle-mic', 'audio'], ['#toggle-camera', 'video']]) {
    const btn = $(id);
    btn.setAttribute('aria-pressed', 'false');
    btn.classList.remove('off');
    btn.querySelector('.ctl-text').textContent = kind === 'audio' ? 'Mic on' : 'Camera on';
  }
}

function logEvent(text, kind = 'info') {
  B.log.push({ at: Date.now(), kind, text });
  const list = $('#event-log');
  if (!list) return;
  const li = document.createElement('li');
  li.className = `ev ${kind}`;
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString([], { hour12: false });
  li.append(time, document.createTextNode(' ' + text));
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

function showError(text) {
  B.lastError = text;
  $('#error-text').textContent = text;
  $('#error-banner').hidden = false;
}

function hideError() { $('#error-banner').hidden = true; }

function withQuery(params) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(params)) q.set(k, v);
  q.delete('autojoin');
  return `${location.pathname}?${q}`;
}

// ---------------------------------------------------------------------------------------------
// Stats for the debugging/test surface
// ---------------------------------------------------------------------------------------------
async function stats() {
  const s = session;
  const inbound = [];
  const outbound = [];
  if (!s) return { inbound, outbound };
  if (s.sub) {
    (await s.sub.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      const info = s.current[r.mid] || {};
      inbound.push({
        kind: r.kind, mid: r.mid, trackIdentifier: r.trackIdentifier, track: info.track || null,
        participant: info.participant || null, framesDecoded: r.framesDecoded, frameWidth: r.frameWidth,
        frameHeight: r.frameHeight, freezeCount: r.freezeCount, pliCount: r.pliCount, nackCount: r.nackCount,
        packetsLost: r.packetsLost, packetsReceived: r.packetsReceived, bytesReceived: r.bytesReceived,
      });
    });
  }
  if (s.pub) {
    (await s.pub.getStats()).forEach((r) => {
      if (r.type !== 'outbound-rtp') return;
      outbound.push({
        kind: r.kind, mid: r.mid, rid: r.rid, frameWidth: r.frameWidth, frameHeight: r.frameHeight,
        active: r.active, bytesSent: r.bytesSent, packetsSent: r.packetsSent, framesEncoded: r.framesEncoded,
        qualityLimitationReason: r.qualityLimitationReason, encoderImplementation: r.encoderImplementation,
      });
    });
  }
  return { inbound, outbound };
}

function transceivers() {
  const s = session;
  if (!s || !s.sub) return [];
  return s.sub.getTransceivers().map((t) => ({
    mid: t.mid, kind: t.receiver.track && t.receiver.track.kind, direction: t.direction,
    currentDirection: t.currentDirection, track: (s.current[t.mid] || {}).track || null,
  }));
}

function senderEncodings() {
  const s = session;
  if (!s || !s.videoTx) return [];
  return (s.videoTx.sender.getParameters().encodings || []).map((e) => ({
    rid: e.rid, active: e.active, scaleResolutionDownBy: e.scaleResolutionDownBy, maxBitrate: e.maxBitrate,
  }));
}

// window.basement: state, participant, remote [{track, participant, name, kind}], stats(), events
// (every server message), plus a few handles for debugging and tests.
const B = (window.basement = {
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
  options: OPTIONS,
  stats,
  transceivers,
  senderEncodings,
  join,
  leave,
  toggleMic,
  toggleCamera,
  getGrant,
  // token-gated rooms: gate = {room, reason} while the wallet choices are shown; wallet =
  // {kind, address} once signed in; walletError = the last refusal shown in #wallet-error
  gate: null,
  wallet: null,
  walletError: null,
  walletJoin,
  signOut,
  serverInfo,
  siweMessage,
  keccak256: (text) => keccak256(new TextEncoder().encode(text)),
  toChecksumAddress,
  handle: (msg) => onMessage(msg), // feed a server message by hand (debugging)
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
$('#leave').addEventListener('click', () => leave());
$('#error-close').addEventListener('click', hideError);
$('#wallet-dev').addEventListener('click', () => walletJoin('dev'));
$('#wallet-browser').addEventListener('click', () => walletJoin('browser'));
$('#wallet-signout').addEventListener('click', () => signOut());
window.addEventListener('pagehide', () => { if (sig) sig.send({ type: 'leave' }); });

if (OPTIONS.autojoin && OPTIONS.room) {
  // A link alone must not switch on a camera and microphone (any site can open one): autojoin
  // prefills the form and puts the focus on Join; capture starts with the user's click or Enter.
  $('#join-button').focus();
  $('#join-hint').textContent = `Press Join to enter ${OPTIONS.room} with your camera and microphone.`;
}
