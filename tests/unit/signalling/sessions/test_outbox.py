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
    assert queries == 2  # 50 polls: one query, and one more to confirm the files' state was empty
    # and the next claims ask SQLite again only once something changed
    assert await ob.claim(5, wait_s=0.05) == []
    assert await ob.claim(5) == []
    assert queries == 2
    s = synthetic_summary(RNG)
    await ob.put(s)
    [e] = await ob.claim(5)
    assert e.summary == s and queries == 3
    [again] = await ob.claim(5)  # not acked yet: still there, and asked for (rows were found last time)
    assert again.entry_id == e.entry_id and queries == 4
    await ob.ack([e])
    assert await ob.claim(5) == [] and queries == 5  # the ack changed the files
    assert await ob.claim(5) == [] and queries == 6  # the same state seen empty twice: trusted from now
    assert await ob.claim(5) == [] and queries == 6
    ob._empty_since -= ob.RECHECK_S + 1  # however still the files look, an idle outbox is asked again
    assert await ob.claim(5) == [] and queries == 7
    await ob.close()


async def test_a_commit_not_yet_visible_when_the_files_changed_is_found_at_the_next_poll(tmp_path):
    """The race CI caught: the stat sees another process's commit (the WAL grew) before a reader can
    see its rows. An empty answer at a state seen for the first time is not trusted."""
    ob = SqliteOutbox(tmp_path / "o.db", poll_s=0.01)
    other = SqliteOutbox(tmp_path / "o.db")
    assert await ob.claim(5, wait_s=0.05) == []  # idle, and the empty state confirmed
    s = synthetic_summary(RNG)
    await other.put(s)
    claim = ob._claim
    hidden = [True]

    def not_yet_visible(n):  # the first query after the change still reads the old snapshot
        if hidden[0]:
            hidden[0] = False
            return []
        return claim(n)

    ob._claim = not_yet_visible
    [e] = await asyncio.wait_for(ob.claim(5, wait_s=10), 2)
    assert e.summary == s
    await other.close()
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
