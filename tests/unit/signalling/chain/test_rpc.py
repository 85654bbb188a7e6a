"""The sans-IO parts of the embedded chain's /rpc: wire formatting, gas limits of raw transactions,
the EVM time budget. The endpoint itself is exercised over HTTP in tests/e2e/chain/test_dev_chain_rpc.py."""

from __future__ import annotations

import pytest
from eth_account import Account
from hexbytes import HexBytes

from signalling.chain.rpc import CpuBudget, RpcError, raw_gas_limit, wire


def test_wire_turns_tester_values_into_json_rpc():
    block = {"number": 11, "hash": HexBytes(b"\x01" * 32), "logsBloom": 1, "gasUsedRatio": [0.5],
             "transactions": [], "nonce": "0x0000000000000000", "miner": None, "ok": True}
    out = wire(block)
    assert out["number"] == "0xb" and out["hash"] == "0x" + "01" * 32
    assert out["logsBloom"] == "0x" + "00" * 255 + "01"  # 256 bytes of data, not a quantity
    assert out["gasUsedRatio"] == [0.5] and out["nonce"] == "0x0000000000000000"
    assert out["miner"] is None and out["ok"] is True and out["transactions"] == []
    assert wire(0) == "0x0" and wire(b"") == "0x" and wire([1, b"\x02"]) == ["0x1", "0x02"]


@pytest.mark.parametrize("fields", [
    {"gasPrice": 10**9},
    {"gasPrice": 10**9, "accessList": [], "type": 1},
    {"maxFeePerGas": 10**9, "maxPriorityFeePerGas": 1, "type": 2},
])
def test_gas_limit_of_every_accepted_transaction_type(fields):
    acct = Account.create()
    tx = {"to": acct.address, "value": 1, "gas": 123_456, "nonce": 7, "chainId": 5, **fields}
    assert raw_gas_limit(bytes(acct.sign_transaction(tx).raw_transaction)) == 123_456


@pytest.mark.parametrize("raw, text", [
    (b"", "empty"),
    (b"\x03" + b"\xc0", "type 3"),
    (b"\x04\xc0", "type 4"),
    (b"\x02\xc0", "not an RLP-encoded"),  # no fields at all
    (b"\xf8\xff", "not an RLP-encoded"),  # truncated
    (b"\x02\xc5\xc0\xc0\xc0\xc0\xc0", "not an RLP-encoded"),  # gas is a list
])
def test_hostile_raw_transactions_are_refused_not_raised(raw, text):
    with pytest.raises(RpcError) as info:
        raw_gas_limit(raw)
    assert text in info.value.message and info.value.code == -32602


def test_cpu_budget_is_charged_after_the_fact_and_refills_at_its_share():
    now = [0.0]
    budget = CpuBudget(0.1, burst_s=0.5, clock=lambda: now[0])
    assert budget.wait() == 0.0
    budget.charge(0.45)
    assert budget.wait() == 0.0  # 0.05 s of credit left: one more call may start
    budget.charge(0.25)  # ... and overdraw
    wait = budget.wait()
    assert wait == pytest.approx(2.0 + 0.001)  # 0.2 s of debt at 10 % of wall time
    now[0] += 1.9
    assert budget.wait() > 0
    now[0] += 0.2
    assert budget.wait() == 0.0
    now[0] += 100
    budget.charge(0)
    assert budget.credit == 0.5  # never more than the burst
