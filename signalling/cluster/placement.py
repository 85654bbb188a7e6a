"""Which SFU node hosts a room.

`room:<room>` holds the node id; it is only ever changed with compare-and-set, so however many
replicas race to place a new room, exactly one placement wins and everybody adopts it. A room stays
on its node while that node is alive (even draining: its calls carry on); the mapping goes away when
the node reports the room closed, or when the node is found dead.

New rooms go by power-of-two-choices (as LiveKit's `twochoice`): two random candidates, keep the less
loaded. Load compares first the node's fullness (max of CPU share and participants/capacity) in 10 %
bands, then its rooms (as last reported, plus the ones this process placed since): picking among two
random nodes rather than the global minimum keeps replicas acting on the same stale heartbeat from
all piling onto one node.
"""

from __future__ import annotations

import random
import time
from typing import Any

from signalling.cluster.registry import HEARTBEAT_S, Registry
from signalling.cluster.store import Store

OVERLOADED = 0.9  # fullness beyond which a node only gets rooms when every node is that full


class NoNodeError(Exception):
    code = "no_media_node"
    message = "no SFU node is available"

    def __str__(self) -> str:
        return self.message


def fullness(record: dict[str, Any]) -> float:
    cpu = float(record.get("cpu", 0.0)) / 100.0
    capacity = int(record.get("capacity") or 0)
    share = record.get("participants", 0) / capacity if capacity > 0 else 0.0
    return max(cpu, share)


def score(record: dict[str, Any], pending: int = 0) -> tuple[int, int]:
    return int(fullness(record) * 10), int(record.get("rooms", 0)) + pending


def choose(records: list[dict[str, Any]], pending: dict[str, int] | None = None,
           rng: random.Random | None = None) -> str | None:
    """Pick a node for a new room among live records; None when none can take one."""
    pending = pending or {}
    rng = rng or random.Random()
    candidates = [r for r in records if not r.get("draining")]
    roomy = [r for r in candidates if fullness(r) < OVERLOADED]
    pool = roomy or candidates
    if not pool:
        return None
    pair = rng.sample(pool, 2) if len(pool) >= 2 else pool
    best = min(pair, key=lambda r: (score(r, pending.get(r["id"], 0)), rng.random()))
    return best["id"]


def room_key(room: str) -> str:
    return f"room:{room}"


def node_rooms_key(node_id: str) -> str:
    return f"node_rooms:{node_id}"


def room_nodes_key(room: str) -> str:
    """The nodes holding part of a room that spans nodes (signalling.run.roomlink)."""
    return f"room_nodes:{room}"


def _span_count(value: Any) -> int | None:
    # [relay host, relay port, participants, group] (signalling.run.roomlink.member_entry)
    return value[2] if isinstance(value, list) and len(value) == 4 and isinstance(value[2], int) else None


class Placer:
    def __init__(self, store: Store, registry: Registry, rng: random.Random | None = None) -> None:
        self.store = store
        self.registry = registry
        self.rng = rng or random.Random()
        self._placed: list[tuple[float, str]] = []  # (when, node): placements newer than a heartbeat

    def _pending(self) -> dict[str, int]:
        horizon = time.monotonic() - HEARTBEAT_S * 1.5
        self._placed = [(t, n) for t, n in self._placed if t >= horizon]
        counts: dict[str, int] = {}
        for _, n in self._placed:
            counts[n] = counts.get(n, 0) + 1
        return counts

    async def current(self, room: str) -> str | None:
        return await self.store.get(room_key(room))

    async def node_for(self, room: str, avoid: str | None = None) -> str:
        """The room's node: its live placement, or a new one (atomic). `avoid`: a node that refused it."""
        live = await self.registry.live()
        current = await self.store.get(room_key(room))
        for _ in range(8):
            # a value that is not a node id (written by something else) is replaced like a dead node's
            if isinstance(current, str) and current in live and current != avoid:
                return current
            records = [r for i, r in live.items() if i != avoid]
            pick = choose(records, self._pending(), self.rng)
            if pick is None:
                raise NoNodeError()
            if await self.store.compare_and_set(room_key(room), current, pick):
                self._placed.append((time.monotonic(), pick))
                await self.store.hset(node_rooms_key(pick), room, 1)
                return pick
            current = await self.store.get(room_key(room))
        raise NoNodeError()

    async def node_for_participant(self, room: str, avoid: str | None = None, span_above: int = 0,
                                   placed: dict[str, int] | None = None) -> tuple[str, bool]:
        """The node a new participant of `room` goes to, and whether that is not the room's home
        (it spans). The home, while it holds fewer than `span_above` of the room's participants and
        is not overloaded; past that, a live node of the home's span group: one already holding
        part of the room and fewer than `span_above` of it, else one that holds none of it, else
        (every node has its share) the least full in 20 % bands, and of those the one holding the
        fewest of the room's participants, so a room beyond its shares spreads evenly. Nodes
        without a group (`span_above` 0) never span: a room stays on its home. `placed`: this
        replica's participants of the room by node, joins in flight included (the store's counts
        come from the nodes once a join is done, so a burst of joins would all see the same ones)."""
        home = await self.node_for(room, avoid)
        if span_above <= 0:
            return home, False
        live = await self.registry.live()
        home_record = live.get(home)
        group = home_record.get("group") if home_record else None
        if not isinstance(group, str) or not group:
            return home, False
        members = await self.store.hgetall(room_nodes_key(room))
        counts = {n: c for n, v in members.items() if n in live and (c := _span_count(v)) is not None}
        for n, c in (placed or {}).items():
            if n in live:
                counts[n] = max(counts.get(n, 0), c)
        if counts.get(home, 0) < span_above and fullness(home_record or {}) < OVERLOADED:
            return home, False
        pool = [r for i, r in live.items() if r.get("group") == group and not r.get("draining") and i != avoid
                and fullness(r) < OVERLOADED]
        if not pool:
            return home, False

        def load(r: dict[str, Any]) -> tuple[bool, bool, int, int, float]:
            # (the room's own counts are current; a heartbeat's totals are up to 2 s old, which a burst
            # of joins would all read alike)
            # fullness in 20 % bands: CPU readings of a few % apart (a heartbeat's, 2 s old) must not
            # send a whole burst to one worker
            held = counts.get(r["id"])
            return (held or 0) >= span_above, held is None, int(fullness(r) * 5), held or 0, self.rng.random()

        best = min(pool, key=load)["id"]
        return best, best != home

    async def claim(self, room: str, node_id: str) -> bool:
        """A node about to host a room makes sure the room is (still) placed on it."""
        if await self.store.compare_and_set(room_key(room), None, node_id):
            await self.store.hset(node_rooms_key(node_id), room, 1)
            return True
        return await self.store.get(room_key(room)) == node_id

    async def release(self, room: str, node_id: str) -> None:
        """The room closed on node_id: forget the placement, unless it has moved elsewhere."""
        await self.store.compare_and_set(room_key(room), node_id, None)
        await self.store.hdel(node_rooms_key(node_id), room)

    async def forget_node(self, node_id: str) -> list[str]:
        """node_id is dead: clear its placements so the next join places them on a live node."""
        rooms = list(await self.store.hgetall(node_rooms_key(node_id)))
        for room in rooms:
            await self.store.compare_and_set(room_key(room), node_id, None)
            await self.store.hdel(room_nodes_key(room), node_id)
        await self.store.delete(node_rooms_key(node_id))
        return rooms
