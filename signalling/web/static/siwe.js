import { HttpError, gateError } from './errors.js';
import { api, serverInfo } from './http.js';
import { toChecksumAddress } from './keccak.js';

// --- EIP-4361 ---------------------------------------------------------------------------------
// Built exactly like signalling/access/siwe.py SiweMessage.to_text(): the server parses it strictly.
export function siweMessage({ domain, address, uri, chainId, nonce, issuedAt, expirationTime,
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
  return { kind, address: r.address, signInToken: r.signInToken, expiresAt: Date.parse(r.expiresAt) || Date.now() + 3_600_000 };
}

// Sign-in flows: both resolve to {kind, address, signInToken, expiresAt (ms)}; `status(text)`
// reports progress (the wallet panel shows it).

// The embedded chain's built-in demo wallet: the server signs with its (public) demo key.
export async function signInWithDevWallet(status) {
  const info = await serverInfo();
  if (!info.embedded || !info.demoWallet) throw gateError('This server has no dev wallet (it runs against a real chain): use a browser wallet.');
  status('Dev wallet: signing in…');
  const message = await freshSiweMessage(info.demoWallet);
  const signed = await api('/api/dev-wallet/sign', { message });
  return signIn('dev', message, signed.signature);
}

// An EIP-1193 wallet (window.ethereum): accounts, chain check, personal_sign.
export async function signInWithBrowserWallet(status) {
  const eth = window.ethereum;
  if (!eth || typeof eth.request !== 'function') {
    throw gateError('No browser wallet found (window.ethereum is missing): install or unlock one, or use the dev wallet.');
  }
  const info = await serverInfo();
  status('Browser wallet: waiting for your wallet to share an account…');
  const accounts = await walletRequest(eth, 'eth_requestAccounts');
  if (!Array.isArray(accounts) || !accounts.length) throw gateError('The wallet did not share any account.');
  const address = toChecksumAddress(accounts[0]);
  const want = BigInt(info.chainId);
  let have = BigInt(await walletRequest(eth, 'eth_chainId'));
  if (have !== want) {
    status(`Browser wallet: asking it to switch to chain ${want}…`);
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
  status(`Browser wallet: please sign the sign-in message for ${address}…`);
  const signature = await walletRequest(eth, 'personal_sign', [utf8Hex(message), address]);
  status('Browser wallet: checking the signature…');
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
