"""Gas per recorded session on anvil: one recordSession each vs recordBatch at 1/10/50/100 per batch.

usage: python -m bench.gas_per_session [--rounds 3] [--network optimism] [--json out.json]

Starts its own anvil (contracts/node_modules; `--network optimism` runs anvil's OP-stack mode), deploys
SessionLog from contracts/artifacts and records synthetic summaries the way ChainWriter does: a key that
signs locally, `sessionCount` read first, the batch manifest's CID in the call. Prints a markdown table:
receipt gasUsed per session (the whole transaction: the 21,000 base, calldata, execution) and the L1
data an OP-stack chain would post for it.

anvil's optimism mode executes like the L2 but neither charges nor reports an L1 fee (no `l1Fee` in
receipts, no GasPriceOracle predeploy), so the L1 side is computed here with the Ecotone rule over the
signed transaction bytes: L1 gas = 4 per zero byte + 16 per other byte, and the fee
  l1Fee = L1 gas × (baseFeeScalar × l1BaseFee + blobBaseFeeScalar × blobBaseFee / 16) / 1e6
with the scalars and prices given on the command line (illustrative defaults: baseFeeScalar 1368,
blobBaseFeeScalar 810949, an L1 base fee of 10 gwei and a blob base fee of 1 gwei; a chain's own scalars
are readable from its L1Block predeploy, `baseFeeScalar()` and `blobBaseFeeScalar()`). Fjord and later
estimate the size with FastLZ instead; random 32-byte ids and hashes barely compress, so for this
payload the two rules are close.
The goal (issue #17) is ≤ 5,000 gas per session at a batch of 50; the exit status is 1 when it is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
from dataclasses import asdict, dataclass

from eth_account import Account

from signalling.chain import contracts
from signalling.chain.evm import Anvil
from signalling.sessions.cidstore import cid_of
from signalling.sessions.summary import build_document, make_summary, new_session_id
from signalling.sessions.writer import batch_manifest

GOAL_GAS_PER_SESSION = 5_000
GOAL_BATCH = 50
BATCH_SIZES = (1, 10, 50, 100)


@dataclass
class Row:
    method: str
    batch: int
    gas_per_session: float
    tx_bytes_per_session: float
    l1_gas_per_session: float
    l1_fee_gwei_per_session: float
    txs: int


def _summary(rng: random.Random):
    people = ["0x" + rng.randbytes(20).hex() for _ in range(rng.randint(2, 8))]
    start = 1_700_000_000 + rng.randrange(10**6)
    events = [{"atMs": start * 1000 + i, "type": "joined", "identity": p} for i, p in enumerate(people)]
    events += [{"atMs": start * 1000 + 600_000 + i, "type": "left", "identity": p} for i, p in enumerate(people)]
    media = {p: {"bytes": rng.randrange(10**9), "packets": rng.randrange(10**6)} for p in people}
    doc = build_document(session_id=new_session_id("bench", start, rng.randbytes(16)), room="bench",
                         started_at=start, ended_at=start + 600, events=events, tracks=[], media=media)
    return make_summary(doc)


def l1_gas(raw: bytes) -> int:
    """Ecotone's L1 data gas of a signed transaction: 4 per zero byte, 16 per other byte."""
    zeros = raw.count(0)
    return 4 * zeros + 16 * (len(raw) - zeros)


async def _send(w3, fn, acct) -> tuple[dict, bytes]:
    tx = await fn.build_transaction({"from": acct.address,
                                     "nonce": await w3.eth.get_transaction_count(acct.address, "pending")})
    signed = acct.sign_transaction(tx)
    await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(signed.hash, timeout=30, poll_latency=0.01)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction reverted: {receipt}")
    return receipt, bytes(signed.raw_transaction)


async def measure(rounds: int, network: str, fee: dict[str, float]) -> list[Row]:
    rng = random.Random(7)
    rows: list[Row] = []

    def fee_gwei(gas: float) -> float:
        per_gas_wei = (fee["base_fee_scalar"] * fee["l1_base_fee_gwei"] * 1e9
                       + fee["blob_base_fee_scalar"] * fee["blob_base_fee_gwei"] * 1e9 / 16)
        return gas * per_gas_wei / 1e6 / 1e9

    def row(method: str, batch: int, samples: list[tuple[dict, bytes]]) -> Row:
        g = statistics.mean(r["gasUsed"] / batch for r, _ in samples)
        b = statistics.mean(len(raw) / batch for _, raw in samples)
        lg = statistics.mean(l1_gas(raw) / batch for _, raw in samples)
        return Row(method, batch, g, b, lg, fee_gwei(lg), len(samples))

    with Anvil(network=network) as anvil:
        w3 = anvil.w3()
        try:
            owner = (await w3.eth.accounts)[0]
            log_c = await contracts.deploy(w3, "SessionLog", owner, sender=owner)
            writer = Account.create()
            await contracts.send(w3, log_c.functions.setWriter(writer.address, True), owner)
            await contracts.transfer_eth(w3, owner, writer.address, 10**20)
            singles = []
            for _ in range(10 * rounds):
                seq = await log_c.functions.sessionCount().call()
                fn = log_c.functions.recordSession(seq, *_summary(rng).contract_args())
                singles.append(await _send(w3, fn, writer))
            rows.append(row("recordSession", 1, singles))
            for size in BATCH_SIZES:
                samples = []
                for _ in range(rounds):
                    manifest = batch_manifest([_summary(rng) for _ in range(size)])
                    cid = cid_of(json.dumps(manifest, sort_keys=True, indent=1).encode())
                    ids = [bytes.fromhex(s["sessionId"][2:]) for s in manifest["sessions"]]
                    seq = await log_c.functions.sessionCount().call()
                    fn = log_c.functions.recordBatch(seq, bytes.fromhex(manifest["batchRoot"][2:]), ids, cid)
                    samples.append(await _send(w3, fn, writer))
                rows.append(row("recordBatch", size, samples))
        finally:
            await w3.provider.disconnect()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="transactions per batch size (10× for recordSession)")
    ap.add_argument("--network", default="", choices=["", "optimism"], help="anvil network family")
    ap.add_argument("--l1-base-fee-gwei", type=float, default=10.0)
    ap.add_argument("--blob-base-fee-gwei", type=float, default=1.0)
    ap.add_argument("--base-fee-scalar", type=float, default=1368, help="Ecotone baseFeeScalar")
    ap.add_argument("--blob-base-fee-scalar", type=float, default=810949, help="Ecotone blobBaseFeeScalar")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    fee = {"l1_base_fee_gwei": args.l1_base_fee_gwei, "blob_base_fee_gwei": args.blob_base_fee_gwei,
           "base_fee_scalar": args.base_fee_scalar, "blob_base_fee_scalar": args.blob_base_fee_scalar}
    rows = asyncio.run(measure(args.rounds, args.network, fee))
    base = rows[0].gas_per_session
    print(f"anvil network: {args.network or 'ethereum'}; L1 fee parameters: {fee}")
    print("| method | sessions per tx | gas per session | vs recordSession | tx bytes per session "
          "| L1 data gas per session | L1 fee per session (gwei) | txs measured |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.method} | {r.batch} | {r.gas_per_session:,.0f} | {r.gas_per_session / base:.3f}x "
              f"| {r.tx_bytes_per_session:,.0f} | {r.l1_gas_per_session:,.0f} | {r.l1_fee_gwei_per_session:,.0f} "
              f"| {r.txs} |")
    [goal] = [r for r in rows if r.method == "recordBatch" and r.batch == GOAL_BATCH]
    met = goal.gas_per_session <= GOAL_GAS_PER_SESSION
    print(f"goal ≤ {GOAL_GAS_PER_SESSION:,} gas per session at a batch of {GOAL_BATCH}: "
          f"{goal.gas_per_session:,.0f} — {'met' if met else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"network": args.network or "ethereum", "fee": fee, "rows": [asdict(r) for r in rows],
                       "goal": {"gas_per_session": GOAL_GAS_PER_SESSION, "batch": GOAL_BATCH, "met": met}}, f,
                      indent=1)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
