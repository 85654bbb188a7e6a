import { HttpError, gateError } from './errors.js';
import { api, serverInfo } from './http.js';
import { qs } from './options.js';
import { getDemoPass } from './devchain.js';
import {
  connectBrowserWallet, signInWithBrowserWallet, signInWithConnectedWallet, signInWithDevWallet, utf8Hex, walletRequest,
} from './siwe.js';
import { B, sig } from './state.js';
import { $, hideError, logEvent } from './ui.js';

// ---------------------------------------------------------------------------------------------
// Grants for token-gated rooms: Sign-In with Ethereum (EIP-4361)
// ---------------------------------------------------------------------------------------------
// A join without a grant that a gated room refuses (`unauthorized`), or one into a room that
// requires end-to-end encryption without a passphrase (e2ee.js keysNeeded), shows the wallet
// choices in #grant-slot. Either wallet signs a SIWE message built from a fresh server nonce, POST /auth/siwe
// turns the signature into a sign-in token, POST /auth/grant turns the sign-in token into a grant
// for one room (after the server checked the room's gate: a 403 names the unmet condition), and
// the join is retried with it. The sign-in token is kept (in memory) so the next gated join needs
// no new signature. A grant in the URL (&grant=...) is used as before.

let wallet = null;        // {kind: 'dev'|'browser', address, signInToken, expiresAt (ms)}
let walletGrant = null;   // {room, grant}: what the wallet flow just obtained, used by the next join

export async function getGrant(room) {
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

// sign(text) -> the signed-in wallet's EIP-191 signature of text (e2ee.js: key announcements), or
// null when no wallet is signed in. The dev wallet's key is the server's (a public demo key): its
// announcements bind nothing the server could not sign too.
export function walletSigner() {
  if (!walletSignedIn()) return null;
  const { kind, address } = wallet;
  if (kind === 'dev') return async (text) => (await api('/api/dev-wallet/sign', { message: text })).signature;
  return (text) => walletRequest(window.ethereum, 'personal_sign', [utf8Hex(text), address]);
}

// POST /auth/grant with the sign-in token. Errors name the reason (403: the unmet condition).
async function requestGrant(room) {
  try {
    return await api('/auth/grant', { room, signInToken: wallet.signInToken });
  } catch (e) {
    if (!(e instanceof HttpError)) throw e;
    if (e.status === 403) throw gateError(`Access to “${room}” denied for ${wallet.address}: ${e.message}`, e);
    if (e.status === 401) { // the sign-in token expired or the server's key changed: sign in again
      wallet = null;
      renderWallet();
      throw gateError(`Sign-in needed for “${room}”: ${e.message}`, e);
    }
    throw e;
  }
}

// --- the wallet panel in #grant-slot ----------------------------------------------------------
let walletBusy = false;

// Show the wallet choices for `room`; `reason` is why (the server's refusal), shown as the prompt.
// `e2ee`: the room is not (known to be) gated but encrypts end to end, and the page has no keys.
export async function offerWallets(room, reason, e2ee = false) {
  B.gate = { room, reason: reason || null, e2ee };
  $('#grant-slot').hidden = false;
  $('#wallet-prompt').textContent = e2ee
    ? `“${room}” is end-to-end encrypted: sign in with a wallet, and your media key is bound to your `
      + 'address; or type the room’s passphrase above and join (not identity-bound).'
    : `“${room}” is a token-gated room: sign in with a wallet that qualifies to join.`;
  renderWallet();
  // what the room asks, in words, before anyone signs anything (GET /api/rooms/{room})
  api(`/api/rooms/${encodeURIComponent(room)}`).then((r) => {
    if (!r || !r.gated || !B.gate || B.gate.room !== room) return;
    B.gate.requirement = r.requirement;
    $('#wallet-prompt').textContent = `“${room}” is a token-gated room. To join, ${r.requirement}. `
      + 'Sign in with a wallet that qualifies.';
  }).catch(() => { /* the generic prompt stays */ });
  try {
    const info = await serverInfo();
    $('#wallet-dev').hidden = !info.embedded;
    if (info.embedded) $('#wallet-dev').title = `Sign in with the demo wallet ${info.demoWallet}, which holds the demo membership pass`;
    // the dev chain's pass can be bought with the user's own wallet (it gets ether from the faucet)
    $('#wallet-pass').hidden = !(info.embedded && info.rpc && info.faucet && room === info.demoGatedRoom);
  } catch (e) {
    setWalletError(`cannot read /api/info: ${e.message || e}`);
  }
}

function renderWallet() {
  const who = walletSignedIn() ? `Signed in as ${wallet.address} (${wallet.kind === 'dev' ? 'dev wallet' : 'browser wallet'}).` : '';
  B.wallet = walletSignedIn() ? { kind: wallet.kind, address: wallet.address } : null;
  setWalletStatus(who);
  $('#wallet-signout').hidden = !who;
  for (const id of ['#wallet-dev', '#wallet-browser', '#wallet-pass', '#wallet-signout']) $(id).disabled = walletBusy;
}

function setWalletStatus(text) {
  $('#wallet-status').textContent = text;
}

export function setWalletError(text) {
  B.walletError = text || null;
  $('#wallet-error').textContent = text || '';
  $('#wallet-error').hidden = !text;
}

// A wallet button: sign in (unless already signed in with that wallet), get a grant, join
// (`joinRoom` is join.js's join, passed in by app.js: join.js imports this module).
export async function walletJoin(kind, joinRoom) {
  if (walletBusy || sig) return;
  const room = $('#room').value.trim() || (B.gate && B.gate.room) || '';
  const name = $('#name').value;
  walletBusy = true;
  $('#join-button').disabled = true;
  setWalletError(null);
  hideError();
  renderWallet();
  try {
    if (kind === 'pass') { // a browser wallet that first buys the demo pass (embedded chain only)
      const { eth, address, info } = await connectBrowserWallet(setWalletStatus);
      const hash = await getDemoPass(eth, address, info, setWalletStatus);
      if (hash) logEvent(`bought the demo membership pass for ${address} (transaction ${hash})`);
      if (!walletSignedIn() || wallet.kind !== 'browser' || wallet.address !== address) {
        wallet = null;
        wallet = await signInWithConnectedWallet(eth, address, setWalletStatus);
        logEvent(`signed in as ${wallet.address}`);
      }
    } else if (!walletSignedIn() || wallet.kind !== kind) {
      wallet = null;
      wallet = await (kind === 'dev' ? signInWithDevWallet(setWalletStatus) : signInWithBrowserWallet(setWalletStatus));
      logEvent(`signed in as ${wallet.address}`);
    }
    renderWallet();
    setWalletStatus(`Signed in as ${wallet.address}: asking for a grant to “${room}”…`);
    walletGrant = { room, grant: (await requestGrant(room)).grant };
    walletBusy = false;
    await joinRoom(room, name);
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

export function signOut() {
  wallet = null;
  setWalletError(null);
  renderWallet();
}

// After a join: forget the gate prompt; the panel stays (showing who is signed in) only when
// a wallet is signed in, for the next join.
export function walletJoined() {
  B.gate = null;
  setWalletError(null);
  $('#wallet-prompt').textContent = '';
  $('#grant-slot').hidden = !walletSignedIn();
  renderWallet();
}
