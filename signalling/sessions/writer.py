"""ChainWriter: drains the Outbox into SessionLog, each session recorded exactly once.

Exactly-once rests on three layers, so that no crash point can duplicate or lose a session:
1. the outbox entry is acked only after the write is confirmed (a crash before that = redo);
2. SessionLog is a compare-and-append log: every record names the position it appends at, which must
   equal `sessionCount`. Before sending, the writer reads `sessionCount` at block B, then looks its
   ids up in the SessionRecorded/SessionBatched events up to B and leaves out every id it finds. A
   record that lands after B (another writer's, or an earlier transaction of ours that was still
   pending) moves `sessionCount`, so ours reverts with SeqMismatch and we look again. A redo after
   "sent but not acked" therefore finds the ids and only acks them;
3. the outbox holds the same id twice at most harmlessly: a batch takes each id once.
The contract keeps no per-session storage for a batch, which is what makes a batched session cost
~3,000 gas instead of ~48,000 (docs/sessions.md).

Transactions are signed here with the configured key (never sent to the node, never logged); the
nonce is tracked locally and re-read from the node's `pending` count after any error. Fees are
EIP-1559 with a hard cap on maxFeePerGas: when the base fee is above the cap we wait instead of
overpaying. RPC failures (node down, timeouts) back off exponentially and retry forever.

Batch mode (`batch_size > 1`): up to N summaries (or whatever arrived within `batch_wait_s`) go in one
`recordBatch(seq, root, ids, manifestCid)`, root = Merkle root of the summary leaves
(`summary.summary_leaf`). The batch manifest with every leaf and proof is put in the CID store (and so
on IPFS when configured) BEFORE sending, and the event carries its CID.

Cluster: one writer per SessionLog, enforced with `RedisWriterLock` (SET NX PX + fencing token from
INCR); the lock is re-checked right before every send and a writer that lost it stops sending. The
lock saves reverted transactions and nonce fights; (2) is what rules out duplicates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eth_account import Account
from web3 import AsyncWeb3

from signalling.chain import contracts
from signalling.sessions.cidstore import CidStore, open_store
from signalling.sessions.outbox import Outbox, OutboxEntry
from signalling.sessions.summary import Summary, hex32, merkle_proof, merkle_root, summary_leaf

log = logging.getLogger(__name__)

GWEI = 10**9
MAX_BATCH_SIZE = 200  # a manifest entry is ~1 KiB and a manifest must fit one 256 KiB block
MAX_APPEND_ATTEMPTS = 8  # SeqMismatch retries in a row before backing off as for any error
RECORDED_QUERY_IDS = 100  # ids per eth_getLogs topic list
# reverts that mean another record landed between our look and our write (so: look again)
LANDED_SINCE = ("SeqMismatch", "DuplicateSession", "DuplicateBatch")


class WriterKey:
    """A private key that cannot leak through repr/str/logging."""

    def __init__(self, hex_key: str) -> None:
        self._account = Account.from_key(hex_key)

    @property
    def address(self) -> str:
        return self._account.address

    def sign(self, tx: dict[str, Any]) -> Any:
        return self._account.sign_transaction(tx)

    def __repr__(self) -> str:
        return f"WriterKey(<redacted>, address={self.address})"

    __str__ = __repr__


class PermanentWriteError(Exception):
    """The chain will never accept this summary (e.g. BadTimes); it goes to the dead-letter list."""


class LockLost(Exception):
    """Another writer holds the lock now; stop sending."""


class FeeTooHigh(Exception):
    pass


# ---------------------------------------------------------------- writer locks

class WriterLock(Protocol):
    async def acquire(self) -> int: ...

    async def check(self) -> None: ...

    async def release(self) -> None: ...


class LocalLock:
    """One process, one writer: nothing to coordinate."""

    token = 0

    async def acquire(self) -> int:
        return 0

    async def check(self) -> None:
        return None

    async def release(self) -> None:
        return None


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisWriterLock:
    """Lease `key` = fencing token (from INCR `key:fence`), SET NX PX, renewed every ttl/3.

    The token grows with every acquisition, so a writer that paused past its lease and came back
    sees a different (larger) token in `key` and knows it lost. `check()` verifies both the local
    lease deadline and the value in Redis right before a transaction is sent.
    """

    def __init__(self, redis, key: str, *, ttl_ms: int = 10_000) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = ttl_ms
        self.token: int | None = None
        self._deadline = 0.0
        self._renewer: asyncio.Task | None = None

    async def acquire(self) -> int:
        if self._renewer is not None:
            self._renewer.cancel()
        while True:
            token = await self.redis.incr(self.key + ":fence")
            start = time.monotonic()
            if await self.redis.set(self.key, str(token), nx=True, px=self.ttl_ms):
                self.token = token
                self._deadline = start + self.ttl_ms / 1000
                self._renewer = asyncio.create_task(self._renew_loop())
                log.info("writer lock %s acquired with fencing token %d", self.key, token)
                return token
            await asyncio.sleep(self.ttl_ms / 3000)

    async def _renew_loop(self) -> None:
        while self.token is not None:
            await asyncio.sleep(self.ttl_ms / 3000)
            start = time.monotonic()
            try:
                ok = await self.redis.eval(_RENEW, 1, self.key, str(self.token), self.ttl_ms)
            except Exception:  # Redis unreachable: the lease runs out by itself, check() will see it
                log.warning("writer lock renewal failed", exc_info=True)
                continue
            if not ok:
                log.error("writer lock %s lost (token %s)", self.key, self.token)
                self.token = None
                return
            self._deadline = start + self.ttl_ms / 1000

    async def check(self) -> None:
        # Keep a margin so a send that starts now finishes well inside the lease.
        if self.token is None or time.monotonic() > self._deadline - self.ttl_ms / 4000:
            raise LockLost(self.key)
        held = await self.redis.get(self.key)
        if held is None or int(held) != self.token:
            self.token = None
            raise LockLost(self.key)

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        if self.token is not None:
            try:
                await self.redis.eval(_RELEASE, 1, self.key, str(self.token))
            finally:
                self.token = None


# ---------------------------------------------------------------- the writer

@dataclass
class WriterConfig:
    confirmations: int = 1
    max_fee_cap_wei: int = 500 * GWEI
    priority_fee_wei: int | None = None  # None: ask the node (eth_maxPriorityFeePerGas)
    gas_margin: float = 1.2
    batch_size: int = 1  # 1 = one recordSession per session; >1 = recordBatch
    batch_wait_s: float = 2.0
    idle_wait_s: float = 1.0
    receipt_timeout_s: float = 120.0
    poll_s: float = 0.05
    gap_check_s: float = 1.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0


class ChainWriter:
    def __init__(self, w3: AsyncWeb3, session_log: str, key: WriterKey | str, outbox: Outbox, store: CidStore,
                 *, config: WriterConfig | None = None, lock: WriterLock | None = None) -> None:
        self.w3 = w3
        self.key = key if isinstance(key, WriterKey) else WriterKey(key)
        self.outbox = outbox
        self.store = store
        self.config = config or WriterConfig()
        self.lock: WriterLock = lock or LocalLock()
        self.contract = contracts.contract_at(w3, "SessionLog", session_log)
        if not 1 <= self.config.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE} (a batch manifest is one IPFS block)")
        self._deployed_block: int | None = None
        self._nonce: int | None = None
        self._chain_id: int | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.written = 0  # sessions this writer confirmed (including ones found already recorded)
        self.backlog = 0  # outbox entries not yet on-chain, as last counted (at most once a second)
        self.holds_lock = False
        self._counted_at = 0.0

    def __repr__(self) -> str:
        return f"ChainWriter(session_log={self.contract.address}, key={self.key!r}, outbox={self.outbox!r})"

    # ------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Run the writer as a task of the current loop (all-in-one server)."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self.run(), name="chain-writer")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the write in flight (bounded by timeout_s), then stop. Unacked entries stay queued."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout_s)
            except TimeoutError:
                pass
            self._task = None

    async def run(self) -> None:
        delay = self.config.backoff_initial_s
        held = False
        store_start = getattr(self.store, "start", None)
        if store_start is not None:
            await store_start()  # e.g. IpfsMirroredStore's retries of documents IPFS has not confirmed
        try:
            while not self._stop.is_set():
                try:
                    await self._count_backlog()
                    if not held:
                        await self.lock.acquire()
                        held = self.holds_lock = True
                    await self.step()
                    delay = self.config.backoff_initial_s
                except LockLost:
                    held = self.holds_lock = False
                    log.error("lost the writer lock; stopped sending until it is re-acquired")
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self._nonce = None  # the node is the truth after any error
                    log.warning("chain write failed (%s: %s); retrying in %.1fs", type(e).__name__,
                                str(e)[:300], delay)
                    await self._sleep(delay * (0.75 + random.random() / 2))
                    delay = min(delay * 2, self.config.backoff_max_s)
        finally:
            if held:
                await self.lock.release()
            store_close = getattr(self.store, "close", None)
            if store_close is not None:
                await store_close()

    async def _count_backlog(self) -> None:
        """Refresh `backlog` (a metric) at most once a second; a failure leaves the last count."""
        if time.monotonic() - self._counted_at < 1.0:
            return
        self._counted_at = time.monotonic()
        try:
            self.backlog = await self.outbox.pending()
        except Exception as e:  # the outbox briefly away: the write path reports it
            log.debug("outbox count failed: %s", e)

    async def _sleep(self, s: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), s)
        except TimeoutError:
            pass

    async def step(self) -> int:
        """Claim and write one unit of work (a session, or a batch). Returns the number of entries done."""
        n = max(1, self.config.batch_size)
        entries = await self.outbox.claim(n, wait_s=self.config.idle_wait_s)
        if not entries:
            return 0
        if n > 1:
            deadline = time.monotonic() + self.config.batch_wait_s
            while len(entries) < n and time.monotonic() < deadline and not self._stop.is_set():
                # Claim the full n again: SQLite hands out the oldest rows (those we hold included),
                # Redis our own pending ones first; new entries are whatever we have not seen yet.
                more = await self.outbox.claim(n, wait_s=min(0.2, max(0.0, deadline - time.monotonic())))
                seen = {e.entry_id for e in entries}
                fresh = [e for e in more if e.entry_id not in seen]
                entries += fresh[: n - len(entries)]
                if not fresh:
                    await self._sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            # recordBatch does not check times; keep the rule recordSession enforces.
            for bad in [e for e in entries if e.summary.ended_at < e.summary.started_at]:
                await self.outbox.dead_letter(bad, "BadTimes: endedAt < startedAt")
                entries.remove(bad)
            if entries:
                await self.write_batch(entries)
                await self.outbox.ack(entries)
        else:
            entry = entries[0]
            try:
                await self.write_session(entry.summary)
            except PermanentWriteError as e:
                log.error("session %s rejected for good: %s", hex32(entry.summary.session_id), e)
                await self.outbox.dead_letter(entry, str(e))
                return 1
            await self.outbox.ack([entry])
        self.written += len(entries)
        return len(entries)

    # ------------------------------------------------ where the log stands

    async def position(self) -> tuple[int, int]:
        """(sessionCount, block): the position the next record must name, as of one block."""
        block = await self.w3.eth.block_number
        count = await self.contract.functions.sessionCount().call(block_identifier=block)
        return int(count), int(block)

    async def recorded(self, session_ids: Sequence[bytes], to_block: int | str = "latest") -> set[bytes]:
        """The ids among `session_ids` with a SessionRecorded or SessionBatched event up to `to_block`."""
        if self._deployed_block is None:
            self._deployed_block = int(await self.contract.functions.deployedBlock().call())
        found: set[bytes] = set()
        ids = list(dict.fromkeys(session_ids))
        for i in range(0, len(ids), RECORDED_QUERY_IDS):
            flt = {"sessionId": ids[i:i + RECORDED_QUERY_IDS]}
            for event in (self.contract.events.SessionRecorded, self.contract.events.SessionBatched):
                logs = await event().get_logs(from_block=self._deployed_block, to_block=to_block,
                                              argument_filters=flt)
                found.update(bytes(e.args["sessionId"]) for e in logs)
        return found

    async def is_recorded(self, session_id: bytes) -> bool:
        return session_id in await self.recorded([session_id])

    # ------------------------------------------------ single sessions

    async def write_session(self, summary: Summary) -> str:
        """Make sure `summary` is on-chain. Returns "sent" or "already"."""
        await self.store.put(summary.document)  # the CID must resolve before the chain points at it

        async def record(seq: int, todo: list[Summary]) -> tuple[Any, str]:
            return (self.contract.functions.recordSession(seq, *summary.contract_args()),
                    f"session {hex32(summary.session_id)[:14]}")

        return await self._append({summary.session_id: summary}, record)

    # ------------------------------------------------ batches

    async def write_batch(self, entries: Sequence[OutboxEntry]) -> str:
        summaries = {e.summary.session_id: e.summary for e in entries}  # the outbox may hold duplicates
        for s in summaries.values():
            await self.store.put(s.document)

        async def record(seq: int, todo: list[Summary]) -> tuple[Any, str]:
            manifest = batch_manifest(todo)
            # The manifest is a document like the summaries: stored (and mirrored to IPFS) before
            # the chain points at it, so a confirmed batch always has its proofs.
            manifest_cid = await self.store.put(json.dumps(manifest, sort_keys=True, indent=1).encode())
            root = bytes.fromhex(manifest["batchRoot"][2:])
            return (self.contract.functions.recordBatch(seq, root, [s.session_id for s in todo], manifest_cid),
                    f"batch {manifest['batchRoot'][:14]} with {len(todo)} sessions")

        return await self._append(summaries, record)

    # ------------------------------------------------ compare-and-append

    async def _append(self, summaries: dict[bytes, Summary],
                      record: Callable[[int, list[Summary]], Awaitable[tuple[Any, str]]]) -> str:
        """Append the summaries the chain does not hold yet at the current position: "sent", or
        "already" when it holds them all. `record(seq, todo)` builds the call (and names it for the log).

        Read the position at block B, look the ids up in the events up to B, append the rest. A
        revert (in the estimate or in the block) means something landed since we looked: look again."""
        for _ in range(MAX_APPEND_ATTEMPTS):
            seq, block = await self.position()
            done = await self.recorded(list(summaries), block)
            todo = [s for sid, s in summaries.items() if sid not in done]
            if not todo:
                return "already"
            fn, what = await record(seq, todo)
            try:
                gas = await fn.estimate_gas({"from": self.key.address})
            except Exception as e:
                name = contracts.revert_name(e)
                if name in LANDED_SINCE:
                    continue
                if name == "BadTimes":
                    raise PermanentWriteError("BadTimes: endedAt < startedAt") from e
                raise
            receipt = await self._send(fn, gas)
            if receipt["status"] == 1:
                log.info("%s recorded at %d in block %d", what, seq, receipt["blockNumber"])
                return "sent"
        raise RuntimeError(f"sessionCount moved under us {MAX_APPEND_ATTEMPTS} times: another writer is racing")

    # ------------------------------------------------ transactions

    async def _fees(self) -> tuple[int, int]:
        block = await self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas") or 0)
        tip = self.config.priority_fee_wei
        if tip is None:
            try:
                tip = int(await self.w3.eth.max_priority_fee)
            except Exception:  # nodes without eth_maxPriorityFeePerGas
                tip = GWEI
        cap = self.config.max_fee_cap_wei
        if base + min(tip, 1) > cap:
            raise FeeTooHigh(f"base fee {base} wei is above the cap {cap} wei; waiting")
        max_fee = min(2 * base + tip, cap)
        return max_fee, min(tip, max_fee - base)

    async def _next_nonce(self) -> int:
        if self._nonce is None:
            self._nonce = await self.w3.eth.get_transaction_count(self.key.address, "pending")
        return self._nonce

    async def _send(self, fn: Any, gas: int) -> Any:
        if self._chain_id is None:
            self._chain_id = await self.w3.eth.chain_id
        max_fee, tip = await self._fees()
        nonce = await self._next_nonce()
        tx = await fn.build_transaction({
            "from": self.key.address, "nonce": nonce, "gas": int(gas * self.config.gas_margin),
            "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip, "chainId": self._chain_id,
        })
        signed = self.key.sign(tx)
        await self.lock.check()
        try:
            await self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as e:
            # The node may have taken it before the error reached us (e.g. a timeout): if it knows
            # the hash, wait for it like any other; otherwise let run() resync and retry.
            if "already known" not in str(e).lower():
                raise
        self._nonce = nonce + 1
        receipt = await self._wait_receipt(signed.hash, nonce)
        await self._wait_confirmations(receipt)
        return receipt

    async def _wait_receipt(self, tx_hash: bytes, nonce: int) -> Any:
        deadline = time.monotonic() + self.config.receipt_timeout_s
        next_gap_check = time.monotonic() + self.config.gap_check_s
        while True:
            try:
                receipt = await self.w3.eth.get_transaction_receipt(tx_hash)
                if receipt is not None:
                    return receipt
            except Exception as e:
                if type(e).__name__ != "TransactionNotFound":
                    # Node briefly unreachable: keep waiting; the tx may well be mined meanwhile.
                    log.debug("receipt poll failed: %s", e)
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"no receipt for {tx_hash.hex()} after {self.config.receipt_timeout_s}s")
            if now > next_gap_check:
                next_gap_check = now + self.config.gap_check_s
                # If the node's executable nonce never reached ours, the tx sits behind a gap (or was
                # dropped) and will not be mined: resync and resend instead of waiting forever.
                try:
                    pending = await self.w3.eth.get_transaction_count(self.key.address, "pending")
                except Exception:
                    pending = None
                if pending is not None and pending <= nonce:
                    raise RuntimeError(f"tx nonce {nonce} is not executable (node pending nonce {pending})")
            await asyncio.sleep(self.config.poll_s)

    async def _wait_confirmations(self, receipt: Any) -> None:
        need = self.config.confirmations
        deadline = time.monotonic() + self.config.receipt_timeout_s
        while need > 1:
            head = await self.w3.eth.block_number
            if head - receipt["blockNumber"] + 1 >= need:
                # A reorg could have dropped it while we waited: the receipt must still be there.
                again = await self.w3.eth.get_transaction_receipt(receipt["transactionHash"])
                if again is None or again["blockHash"] != receipt["blockHash"]:
                    raise RuntimeError("transaction was reorganised out; retrying")
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{need} confirmations not reached")
            await asyncio.sleep(self.config.poll_s * 4)


class WriterCollector:
    """`basement_sessions_*` of a ChainWriter: the outbox backlog (sessions finished but not yet
    on-chain: in a cluster, also what the media nodes put while no writer runs), sessions confirmed,
    and whether this process holds the writer lock."""

    def __init__(self, writer: ChainWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        w = self.writer
        yield GaugeMetricFamily("basement_sessions_outbox_pending", "finished sessions not yet on-chain",
                                value=w.backlog)
        yield CounterMetricFamily("basement_sessions_recorded", "sessions this writer confirmed on-chain",
                                  value=w.written)
        yield GaugeMetricFamily("basement_sessions_writer_active", "1 while this process holds the writer lock",
                                value=int(w.holds_lock))


def batch_manifest(summaries: Sequence[Summary]) -> dict[str, Any]:
    """Everything needed to prove each session against the batch root, off-chain."""
    fields = [s.fields() for s in summaries]
    leaves = [summary_leaf(f) for f in fields]
    root = merkle_root(leaves)
    return {
        "version": 1,
        "batchRoot": hex32(root),
        "leafEncoding": "keccak256(abi.encode(sessionId,roomId,startedAt,endedAt,peakParticipants,"
                        "participantCount,participantsRoot,mediaBytes,mediaPackets,keccak256(bytes(cid))))",
        "sessions": [
            {**f, "leaf": hex32(leaf), "proof": [hex32(p) for p in merkle_proof(leaves, leaf)]}
            for f, leaf in zip(fields, leaves, strict=True)
        ],
    }


# ---------------------------------------------------------------- construction helpers

def http_w3(rpc_url: str, timeout_s: float = 10.0) -> AsyncWeb3:
    return AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(rpc_url, cache_allowed_requests=True,
                                                 request_kwargs={"timeout": timeout_s}))


def from_settings(settings, *, w3: AsyncWeb3 | None = None, outbox: Outbox | None = None,
                  store: CidStore | None = None, config: WriterConfig | None = None,
                  key: str | None = None, session_log: str | None = None) -> ChainWriter:
    """Writer for a Settings object: rpc_url (or the given w3, e.g. EmbeddedChain.w3), writer_key,
    session_log_address, data_dir (outbox + CID store), redis_url (Redis outbox + writer lock).

    `key` / `session_log` override the settings (the embedded chain brings its own dev writer key
    and deployment address)."""
    from signalling.sessions.outbox import outbox_for_settings

    key = key or settings.writer_key
    session_log = session_log or settings.session_log_address
    if not key or not session_log:
        raise ValueError("writer_key and session_log_address are required for the chain writer")
    w3 = w3 or http_w3(settings.rpc_url)
    lock: WriterLock = LocalLock()
    if settings.redis_url:
        from signalling.cluster.redisconn import target_from_settings

        lock = RedisWriterLock(target_from_settings(settings).client(),
                               f"basement:chainwriter:{session_log.lower()}")
    store = store or store_for_settings(settings)
    return ChainWriter(w3, session_log, key, outbox or outbox_for_settings(settings), store, config=config, lock=lock)


def store_for_settings(settings, directory: str | None = None) -> CidStore:
    """The writer's CID store: `directory` (default <data_dir>/cids), mirrored to IPFS and pinned on
    a pinning service as the settings say."""
    return open_store(directory or str(Path(settings.data_dir) / "cids"), settings.ipfs_api,
                      settings.ipfs_publish_timeout_s, pin_service=settings.ipfs_pin_service,
                      pin_token=settings.ipfs_pin_token)
