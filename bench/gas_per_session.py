"""Gas per session on anvil: one recordSession each vs recordBatch with batch sizes 1/10/50.

usage: python -m bench.gas_per_session [--rounds 3]
Starts its own anvil (contracts/node_modules), deploys SessionLog from contracts/artifacts, records
synthetic summaries (the same shape the SessionTracker produces: 59-char CIDv1) and prints a
markdown table of receipt gasUsed (total transaction gas, including the 21000 base and calldata).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics

from signalling.chain import contracts
from signalling.chain.evm import Anvil
from signalling.sessions.summary import build_document, make_summary, new_session_id
from signalling.sessions.writer import batch_manifest


def _summary(rng: random.Random):
    people = ["0x" + rng.randbytes(20).hex() for _ in range(rng.randint(2, 8))]
    start = 1_700_000_000 + rng.randrange(10**6)
    events = [{"atMs": start * 1000 + i, "type": "joined", "identity": p} for i, p in enumerate(people)]
    events += [{"atMs": start * 1000 + 600_000 + i, "type": "left", "identity": p} for i, p in enumerate(people)]
    media = {p: {"bytes": rng.randrange(10**9), "packets": rng.randrange(10**6)} for p in people}
    doc = build_document(session_id=new_session_id("bench", start, rng.randbytes(16)), room="bench",
                         started_at=start, ended_at=start + 600, events=events, tracks=[], media=media)
    return make_summary(doc)


async def measure(rounds: int) -> list[tuple[str, int, float, int]]:
    rng = random.Random(7)
    rows = []
    with Anvil() as anvil:
        w3 = anvil.w3()
        try:
            owner = (await w3.eth.accounts)[0]
            log_c = await contracts.deploy(w3, "SessionLog", owner, sender=owner)
            await contracts.send(w3, log_c.functions.setWriter(owner, True), owner)
            n_single = 10 * rounds
            gas = []
            for _ in range(n_single):
                r = await contracts.send(w3, log_c.functions.recordSession(*_summary(rng).contract_args()), owner)
                gas.append(r["gasUsed"])
            rows.append(("recordSession", 1, statistics.mean(gas), n_single))
            for size in (1, 10, 50):
                per = []
                for _ in range(rounds):
                    sums = [_summary(rng) for _ in range(size)]
                    root = bytes.fromhex(batch_manifest(sums)["batchRoot"][2:])
                    r = await contracts.send(w3, log_c.functions.recordBatch(root, [s.session_id for s in sums]),
                                             owner)
                    per.append(r["gasUsed"] / size)
                rows.append(("recordBatch", size, statistics.mean(per), rounds))
        finally:
            await w3.provider.disconnect()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = asyncio.run(measure(args.rounds))
    base = rows[0][2]
    print("| method | sessions per tx | gas per session | vs recordSession | txs measured |")
    print("|---|---:|---:|---:|---:|")
    for method, size, g, n in rows:
        print(f"| {method} | {size} | {g:,.0f} | {g / base:.2f}x | {n} |")


if __name__ == "__main__":
    main()
