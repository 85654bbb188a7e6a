"""ChainWriter against real chains (embedded eth-tester and anvil) and a real redis-server."""

from __future__ import annotations

import asyncio
import json
import logging
import random

import pytest
import redis.asyncio as aioredis
from eth_account import Account

from signalling.chain import contracts
from signalling.sessions.cidstore import DirCidStore
from signalling.sessions.outbox import OutboxEntry, SqliteOutbox
from signalling.sessions.summary import hex32, summary_leaf, verify_proof
from signalling.sessions.writer import (
    ChainWriter,
    LockLost,
    RedisWriterLock,
    WriterConfig,
)
from tests.support.chainfix import ChainHandle
from tests.support.sessionfix import make_writer, synthetic_summary

RNG = random.Random(1234)


async def _writer(chain: ChainHandle, tmp_path, **cfg) -> ChainWriter:
    key = await make_writer(chain.w3, chain.deployment.session_log, chain.owner)
    cfg.setdefault("idle_wait_s", 0.05)
    cfg.setdefault("batch_wait_s", 0.05)
    return ChainWriter(chain.w3, chain.deployment.session_log, key, SqliteOutbox(tmp_path / "o.db"),
                       DirCidStore(tmp_path / "cids"), config=WriterConfig(**cfg))


async def _events(chain: ChainHandle, sid: bytes) -> int:
    c = chain.contract("SessionLog")
    single = await c.events.SessionRecorded().get_logs(from_block=0, argument_filters={"sessionId": sid})
    batched = await c.events.SessionBatched().get_logs(from_block=0, argument_filters={"sessionId": sid})
    return len(single) + len(batched)


async def test_write_once_then_duplicate_is_acked_without_second_event(chain, tmp_path):
    w = await _writer(chain, tmp_path)
    s = synthetic_summary(RNG)
    await w.outbox.put(s)
    assert await w.step() == 1
    assert await w.outbox.pending() == 0
    assert await _events(chain, s.session_id) == 1
    assert await w.store.get(s.cid) == s.document
    got = await chain.contract("SessionLog").functions.getSession(s.session_id).call()
    assert got[0] == s.room_id and got[-1] == s.cid
    # the tracker re-put it (e.g. its put timed out after succeeding): acked, not re-recorded
    await w.outbox.put(s)
    assert await w.step() == 1
    assert await w.outbox.pending() == 0
    assert await _events(chain, s.session_id) == 1


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
async def test_write_landing_after_our_look_moves_the_position_and_is_found(chain, tmp_path, batch):
    """Another writer records the session between our read of sessionCount and our send: our
    transaction names a stale position (SeqMismatch), we look again and find it."""
    s = synthetic_summary(RNG)
    other = await _writer(chain, tmp_path / "other")

    class Racing(ChainWriter):
        raced = False

        async def position(self):
            pos = await super().position()
            if not self.raced:
                self.raced = True
                assert await other.write_session(s) == "sent"
            return pos

    w = await _writer(chain, tmp_path)
    racing = Racing(chain.w3, chain.deployment.session_log, w.key, w.outbox, w.store)
    looked = 0
    real_recorded = racing.recorded

    async def counting(ids, to_block="latest"):
        nonlocal looked
        looked += 1
        return await real_recorded(ids, to_block)

    racing.recorded = counting
    if batch:
        extra = synthetic_summary(RNG)
        entries = [OutboxEntry("1", s), OutboxEntry("2", extra)]
        assert await racing.write_batch(entries) == "sent"
        assert await _events(chain, extra.session_id) == 1
    else:
        assert await racing.write_session(s) == "already"
    assert looked == 2  # the first look (up to the block it read) could not see the other write
    assert await _events(chain, s.session_id) == 1


async def test_bad_times_goes_to_dead_letter(chain, tmp_path):
    w = await _writer(chain, tmp_path)
    bad = synthetic_summary(RNG, start=2_000_000_000, end=1_000_000_000)
    good = synthetic_summary(RNG)
    await w.outbox.put(bad)
    await w.outbox.put(good)
    await w.step()
    await w.step()
    assert await w.outbox.pending() == 0
    assert [sid for sid, _ in await w.outbox.dead_letters()] == [hex32(bad.session_id)]
    assert await _events(chain, good.session_id) == 1


async def test_nonce_resyncs_after_outside_transaction(chain, tmp_path):
    w = await _writer(chain, tmp_path)
    await w.outbox.put(synthetic_summary(RNG))
    await w.step()
    # someone else spends a nonce of the same key: the writer's cached nonce is now stale
    acct = Account.from_key(w.key._account.key)
    await contracts.send(chain.w3, chain.contract("SessionLog").functions.isWriter(acct.address), acct)
    s = synthetic_summary(RNG)
    await w.outbox.put(s)
    with pytest.raises(Exception):  # noqa: B017 - nonce too low (anvil) / invalid nonce (eth-tester)
        await w.step()
    w._nonce = None  # what run() does after any error
    await w.step()
    assert await _events(chain, s.session_id) == 1


async def test_run_loop_recovers_from_stale_nonce(chain, tmp_path):
    """A nonce ahead of the chain (a dropped tx left a gap) must not wedge the writer."""
    w = await _writer(chain, tmp_path, backoff_initial_s=0.01, gap_check_s=0.2)
    await w.outbox.put(synthetic_summary(RNG))
    await w.outbox.put(synthetic_summary(RNG))
    w._nonce = 7
    await w.start()
    for _ in range(200):
        if await w.outbox.pending() == 0:
            break
        await asyncio.sleep(0.05)
    await w.stop()
    assert await w.outbox.pending() == 0


async def test_fee_cap_below_base_fee_sends_nothing(chain, tmp_path):
    w = await _writer(chain, tmp_path, max_fee_cap_wei=1)
    s = synthetic_summary(RNG)
    await w.outbox.put(s)
    with pytest.raises(Exception, match="above the cap"):
        await w.step()
    assert await w.outbox.pending() == 1
    assert not await w.is_recorded(s.session_id)


async def test_key_never_in_repr_or_logs(chain, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    w = await _writer(chain, tmp_path)
    secret = w.key._account.key.hex().removeprefix("0x")
    await w.outbox.put(synthetic_summary(RNG))
    await w.step()
    assert secret not in repr(w) and secret not in str(w.key)
    assert secret not in caplog.text.lower()
    assert w.key.address in repr(w)


async def test_batch_records_each_session_once_with_verifiable_proofs(chain, tmp_path):
    w = await _writer(chain, tmp_path, batch_size=10)
    singles = [synthetic_summary(RNG) for _ in range(7)]
    # one of them was already recorded singly: the batch must skip it on-chain
    await w.write_session(singles[0])
    for s in singles:
        await w.outbox.put(s)
    assert await w.step() == 7
    assert await w.outbox.pending() == 0
    for s in singles:
        assert await _events(chain, s.session_id) == 1
    [done] = await chain.contract("SessionLog").events.BatchRecorded().get_logs(
        from_block=0, argument_filters={"writer": w.key.address})
    manifest = json.loads(await w.store.get(done.args.manifestCid))  # the event names the manifest
    root = bytes.fromhex(manifest["batchRoot"][2:])
    assert root == done.args.batchRoot and done.args.count == 6
    assert len(manifest["sessions"]) == 6
    for entry in manifest["sessions"]:
        leaf = summary_leaf(entry)
        assert verify_proof([bytes.fromhex(p[2:]) for p in entry["proof"]], root, leaf)
    batched = await chain.contract("SessionLog").events.SessionBatched().get_logs(
        from_block=0, argument_filters={"batchRoot": root})
    assert len(batched) == 6


async def test_redis_lock_fencing(redis_server):  # noqa: F811 - fixture
    r1, r2 = aioredis.from_url(redis_server.url), aioredis.from_url(redis_server.url)
    a = RedisWriterLock(r1, "lock:w", ttl_ms=600)
    b = RedisWriterLock(r2, "lock:w", ttl_ms=600)
    t1 = await a.acquire()
    await a.check()
    waiter = asyncio.create_task(b.acquire())
    await asyncio.sleep(1.0)  # longer than the ttl: renewals keep a's lease alive
    assert not waiter.done()
    await a.check()
    await a.release()
    t2 = await asyncio.wait_for(waiter, 5)
    assert t2 > t1
    with pytest.raises(LockLost):
        await a.check()
    # b's lease is stolen (as after a long pause past expiry): b must stop sending
    await r1.set("lock:w", str(t2 + 100))
    with pytest.raises(LockLost):
        await b.check()
    await b.release()
    await r1.aclose()
    await r2.aclose()


async def test_batch_waits_for_late_arrivals_then_sends_one_batch(anvil_node, tmp_path):
    w3 = anvil_node.anvil.w3()
    try:
        key = await make_writer(w3, anvil_node.deployment.session_log, anvil_node.owner)
        w = ChainWriter(w3, anvil_node.deployment.session_log, key, SqliteOutbox(tmp_path / "o.db"),
                        DirCidStore(tmp_path / "cids"), config=WriterConfig(batch_size=5, batch_wait_s=0.6))
        early, late = [synthetic_summary(RNG) for _ in range(2)], synthetic_summary(RNG)
        bad = synthetic_summary(RNG, start=2_000_000_000, end=1_000_000_000)
        for s in [*early, bad]:
            await w.outbox.put(s)

        async def put_late():
            await asyncio.sleep(0.2)
            await w.outbox.put(late)

        t = asyncio.create_task(put_late())
        assert await w.step() == 3
        await t
        assert await w.outbox.pending() == 0
        assert [sid for sid, _ in await w.outbox.dead_letters()] == [hex32(bad.session_id)]
        log = contracts.contract_at(w3, "SessionLog", anvil_node.deployment.session_log)
        [done] = await log.events.BatchRecorded().get_logs(from_block=0, argument_filters={"writer": w.key.address})
        ids = {e["sessionId"] for e in json.loads(await w.store.get(done.args.manifestCid))["sessions"]}
        assert ids == {hex32(s.session_id) for s in [*early, late]}
    finally:
        await w3.provider.disconnect()
