"""Outbox durability: SQLite across a SIGKILLed writer process, Redis across a dead consumer and server."""

from __future__ import annotations

import asyncio
import random

import redis.asyncio as aioredis

from signalling.sessions.outbox import RedisOutbox, open_outbox
from signalling.sessions.summary import hex32
from tests.support.sessionfix import read_ids, spawn_outbox_worker, synthetic_summary

RNG = random.Random(99)



async def test_redis_pending_reclaimed_after_consumer_dies(redis_server):  # noqa: F811 - fixture
    ob = RedisOutbox.from_url(redis_server.url, consumer="survivor", min_idle_ms=300)
    summaries = [synthetic_summary(RNG) for _ in range(6)]
    for s in summaries:
        await ob.put(s)
    proc = await spawn_outbox_worker("claim", redis_server.url, "4")
    doomed_ids = await read_ids(proc, 5, until="CLAIMED")
    assert doomed_ids == [hex32(s.session_id) for s in summaries[:4]]
    proc.kill()
    await proc.wait()
    # the dead consumer's entries are not handed out while they might still be in flight...
    fresh = await ob.claim(10)
    assert [e.summary for e in fresh] == summaries[4:]
    await asyncio.sleep(0.4)
    # ...but once idle past min_idle_ms they are claimed (and our own unacked ones come back too)
    again = await ob.claim(10)
    assert {hex32(e.summary.session_id) for e in again} == {hex32(s.session_id) for s in summaries}
    await ob.ack(again)
    assert await ob.pending() == 0
    assert await ob.claim(10) == []
    await ob.close()


async def test_redis_outbox_survives_server_kill(redis_server):  # noqa: F811 - fixture
    ob = open_outbox(redis_server.url)
    summaries = [synthetic_summary(RNG) for _ in range(20)]
    for s in summaries:
        await ob.put(s)
    got = await ob.claim(5)
    await ob.ack(got)
    await ob.close()
    redis_server.kill()  # SIGKILL: only the fsynced AOF survives
    redis_server.start()
    ob = RedisOutbox(aioredis.from_url(redis_server.url), consumer="after-restart", min_idle_ms=0)
    rest = await ob.claim(100)
    assert [e.summary for e in rest] == summaries[5:]
    await ob.ack(rest)
    assert await ob.pending() == 0
    await ob.close()


async def test_redis_dead_letter(redis_server):  # noqa: F811 - fixture
    ob = RedisOutbox.from_url(redis_server.url)
    s = synthetic_summary(RNG)
    await ob.put(s)
    [e] = await ob.claim(1)
    await ob.dead_letter(e, "BadTimes")
    assert await ob.pending() == 0
    dead = await ob.redis.xrange(ob.dead_stream)
    assert dead[0][1][b"reason"] == b"BadTimes"
    await ob.close()
