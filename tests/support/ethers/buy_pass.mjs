// An ethers.js wallet against a JSON-RPC URL: read the chain, buy a MembershipPass, wait for the
// receipt and read the pass back. ethers parses every answer strictly (quantities, data, addresses,
// hashes, blocks, receipts) and batches its calls, so this run fails on what a dApp built on ethers
// would choke on; what ethers tolerates (a receipt without logsBloom) the test checks itself.
//
//   node buy_pass.mjs <rpc url> <private key> <pass address> <price in wei>
// Prints one JSON line: what it saw.
import { Contract, JsonRpcProvider, Wallet } from 'ethers';

const [url, key, passAddress, price] = process.argv.slice(2);
const provider = new JsonRpcProvider(url);
const wallet = new Wallet(key, provider);
const pass = new Contract(passAddress, [
  'function buy() payable returns (uint256)',
  'function balanceOf(address) view returns (uint256)',
  'function sold() view returns (uint256)',
  'event Transfer(address indexed from, address indexed to, uint256 indexed tokenId)',
], wallet);

const network = await provider.getNetwork();
const [block, fees, balance] = await Promise.all([
  provider.getBlock('latest', true), provider.getFeeData(), provider.getBalance(wallet.address),
]);
const before = await pass.balanceOf(wallet.address);
const tx = await pass.buy({ value: BigInt(price) });
const receipt = await tx.wait();
const [transfer] = receipt.logs.map((l) => pass.interface.parseLog(l)).filter((l) => l && l.name === 'Transfer');
const mined = await provider.getTransaction(tx.hash);
const history = await provider.send('eth_feeHistory', ['0x3', 'latest', [50]]);
console.log(JSON.stringify({
  chainId: network.chainId.toString(),
  blockNumber: block.number,
  baseFee: block.baseFeePerGas === null ? null : block.baseFeePerGas.toString(),
  maxFeePerGas: fees.maxFeePerGas === null ? null : fees.maxFeePerGas.toString(),
  balance: balance.toString(),
  before: before.toString(),
  after: (await pass.balanceOf(wallet.address)).toString(),
  status: receipt.status,
  gasUsed: receipt.gasUsed.toString(),
  logsBloom: receipt.logsBloom,
  to: transfer ? transfer.args.to : null,
  tokenId: transfer ? transfer.args.tokenId.toString() : null,
  minedValue: mined.value.toString(),
  historyBlocks: history.gasUsedRatio.length,
}));
provider.destroy();
