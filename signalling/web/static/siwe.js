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
  const { eth, address } = await connectBrowserWallet(status);
  return signInWithConnectedWallet(eth, address, status);
}

// The wallet's account, with the wallet on the server's chain: switched to it, or (the embedded
// chain, which no wallet knows yet) added from the server's /rpc first.
export async function connectBrowserWallet(status) {
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
    let unknown = false;
    try {
      await eth.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: `0x${want.toString(16)}` }] });
    } catch (e) {
      unknown = !!e && e.code === 4902; // the wallet does not know the chain
    }
    if (unknown && info.rpc) {
      status(`Browser wallet: asking it to add this server's dev chain ${want}…`);
      try {
        await eth.request({ method: 'wallet_addEthereumChain', params: [devChainParams(info)] });
      } catch { /* refused or unsupported: explained below */ }
    }
    have = BigInt(await walletRequest(eth, 'eth_chainId'));
  }
  if (have !== want) {
    throw gateError(`Wrong network: your wallet is on chain ${have}, but this server checks room access on chain ${want}`
      + `${info.embedded ? ' (its built-in demo chain)' : ''}. Switch your wallet to chain ${want}`
      + `${info.embedded ? ', or use the dev wallet' : ''}, and try again.`);
  }
  return { eth, address, info };
}

// EIP-3085 parameters for the embedded chain, served by this server at info.rpc (/rpc).
export function devChainParams(info) {
  return {
    chainId: `0x${BigInt(info.chainId).toString(16)}`,
    chainName: `Basement dev chain (${location.host})`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: [new URL(info.rpc, location.href).href],
  };
}

export async function signInWithConnectedWallet(eth, address, status) {
  const message = await freshSiweMessage(address);
  status(`Browser wallet: please sign the sign-in message for ${address}…`);
  const signature = await walletRequest(eth, 'personal_sign', [utf8Hex(message), address]);
  status('Browser wallet: checking the signature…');
  return signIn('browser', message, signature);
}

export async function walletRequest(eth, method, params) {
  try {
    return await eth.request(params === undefined ? { method } : { method, params });
  } catch (e) {
    if (e && e.code === 4001) throw gateError(`You declined the wallet request (${method}).`);
    throw gateError(`Wallet error (${method}): ${(e && e.message) || e}`);
  }
}

export function utf8Hex(text) {
  return '0x' + [...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, '0')).join('');
}
