import { gateError } from './errors.js';
import { api } from './http.js';
import { walletRequest } from './siwe.js';

// ---------------------------------------------------------------------------------------------
// The demo membership pass on the embedded (dev) chain, bought with the user's own wallet
// ---------------------------------------------------------------------------------------------
// The server serves its in-process chain at /rpc (info.rpc), which connectBrowserWallet has the
// wallet add. A fresh account holds no ether, so the dev faucet (info.faucet) gives it some; the
// wallet then sends MembershipPass.buy() for info.passPrice through /rpc, like any dApp purchase.

const BALANCE_OF = '0x70a08231'; // balanceOf(address)
const BUY = '0xa6f2ae3a'; // buy()

// Resolves to the purchase's transaction hash, or null when `address` already holds a pass.
export async function getDemoPass(eth, address, info, status) {
  if (!info.rpc || !info.faucet || !info.membershipPass) {
    throw gateError('This server has no dev chain endpoint (/rpc): get a pass on its chain some other way.');
  }
  if (await holdsPass(eth, address, info)) return null;
  status('Demo pass: asking the dev faucet for ether to pay with…');
  await api(info.faucet, { address });
  status('Demo pass: please confirm the purchase in your wallet…');
  const hash = await walletRequest(eth, 'eth_sendTransaction', [{
    from: address, to: info.membershipPass, value: `0x${BigInt(info.passPrice).toString(16)}`, data: BUY,
  }]);
  status(`Demo pass: waiting for transaction ${hash}…`);
  const receipt = await waitForReceipt(eth, hash);
  if (BigInt(receipt.status) !== 1n) throw gateError(`Buying the demo pass failed: transaction ${hash} reverted.`);
  if (!(await holdsPass(eth, address, info))) {
    throw gateError(`Transaction ${hash} succeeded but ${address} holds no demo pass.`);
  }
  return hash;
}

async function holdsPass(eth, address, info) {
  const data = BALANCE_OF + address.slice(2).toLowerCase().padStart(64, '0');
  return BigInt(await walletRequest(eth, 'eth_call', [{ to: info.membershipPass, data }, 'latest'])) > 0n;
}

async function waitForReceipt(eth, hash, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const receipt = await walletRequest(eth, 'eth_getTransactionReceipt', [hash]);
    if (receipt) return receipt;
    if (Date.now() > until) throw gateError(`No receipt for transaction ${hash} after ${timeoutMs / 1000} s.`);
    await new Promise((resolve) => { setTimeout(resolve, 500); });
  }
}
