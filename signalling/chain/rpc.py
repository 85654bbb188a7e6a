"""`POST /rpc`: the embedded chain over Ethereum JSON-RPC, so a browser wallet (MetaMask) can join it.

The embedded chain (eth-tester + py-evm) lives inside the server process, with no node a wallet could
talk to. This endpoint is that node, for the methods a wallet needs: chain facts, balances, nonces,
calls, gas estimates, fees, raw transactions and their receipts. Nothing else is served:

- Transactions come in signed (`eth_sendRawTransaction`) only. `eth_sendTransaction`, `eth_sign`,
  `personal_*` and the tester's `evm_*` would act with the chain's unlocked dev accounts, one of
  which owns every contract here; `eth_accounts` therefore answers `[]`. Those accounts' keys are
  public (as are the dev writer's and the demo wallet's), so they may not send signed ones either.
- Every transaction is a block eth-tester keeps in memory: a client may send a few a minute, and
  the process takes at most MAX_TRANSACTIONS.
- The EVM runs on the server's event loop, beside the media of every room. So one call may use at
  most `gas_cap` gas (about 0.2 s of py-evm on the cheapest opcodes, measured here), a raw
  transaction with a higher gas limit is refused, and all calls together may take at most
  `cpu_share` of the loop's time on average (charged by measured time, after each call, and for
  each step of a gas estimate). Past it, and past a client's request rate, the answer is HTTP 429
  with error -32005 and Retry-After (in a batch: -32005 for the calls that did not run).
- Bodies are bounded (size, nesting, batch length) and parsed by `safejson`.

eth-tester answers in Python values (ints, bytes, dicts with some snake_case keys); `wire` and
`normalized` turn them into JSON-RPC quantities, data and the spec's objects, and `eth_feeHistory`
is built here: strict clients (web3.py, ethers, MetaMask) insist on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import rlp
from aiohttp import web
from eth_account import Account
from prometheus_client.core import CounterMetricFamily

from signalling import safejson
from signalling.access.throttle import RateLimiter, request_client
from signalling.chain.contracts import decode_revert, revert_bytes
from signalling.httpjson import BodyError, read_body

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024  # a raw transaction deploying a 24 KiB contract is ~50 KB of hex
MAX_BATCH = 100  # ethers' JsonRpcProvider batches up to 100 calls
MAX_RAW_TX_BYTES = 64 * 1024
MAX_FEE_HISTORY_BLOCKS = 128
# per process, /rpc and faucet together: eth-tester keeps every block in memory, and finds a
# transaction by walking them all (≈ 0.2 ms a block here)
MAX_TRANSACTIONS = 2_000
TRANSACTIONS_PER_MIN = 12  # per client address, in bursts of 10
MAX_FEE_ROWS = 4096  # blocks whose fee history row is kept
MAX_CLIENT_BUDGETS = 10_000  # clients whose EVM time is tracked (least recently seen dropped)
ZERO_ADDRESS = "0x" + "00" * 20
NONCE_ERROR = re.compile(r"nonce: Expected (\d+), but got (\d+)")

# What is forwarded to the chain; everything else is -32601. Answered here: see `_local`.
FORWARDED = frozenset({
    "web3_clientVersion", "eth_blockNumber", "eth_getBalance", "eth_getCode", "eth_getStorageAt",
    "eth_getTransactionCount", "eth_call", "eth_estimateGas", "eth_gasPrice", "eth_maxPriorityFeePerGas",
    "eth_feeHistory", "eth_getBlockByNumber", "eth_getBlockByHash", "eth_sendRawTransaction",
    "eth_getTransactionReceipt", "eth_getTransactionByHash", "eth_syncing",
})
LOCAL = frozenset({"eth_chainId", "net_version", "net_listening", "eth_accounts"})
METHODS = FORWARDED | LOCAL
# A call object's fields (eth_call, eth_estimateGas); others are refused rather than guessed at.
CALL_FIELDS = frozenset({"from", "to", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value",
                         "data", "input", "nonce", "type", "accessList", "chainId"})

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL = -32700, -32600, -32601, -32602, -32603
SERVER_ERROR, LIMIT_EXCEEDED, EXECUTION_REVERTED = -32000, -32005, 3


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


class Busy(Exception):
    """Over a budget: the whole HTTP request is answered 429, `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message, self.retry_after = message, retry_after


class CpuBudget:
    """At most `share` of wall time spent in the EVM, on average, with `burst_s` of credit.

    Charged after the fact with the time each call really took, so a cheap `balanceOf` costs
    microseconds and a loop that burns its gas cap costs what it held the event loop for. A call is
    refused while the credit is below zero.
    """

    def __init__(self, share: float, burst_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.share, self.burst_s, self.clock = share, burst_s, clock
        self.credit = burst_s
        self.at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.credit = min(self.burst_s, self.credit + (now - self.at) * self.share)
        self.at = now

    def wait(self) -> float:
        """0.0 when a call may start, else the seconds until it may."""
        self._refill()
        return 0.0 if self.credit > 0 else -self.credit / self.share + 0.001

    def charge(self, seconds: float) -> None:
        self._refill()
        self.credit -= seconds


class RpcStats:
    """Counters for basement_rpc_requests{method, outcome}; method is one of METHODS or 'other'."""

    OUTCOMES = ("ok", "error", "reverted", "refused")

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.evm_seconds = 0.0

    def count(self, method: str, outcome: str) -> None:
        self.requests[(method if method in METHODS else "other", outcome)] += 1


class RpcCollector:
    def __init__(self, stats: RpcStats) -> None:
        self.stats = stats

    def collect(self) -> Iterable[CounterMetricFamily]:
        fam = CounterMetricFamily("basement_rpc_requests", "JSON-RPC calls to the embedded chain's /rpc, by method "
                                  "and outcome", labels=["method", "outcome"])
        for (method, outcome), n in sorted(self.stats.requests.items()):
            fam.add_metric([method, outcome], n)
        yield fam
        yield CounterMetricFamily("basement_rpc_evm_seconds", "event-loop time /rpc spent in the embedded chain "
                                  "(EVM, block and transaction lookups)", value=self.stats.evm_seconds)


def wire(value: Any, key: str = "") -> Any:
    """eth-tester's Python values as JSON-RPC: ints as hex quantities, bytes as hex data, the bloom
    as 256 bytes of data (it comes as an int)."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        if key == "logsBloom":
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): wire(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire(v, key) for v in value]
    return str(value)


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _transaction(tx: dict[str, Any]) -> dict[str, Any]:
    out = {_camel(k): v for k, v in tx.items()}
    if "data" in out:
        out.setdefault("input", out.pop("data"))
    if isinstance(out.get("accessList"), list):
        out["accessList"] = [{_camel(k): v for k, v in entry.items()} if isinstance(entry, dict) else entry
                             for entry in out["accessList"]]
    return out


def _bloom(logs: list[dict[str, Any]]) -> str:
    from eth_bloom import BloomFilter

    bloom = BloomFilter()
    for entry in logs:
        bloom.add(bytes.fromhex(str(entry.get("address", "0x"))[2:]))
        for topic in entry.get("topics", []):
            bloom.add(bytes.fromhex(str(topic)[2:]))
    return "0x" + int(bloom).to_bytes(256, "big").hex()


def normalized(method: str, result: Any) -> Any:
    """Wired objects in the spec's shape: eth-tester gives full transactions snake_case keys (and
    `data`, `y_parity`), and receipts a `state_root` but no `logsBloom`, which strict clients refuse."""
    if not isinstance(result, dict):
        return result
    if method in ("eth_getBlockByNumber", "eth_getBlockByHash"):
        txs = result.get("transactions")
        if txs and isinstance(txs[0], dict):
            result["transactions"] = [_transaction(t) for t in txs]
        return result
    if method == "eth_getTransactionByHash":
        return _transaction(result)
    if method == "eth_getTransactionReceipt":
        out = {_camel(k): v for k, v in result.items() if k not in ("state_root", "stateRoot")}
        out["logs"] = [{_camel(k): v for k, v in entry.items() if k != "type"} for entry in out.get("logs") or []]
        out.setdefault("logsBloom", _bloom(out["logs"]))
        return out
    return result


def next_base_fee(base: int, gas_used: int, gas_limit: int) -> int:
    """EIP-1559: the base fee of the block after one with this base fee and use."""
    target = gas_limit // 2
    if not target or gas_used == target:
        return base
    if gas_used > target:
        return base + max(1, base * (gas_used - target) // target // 8)
    return base - base * (target - gas_used) // target // 8


def _quantity(value: Any, what: str) -> int:
    if isinstance(value, str) and value.startswith("0x") and 2 < len(value) <= 66:
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise RpcError(INVALID_PARAMS, f"{what} must be a hex quantity (0x...), got {str(value)[:40]!r}")


def raw_gas_limit(raw: bytes) -> int:
    """The gas limit of a signed transaction (legacy, EIP-2930 or EIP-1559); RpcError otherwise."""
    try:
        if raw and raw[0] >= 0xC0:
            fields, index = rlp.decode(raw), 2
        elif raw and raw[0] in (1, 2):
            fields, index = rlp.decode(raw[1:]), 3 if raw[0] == 1 else 4
        else:
            kind = f"type {raw[0]}" if raw else "empty"
            raise RpcError(INVALID_PARAMS, f"transaction {kind} is not accepted here (legacy, 1 and 2 are)")
        gas = fields[index]
        if not isinstance(gas, bytes) or len(gas) > 32:
            raise ValueError("gas limit is not a scalar")
        return int.from_bytes(gas, "big")
    except RpcError:
        raise
    except Exception as e:  # noqa: BLE001 - rlp raises a zoo of types on hostile bytes
        raise RpcError(INVALID_PARAMS, f"not an RLP-encoded signed transaction: {type(e).__name__}") from None


def _revert_error(exc: BaseException) -> RpcError:
    """A revert as clients expect it: code 3, the reason in the message, the ABI-encoded data."""
    from eth_abi import encode as abi_encode
    from eth_utils import function_signature_to_4byte_selector

    raw = revert_bytes(exc)
    rev = decode_revert(exc)
    if raw is None and rev is not None and rev.name == "Error" and str(rev.args[0] if rev.args else "").startswith(
            "Out of gas"):
        # eth-tester reports running out of gas as a revert; nodes say it as an error of their own
        return RpcError(SERVER_ERROR, f"out of gas ({rev.args[0]})")
    if raw is None and rev is not None and rev.name == "Error" and rev.args:
        raw = function_signature_to_4byte_selector("Error(string)") + abi_encode(["string"], [str(rev.args[0])])
    if rev is None or not rev.name:
        reason = ""
    elif rev.name == "Error" and rev.args:
        reason = f": {rev.args[0]}"
    else:
        reason = f": {rev.name}{tuple(rev.args) if rev.args else ''}"
    return RpcError(EXECUTION_REVERTED, f"execution reverted{reason}", "0x" + raw.hex() if raw else None)


class DevChainRpc:
    """The JSON-RPC endpoint of one `EmbeddedChain`. `handle` is sans-HTTP: bytes in, status + bytes out."""

    def __init__(self, chain: Any, *, gas_cap: int = 1_000_000, rate_per_s: float = 20.0, cpu_share: float = 0.1,
                 on_transaction: Callable[[], None] | None = None, stats: RpcStats | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.chain = chain
        self.gas_cap = gas_cap
        self.on_transaction = on_transaction
        self.stats = stats or RpcStats()
        self.clients = RateLimiter(rate_per_s * 60, burst=max(1, math.ceil(rate_per_s * 5)), clock=clock)
        self.cpu = CpuBudget(cpu_share, burst_s=max(0.25, cpu_share * 5), clock=clock)
        self._client_cpu: OrderedDict[str, CpuBudget] = OrderedDict()
        # each transaction is a block eth-tester keeps in memory: a wallet sends a few, not a stream
        self.client_transactions = RateLimiter(TRANSACTIONS_PER_MIN, burst=10, clock=clock)
        self._call: Callable[..., Any] | None = None
        self._caller: str | None = None
        self._own: frozenset[str] | None = None
        self._fee_rows: dict[int, tuple[int, int, int, list[int]]] = {}  # block number -> fee history row
        self.transactions = 0  # taken through /rpc and the faucet (each is a block kept in memory)

    def full(self) -> str | None:
        """Why this chain takes no more transactions (through /rpc or the faucet), or None."""
        if self.transactions < MAX_TRANSACTIONS:
            return None
        return (f"this dev chain took its maximum of {MAX_TRANSACTIONS} transactions (it lives in the server's "
                "memory): restart the server for a fresh chain")

    def took_transaction(self) -> None:
        """A transaction was mined (through /rpc or the faucet): count it, tell `on_transaction`."""
        self.transactions += 1
        if self.on_transaction is not None:
            self.on_transaction()

    async def _own_accounts(self) -> frozenset[str]:
        if self._own is None:
            self._own = frozenset({*await self.chain.dev_accounts(), self.chain.writer.address,
                                   self.chain.demo.address})
        return self._own

    async def handle(self, body: bytes, client: str) -> tuple[int, bytes | None, float]:
        """(HTTP status, JSON body or None for notifications only, Retry-After seconds or 0)."""
        try:
            payload = safejson.loads(body, max_bytes=MAX_BODY_BYTES, max_depth=8)
        except safejson.JsonError as e:
            self.stats.count("other", "error")
            return 200, _dump(_error(None, RpcError(PARSE_ERROR, f"parse error: {e}"))), 0.0
        batch = isinstance(payload, list)
        calls = payload if batch else [payload]
        if batch and not 1 <= len(calls) <= MAX_BATCH:
            self.stats.count("other", "error")
            why = "empty batch" if not calls else f"batch of {len(calls)} calls; at most {MAX_BATCH}"
            return 200, _dump(_error(None, RpcError(INVALID_REQUEST, why))), 0.0
        answers: list[dict[str, Any]] = []
        busy: Busy | None = None
        for i, call in enumerate(calls):
            if i:
                await asyncio.sleep(0)  # a batch shares the event loop with media between its calls
            if busy is None:
                try:
                    answer = await self._one(call, client)
                except Busy as b:
                    if not batch:
                        self.stats.count(_method_of(call), "refused")
                        return 429, _dump(_error(_id_of(call), RpcError(LIMIT_EXCEEDED, b.message))), b.retry_after
                    busy = b  # what ran keeps its answer; this call and the rest are refused
            if busy is not None:
                self.stats.count(_method_of(call), "refused")
                if isinstance(call, dict) and "id" in call:
                    answers.append(_error(_id_of(call), RpcError(LIMIT_EXCEEDED, busy.message)))
                continue
            if answer is not None:
                answers.append(answer)
        if not answers:
            return 204, None, 0.0
        return 200, _dump(answers if batch else answers[0]), 0.0

    async def _one(self, call: Any, client: str) -> dict[str, Any] | None:
        if not isinstance(call, dict) or call.get("jsonrpc") != "2.0" or not isinstance(call.get("method"), str):
            self.stats.count("other", "error")
            return _error(None, RpcError(INVALID_REQUEST, "not a JSON-RPC 2.0 request object "
                                                          "({jsonrpc: '2.0', method, params, id})"))
        notification = "id" not in call
        ident = call.get("id")
        if not _good_id(ident):
            self.stats.count("other", "error")
            return _error(None, RpcError(INVALID_REQUEST, "id must be a string, a number or null"))
        method, params = call["method"], call.get("params", [])
        wait = self.clients.take(client)
        if wait:
            raise Busy(f"rate limit: too many requests from this client; retry in {wait:.1f} s", wait)
        if method == "eth_sendRawTransaction":
            wait = self.client_transactions.take(client)
            if wait:
                raise Busy(f"rate limit: too many transactions from this client; retry in {wait:.1f} s", wait)
        try:
            if method not in METHODS:
                raise RpcError(METHOD_NOT_FOUND, f"method {method[:64]!r} is not available on this dev chain's "
                                                 "endpoint (it serves what a wallet needs; transactions come signed)")
            if not isinstance(params, list) or len(params) > 4:
                raise RpcError(INVALID_PARAMS, "params must be an array of at most 4 values")
            result = await self._dispatch(method, params, client)
        except RpcError as e:
            self.stats.count(method, "reverted" if e.code == EXECUTION_REVERTED else "error")
            return None if notification else _error(ident, e)
        self.stats.count(method, "ok")
        return None if notification else {"jsonrpc": "2.0", "id": ident, "result": result}

    async def _dispatch(self, method: str, params: list[Any], client: str) -> Any:
        chain_id = self.chain.deployment.chain_id
        if method == "eth_chainId":
            return hex(chain_id)
        if method == "net_version":
            return str(chain_id)  # eth-tester says "1": wallets would take it for mainnet
        if method == "net_listening":
            return True
        if method == "eth_accounts":
            return []  # the node's unlocked accounts are not anyone's to use
        params = await self._checked(method, params)
        if method == "eth_estimateGas":
            return hex(await self._estimate(params[0], client))
        if method == "eth_feeHistory":
            return await self._fee_history(params, client)
        if method == "eth_sendRawTransaction":
            full = self.full()
            if full:
                raise RpcError(SERVER_ERROR, full)
            result = await self._executed(method, params, client)
            self.took_transaction()
            return wire(result)
        # every forwarded call is metered: eth-tester finds a transaction by walking every block back from the head
        return normalized(method, wire(await self._executed(method, params, client)))

    async def _block(self, number: Any, full: bool) -> dict[str, Any]:
        block = normalized("eth_getBlockByNumber", wire(await self._forward("eth_getBlockByNumber", [number, full])))
        if not isinstance(block, dict):
            raise RpcError(INVALID_PARAMS, f"no block {number}")
        return block

    async def _fee_history(self, params: list[Any], client: str) -> dict[str, Any]:
        """eth_feeHistory as geth answers it (eth-tester's has no rewards, one base fee too few and
        the wrong oldest block): per block its base fee, gas used ratio and the tips at the asked
        percentiles, plus the next block's base fee. Each block is read once (blocks never change),
        metered, with the loop free between blocks."""
        if not params:
            raise RpcError(INVALID_PARAMS, "eth_feeHistory takes blockCount, newestBlock and reward percentiles")
        count = int(params[0], 16)
        percentiles = params[2] if len(params) > 2 and params[2] is not None else []
        if not isinstance(percentiles, list) or len(percentiles) > 100 or not all(
                isinstance(p, int | float) and not isinstance(p, bool) and 0 <= p <= 100 for p in percentiles) or (
                percentiles != sorted(percentiles)):
            raise RpcError(INVALID_PARAMS, "reward percentiles must be at most 100 ascending numbers in [0, 100]")
        newest_tag = params[1] if len(params) > 1 else "latest"
        if newest_tag == "pending":
            newest_tag = "latest"  # eth-tester's pending block is not a block one can read back
        async with self._metered(client):
            newest = int((await self._block(newest_tag, False))["number"], 16)
        oldest = max(0, newest - count + 1)
        base_fees, ratios, rewards = [], [], []
        row: tuple[int, int, int, list[int]] = (0, 0, 0, [])
        for number in range(oldest, newest + 1):
            row = self._fee_rows.get(number) or await self._fee_row(number, client)
            base, used, limit, tips = row
            base_fees.append(hex(base))
            ratios.append(used / limit if limit else 0.0)
            if percentiles:
                rewards.append([hex(tips[min(len(tips) - 1, int(len(tips) * p / 100))] if tips else 0)
                                for p in percentiles])
            await asyncio.sleep(0)
        base, used, limit, _ = row
        base_fees.append(hex(next_base_fee(base, used, limit)))
        out: dict[str, Any] = {"oldestBlock": hex(oldest), "baseFeePerGas": base_fees, "gasUsedRatio": ratios}
        if percentiles:
            out["reward"] = rewards
        return out

    async def _fee_row(self, number: int, client: str) -> tuple[int, int, int, list[int]]:
        async with self._metered(client):
            block = await self._block(hex(number), True)
        base = int(block.get("baseFeePerGas") or "0x0", 16)
        row = (base, int(block["gasUsed"], 16), int(block["gasLimit"], 16),
               sorted(_tip(tx, base) for tx in block.get("transactions", [])))
        self._fee_rows[number] = row
        while len(self._fee_rows) > MAX_FEE_ROWS:
            self._fee_rows.pop(next(iter(self._fee_rows)))
        return row

    async def _executed(self, method: str, params: list[Any], client: str) -> Any:
        """A forwarded call (the EVM, or a lookup eth-tester may make linear in the chain), metered."""
        async with self._metered(client):
            return await self._forward(method, params)

    @contextlib.asynccontextmanager
    async def _metered(self, client: str) -> AsyncIterator[None]:
        """Work that may take real time (the EVM, a fee history over many blocks): refused while the
        time budget is spent (the server's, or this client's half of it, so one client cannot keep
        everyone else out), and charged what it took."""
        own = self._client_cpu.pop(client, None) or CpuBudget(self.cpu.share / 2, self.cpu.burst_s / 2,
                                                                clock=self.cpu.clock)
        self._client_cpu[client] = own
        while len(self._client_cpu) > MAX_CLIENT_BUDGETS:  # the oldest: a lost budget only forgives
            self._client_cpu.popitem(last=False)
        wait = max(self.cpu.wait(), own.wait())
        if wait:
            raise Busy(f"this dev chain's EVM time budget is spent; retry in {wait:.1f} s", wait)
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.cpu.charge(spent)
            own.charge(spent)
            self.stats.evm_seconds += spent

    async def _forward(self, method: str, params: list[Any]) -> Any:
        if self._call is None:
            # the provider with web3's eth-tester middleware: hex params in, Python values out
            w3 = self.chain.w3
            self._call = await self.chain.provider.request_func(w3, w3.middleware_onion)
        try:
            response = await self._call(method, params)
        except Exception as e:  # noqa: BLE001 - eth-tester's errors become JSON-RPC errors, never a 500
            raise self._failure(method, e) from None
        if "error" in response:
            err = response["error"]
            message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            raise RpcError(SERVER_ERROR, message[:500])
        return response.get("result")

    async def _estimate(self, tx: dict[str, Any], client: str) -> int:
        """The least gas (within 1/64) with which `tx` succeeds, searched with calls at most `gas` each.

        Not eth-tester's estimate: py-evm searches up to the block gas limit whatever gas the caller
        gives, so a loop would hold the event loop for 30M gas (seconds). Like geth: the call must
        succeed at the top (its revert is the answer otherwise), then bisect."""
        top = int(tx["gas"], 16)
        await self._executed("eth_call", [tx, "latest"], client)  # raises the revert, or out of gas, at the cap
        low, high = 21_000 - 1, top
        while high - low > max(1, high // 64):
            mid = (low + high) // 2
            try:  # each step is checked against and charged to the time budget
                await self._executed("eth_call", [{**tx, "gas": hex(mid)}, "latest"], client)
                high = mid
            except RpcError:
                # it succeeded at the top: out of gas, a sub-call starved of gas, or below the
                # intrinsic gas (which py-evm refuses as invalid) all mean "more"
                low = mid
        return high

    async def _checked(self, method: str, params: list[Any]) -> list[Any]:
        """Bound what the EVM will be asked to do; refuse what it would choke on."""
        if method in ("eth_call", "eth_estimateGas"):
            if not params or not isinstance(params[0], dict):
                raise RpcError(INVALID_PARAMS, f"{method} needs a call object as its first parameter")
            tx = dict(params[0])
            unknown = set(tx) - CALL_FIELDS
            if unknown:
                raise RpcError(INVALID_PARAMS, f"unknown call field(s): {', '.join(sorted(unknown))[:200]}")
            if "input" in tx:
                tx.setdefault("data", tx.pop("input"))
            if tx.get("from") is None:
                # eth-tester makes a call's sender pay for its gas (nodes do not): a call without a
                # sender comes from a funded tester account that owns nothing
                if self._caller is None:
                    self._caller = (await self.chain.dev_accounts())[-1]
                tx["from"] = self._caller
            gas = _quantity(tx["gas"], "gas") if tx.get("gas") is not None else self.gas_cap
            tx["gas"] = hex(min(gas, self.gas_cap))
            return [tx, *params[1:2]] if method == "eth_call" else [tx]
        if method == "eth_sendRawTransaction":
            if len(params) != 1 or not isinstance(params[0], str) or not params[0].startswith("0x"):
                raise RpcError(INVALID_PARAMS, "eth_sendRawTransaction takes one hex string")
            if len(params[0]) > 2 + 2 * MAX_RAW_TX_BYTES:
                raise RpcError(INVALID_PARAMS, f"transaction larger than {MAX_RAW_TX_BYTES} bytes")
            try:
                raw = bytes.fromhex(params[0][2:])
            except ValueError:
                raise RpcError(INVALID_PARAMS, "eth_sendRawTransaction: not hex") from None
            gas = raw_gas_limit(raw)
            if gas > self.gas_cap:
                raise RpcError(SERVER_ERROR, f"gas limit {gas} is above this dev chain's cap of {self.gas_cap} per "
                                             "transaction (embedded_rpc_gas_cap)")
            try:
                sender = Account.recover_transaction(raw)
            except Exception:  # noqa: BLE001 - a signature that does not recover
                raise RpcError(INVALID_PARAMS, "the transaction's signature does not recover a sender") from None
            if sender in await self._own_accounts():
                # their keys are public (eth-tester's, the dev writer's, the demo wallet's): signed
                # with one, anyone could act as the deployer that owns every contract here
                raise RpcError(SERVER_ERROR, f"sender {sender} is one of this dev chain's own accounts, whose keys "
                                             "are public: send from your own wallet")
            return params
        if method == "eth_feeHistory" and params:
            count = params[0] if isinstance(params[0], int) else _quantity(params[0], "blockCount")
            return [hex(max(1, min(count, MAX_FEE_HISTORY_BLOCKS))), *params[1:]]
        return params

    def _failure(self, method: str, exc: BaseException) -> RpcError:
        from eth_tester.exceptions import TransactionFailed
        from eth_tester.exceptions import ValidationError as TesterInvalid
        from eth_utils.exceptions import ValidationError as EvmInvalid

        if isinstance(exc, TransactionFailed):
            return _revert_error(exc)
        text = str(exc)[:300]
        nonce = NONCE_ERROR.search(text)
        if nonce:  # said as geth says it: wallets and libraries match these words
            expected, got = int(nonce.group(1)), int(nonce.group(2))
            return RpcError(SERVER_ERROR, f"nonce too {'low' if got < expected else 'high'}: next nonce {expected}, "
                                          f"tx nonce {got}")
        if "cannot afford" in text:
            return RpcError(SERVER_ERROR, f"insufficient funds for gas * price + value ({text}); this chain charges "
                                          "calls for gas too: call without 'from', or fund the account (faucet)")
        if isinstance(exc, TesterInvalid | EvmInvalid | ValueError | TypeError | KeyError):
            # bad nonce, malformed fields: the sender's problem, said as geth says it
            return RpcError(SERVER_ERROR if method == "eth_sendRawTransaction" else INVALID_PARAMS,
                            f"{method}: {text}")
        log.warning("embedded chain: %s failed: %s", method, type(exc).__name__, exc_info=exc)
        return RpcError(INTERNAL, f"{method} failed on the embedded chain ({type(exc).__name__})")


def _tip(tx: dict[str, Any], base: int) -> int:
    """What a transaction paid its block's producer per gas (EIP-1559's effective priority fee)."""
    if tx.get("maxPriorityFeePerGas") is not None:
        return max(0, min(int(tx["maxPriorityFeePerGas"], 16), int(tx["maxFeePerGas"], 16) - base))
    return max(0, int(tx.get("gasPrice") or "0x0", 16) - base)


def _good_id(ident: Any) -> bool:
    return ident is None or (isinstance(ident, str) and len(ident) <= 256) or (
        isinstance(ident, int | float) and not isinstance(ident, bool) and math.isfinite(ident))


def _id_of(call: Any) -> Any:
    return call.get("id") if isinstance(call, dict) and _good_id(call.get("id")) else None


def _method_of(call: Any) -> str:
    method = call.get("method") if isinstance(call, dict) else None
    return method if isinstance(method, str) else "other"


def _error(ident: Any, err: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "error": err.to_json()}


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


RPC_KEY = web.AppKey("dev_chain_rpc", DevChainRpc)


async def rpc_handler(request: web.Request) -> web.StreamResponse:
    rpc = request.app[RPC_KEY]
    try:
        body = await read_body(request, max_bytes=MAX_BODY_BYTES)
    except BodyError as e:
        return web.json_response(_error(None, RpcError(INVALID_REQUEST, e.reason)), status=e.status)
    status, out, retry = await rpc.handle(body, request_client(request))
    headers = {"Retry-After": str(max(1, math.ceil(retry)))} if retry else None
    if out is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, body=out, content_type="application/json", headers=headers)


def mount_rpc(app: web.Application, rpc: DevChainRpc) -> None:
    app[RPC_KEY] = rpc
    app.router.add_post("/rpc", rpc_handler)
