"""Issue #17's cost goal, checked on real anvil in OP-stack mode: ≤ 5,000 gas per session at a batch of 50."""

from __future__ import annotations

from bench.gas_per_session import GOAL_BATCH, GOAL_GAS_PER_SESSION, measure

FEE = {"l1_base_fee_gwei": 10.0, "blob_base_fee_gwei": 1.0, "base_fee_scalar": 1368, "blob_base_fee_scalar": 810949}


async def test_batched_session_costs_at_most_5000_gas_at_50():
    rows = await measure(1, "optimism", FEE)
    single = next(r for r in rows if r.method == "recordSession")
    batches = {r.batch: r for r in rows if r.method == "recordBatch"}
    assert batches[GOAL_BATCH].gas_per_session <= GOAL_GAS_PER_SESSION, batches[GOAL_BATCH]
    # what a batch amortises: every step up in size is cheaper per session, and far below a full record
    sizes = sorted(batches)
    assert all(batches[a].gas_per_session > batches[b].gas_per_session for a, b in zip(sizes, sizes[1:]))
    assert single.gas_per_session > 20 * batches[GOAL_BATCH].gas_per_session
    # the L1 data an OP-stack chain posts shrinks the same way (calldata is ids, not storage)
    assert batches[GOAL_BATCH].l1_gas_per_session < single.l1_gas_per_session / 5
