"""SessionJournal: a cluster node's live sessions kept in the store, and ended (node_lost) when it dies."""

from __future__ import annotations

import asyncio
import json

from signalling.cluster.store import MemoryStore
from signalling.sessions.journal import INDEX, SessionJournal, end_journal, journal_key, reap
from signalling.sessions.outbox import SqliteOutbox
from signalling.sessions.tracker import SessionTracker

ADDRS = ["0x" + f"{i:02x}" * 20 for i in range(1, 4)]


async def _summaries(ob: SqliteOutbox) -> list:
    return [e.summary for e in await ob.claim(100)]


async def _settle(tr: SessionTracker) -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await tr.drain()


async def test_node_tracker_journals_live_sessions_and_drops_them_once_recorded(tmp_path):
    store, ob = MemoryStore(), SqliteOutbox(tmp_path / "o.db")
    tr = SessionTracker(ob, grace_s=0.05, journal=SessionJournal(store, "n1"))
    sid = tr.participant_joined("r", ADDRS[0], at=1000.0)
    tr.participant_joined("r", ADDRS[1], at=1001.0)
    tr.track_published("r", ADDRS[0], "TR_1", "video", at=1002.0)
    await _settle(tr)
    [snap] = (await store.hgetall(journal_key("n1"))).values()
    assert snap["sessionId"] == sid.hex() and snap["room"] == "r" and snap["node"] == "n1"
    assert len(snap["present"]) == 2
    assert [t["trackId"] for t in snap["tracks"]] == ["TR_1"]
    await tr.beat()
    assert isinstance(await store.hget(INDEX, "n1"), float)
    tr.add_media("r", ADDRS[0], 1000, 10)
    tr.participant_left("r", ADDRS[0], at=1003.0)
    await _settle(tr)
    [snap] = (await store.hgetall(journal_key("n1"))).values()
    assert len(snap["present"]) == 1 and snap["media"] and len(snap["events"]) == 3  # the latest state
    tr.participant_left("r", ADDRS[1], at=1004.0)
    await asyncio.sleep(0.2)
    await tr.drain()
    [s] = await _summaries(ob)
    assert s.session_id == sid and s.media_bytes == 1000
    assert "endReason" not in json.loads(s.document)
    assert await store.hgetall(journal_key("n1")) == {}  # recorded: the journal entry is gone
    await ob.close()


async def test_a_dead_nodes_sessions_end_node_lost_at_its_last_heartbeat(tmp_path):
    store, ob = MemoryStore(), SqliteOutbox(tmp_path / "o.db")
    node = SessionTracker(ob, grace_s=30, journal=SessionJournal(store, "n1"))
    sid = node.participant_joined("r", ADDRS[0], at=1000.0)
    node.participant_joined("r", ADDRS[1], at=1001.0)
    node.participant_joined("other", ADDRS[2], at=1001.0)
    await _settle(node)
    await store.hset(INDEX, "n1", 1500.0)  # its last heartbeat; then it dies (nothing more from it)
    reaper = SessionTracker(ob)
    assert await reap(store, {"n1"}, reaper.end_lost) == 0  # still live: nothing happens
    assert await _summaries(ob) == []
    assert await reap(store, set(), reaper.end_lost) == 2
    by_room = {json.loads(s.document)["room"]: s for s in await _summaries(ob)}
    s = by_room["r"]
    doc = json.loads(s.document)
    assert s.session_id == sid and doc["endReason"] == "node_lost"
    assert (s.started_at, s.ended_at, s.participant_count, s.peak_participants) == (1000, 1500, 2, 2)
    assert [(e["type"], e["atMs"]) for e in doc["events"]][-2:] == [("left", 1_500_000), ("left", 1_500_000)]
    assert await store.hgetall(journal_key("n1")) == {} and await store.hgetall(INDEX) == {}
    assert await reap(store, set(), reaper.end_lost) == 0  # reaped once
    await ob.close()


async def test_a_restarted_node_ends_what_its_previous_life_left(tmp_path):
    store, ob = MemoryStore(), SqliteOutbox(tmp_path / "o.db")
    before = SessionTracker(ob, grace_s=30, journal=SessionJournal(store, "n1"))
    sid = before.participant_joined("r", ADDRS[0], at=1000.0)
    await _settle(before)
    await store.hset(INDEX, "n1", 1200.0)
    after = SessionTracker(ob, grace_s=30, journal=SessionJournal(store, "n1"))
    assert await end_journal(store, "n1", after.end_lost) == 1
    [s] = await _summaries(ob)
    assert s.session_id == sid and s.ended_at == 1200
    assert await store.hgetall(journal_key("n1")) == {}
    await ob.close()


async def test_garbage_in_a_journal_is_dropped_not_fatal(tmp_path):
    store, ob = MemoryStore(), SqliteOutbox(tmp_path / "o.db")
    await store.hset(INDEX, "n9", "not a time")
    await store.hset(journal_key("n9"), "abc", [1, 2, 3])
    await store.hset(journal_key("n9"), "def", {"sessionId": "other"})
    await store.hset(journal_key("n9"), "ab12", {"sessionId": "ab12", "room": "r", "startedAt": 1.0,
                                                 "events": [{"atMs": 1, "type": "exploded", "identity": "g"}]})
    await store.hset(journal_key("n9"), "cd34", {"sessionId": "cd34", "room": "r", "startedAt": "soon"})
    assert await reap(store, set(), SessionTracker(ob).end_lost) == 0
    assert await store.hgetall(journal_key("n9")) == {} and await store.hgetall(INDEX) == {}
    assert await _summaries(ob) == []
    await ob.close()
