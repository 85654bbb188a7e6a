"""Outbox durability: SQLite across a SIGKILLed writer process, Redis across a dead consumer and server."""

from __future__ import annotations

import asyncio
import random

from signalling.sessions.outbox import SqliteOutbox
from signalling.sessions.summary import hex32
from tests.support.sessionfix import synthetic_summary

RNG = random.Random(99)


async def test_sqlite_entry_stays_until_acked(tmp_path):
    ob = SqliteOutbox(tmp_path / "o.db")
    a, b = synthetic_summary(RNG), synthetic_summary(RNG)
    await ob.put(a)
    await ob.put(b)
    await ob.put(a)  # duplicate put is ignored
    [first] = await ob.claim(1)
    assert first.summary == a
    await ob.close()
    ob = SqliteOutbox(tmp_path / "o.db")  # "restart" without ack
    entries = await ob.claim(10)
    assert [e.summary for e in entries] == [a, b]
    await ob.ack(entries[:1])
    await ob.dead_letter(entries[1], "BadTimes")
    assert await ob.pending() == 0
    assert await ob.dead_letters() == [(hex32(b.session_id), "BadTimes")]
    await ob.close()


async def test_sqlite_claim_waits_for_put(tmp_path):
    ob = SqliteOutbox(tmp_path / "o.db")
    s = synthetic_summary(RNG)
    waiter = asyncio.create_task(ob.claim(5, wait_s=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await ob.put(s)
    [e] = await asyncio.wait_for(waiter, 2)
    assert e.summary == s
    await ob.close()


async def test_sqlite_claim_sees_another_writers_put(tmp_path):
    """Another process's put (here: a second connection, which cannot wake this one) is noticed by
    the file-change check within a poll interval."""
    ob = SqliteOutbox(tmp_path / "o.db", poll_s=0.02)
    other = SqliteOutbox(tmp_path / "o.db")
    s = synthetic_summary(RNG)
    waiter = asyncio.create_task(ob.claim(5, wait_s=10))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await other.put(s)
    [e] = await asyncio.wait_for(waiter, 2)
    assert e.summary == s
    await other.close()
    await ob.close()


async def test_idle_claim_does_not_query_every_poll(tmp_path):
    """An idle node waits on two stat calls per poll, not on a query in a worker thread per poll."""
    ob = SqliteOutbox(tmp_path / "o.db", poll_s=0.01)
    queries = 0
    claim = ob._claim

    def counting(n):
        nonlocal queries
        queries += 1
        return claim(n)

    ob._claim = counting
    assert await ob.claim(5, wait_s=0.5) == []
    assert queries == 1  # 50 polls, one query
    # and the next claims ask SQLite again only once something changed
    assert await ob.claim(5, wait_s=0.05) == []
    assert await ob.claim(5) == []
    assert queries == 1
    s = synthetic_summary(RNG)
    await ob.put(s)
    [e] = await ob.claim(5)
    assert e.summary == s and queries == 2
    [again] = await ob.claim(5)  # not acked yet: still there, and asked for (rows were found last time)
    assert again.entry_id == e.entry_id and queries == 3
    await ob.ack([e])
    assert await ob.claim(5) == [] and queries == 4  # the ack changed the files
    assert await ob.claim(5) == [] and queries == 4
    ob._empty_since -= ob.RECHECK_S + 1  # however still the files look, an idle outbox is asked again
    assert await ob.claim(5) == [] and queries == 5
    await ob.close()


async def test_a_put_by_another_process_between_claims_is_seen_without_waiting(tmp_path):
    ob = SqliteOutbox(tmp_path / "o.db", poll_s=0.01)
    other = SqliteOutbox(tmp_path / "o.db")
    assert await ob.claim(5) == []
    s = synthetic_summary(RNG)
    await other.put(s)  # cannot wake `ob`: only the files changed
    [e] = await ob.claim(5)
    assert e.summary == s
    await other.close()
    await ob.close()
