"""SessionJournal: what a media node knows of its live sessions, kept in the cluster store, so that a
session still ends, and is recorded, when the node hosting it dies.

A node's SessionTracker saves a snapshot of each live session (its events, tracks and counters so far)
whenever it changes, and drops it once the finished session is in the outbox. The node also stamps
the journal index with the time on every heartbeat while it has live sessions. When a node has gone
silent (its registry key expired), a replica reaps its journal: each session it holds ends with reason
`node_lost` at the node's last heartbeat, with everyone still present leaving then, and goes to the
outbox like any other; the snapshot is deleted only after that, so a replica dying mid-reap leaves it
for the next one. Two replicas reaping at once put the same document twice, which the chain writer
records once (it looks ids up before writing, and SessionLog is compare-and-append). A node that was
only cut off and comes back ends the same sessions itself (its rooms were moved): same ids, recorded
once.

Layout: hash `session_journal:<node>` (session id → snapshot), hash `session_journals` (node → the
unix time of its last heartbeat with live sessions).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

INDEX = "session_journals"


def journal_key(node_id: str) -> str:
    return f"session_journal:{node_id}"


class SessionJournal:
    def __init__(self, store: Any, node_id: str) -> None:
        self.store = store
        self.node_id = node_id
        self.key = journal_key(node_id)

    def __repr__(self) -> str:
        return f"SessionJournal(node={self.node_id!r})"

    async def save(self, session_id: str, snapshot: dict[str, Any]) -> None:
        await self.store.hset(INDEX, self.node_id, time.time())
        await self.store.hset(self.key, session_id, snapshot)

    async def drop(self, session_id: str) -> None:
        await self.store.hdel(self.key, session_id)

    async def beat(self) -> None:
        """The node is alive with live sessions: their end, should it die, is no earlier than now."""
        await self.store.hset(INDEX, self.node_id, time.time())


async def reap(store: Any, live: Iterable[str],
               end: Callable[[dict[str, Any], float], Awaitable[None]]) -> int:
    """End every journaled session of nodes not in `live`; returns how many were ended.

    `end(snapshot, ended_at)` must return only once the session is durably in the outbox."""
    alive = set(live)
    done = 0
    for node_id in await store.hgetall(INDEX):
        if node_id not in alive:
            done += await end_journal(store, node_id, end)
    return done


async def end_journal(store: Any, node_id: str, end: Callable[[dict[str, Any], float], Awaitable[None]]) -> int:
    """End every session in `node_id`'s journal at its last heartbeat, then forget the journal.

    Also what a node does for itself at start-up: a restarted node may keep its id (the Helm chart
    names a node after its pod, which a container restart keeps), and what its journal holds then is
    its previous life's."""
    last_seen = await store.hget(INDEX, node_id)
    key = journal_key(node_id)
    done = 0
    for session_id, snapshot in (await store.hgetall(key)).items():
        if not isinstance(snapshot, dict) or snapshot.get("sessionId") != session_id:
            log.warning("journal of node %s: entry %r is not a session snapshot; dropped", node_id,
                        str(session_id)[:80])
        else:
            ended_at = last_seen if isinstance(last_seen, int | float) else snapshot.get("savedAt")
            try:
                await end(snapshot, float(ended_at if isinstance(ended_at, int | float) else time.time()))
                done += 1
                log.warning("node %s was lost: its session %s in room %r ended (node_lost)", node_id,
                            session_id[:14], snapshot.get("room"))
            except ValueError as e:  # malformed: dropping it is all there is to do (anything else: retried)
                log.warning("journal of node %s: session %s dropped: %s", node_id, str(session_id)[:14], e)
        await store.hdel(key, session_id)
    if not await store.hgetall(key):
        await store.hdel(INDEX, node_id)
    return done
