"""Who is alive: SFU nodes and signalling replicas announce themselves with heartbeats.

Liveness is a key with a time to live (`<kind>:<id>`, TTL `LIVE_S`) renewed every `HEARTBEAT_S`, so
it does not depend on the clocks of the machines agreeing; the hash `<kind>s` remembers every member
that ever announced itself, so a member whose key expired can be recognised as dead and cleaned up.
"""

from __future__ import annotations

import logging
from typing import Any

from signalling.cluster.store import Store

log = logging.getLogger("basement.cluster.registry")

HEARTBEAT_S = 2.0
LIVE_S = 5.0  # silent this long = out of placement, its rooms are lost
NUMBERS = ("capacity", "cpu", "pps", "rooms", "participants", "tracks", "at")


def sane(member_id: str, record: Any) -> bool:
    """A record placement can compute with: a map naming this member, numbers where numbers go."""
    if not isinstance(record, dict) or record.get("id") != member_id:
        return False
    if not isinstance(record.get("draining", False), bool):
        return False
    return all(isinstance(record.get(k, 0), (int, float)) and not isinstance(record.get(k, 0), bool)
               for k in NUMBERS)


class Registry:
    def __init__(self, store: Store, kind: str = "node", live_s: float = LIVE_S) -> None:
        self.store = store
        self.kind = kind
        self.live_s = live_s

    def _key(self, member_id: str) -> str:
        return f"{self.kind}:{member_id}"

    async def beat(self, record: dict[str, Any]) -> None:
        """Publish a member's record (must carry "id"); it stays live for `live_s` seconds."""
        await self.store.set(self._key(record["id"]), record, ttl=self.live_s)
        await self.store.hset(self.kind + "s", record["id"], 1)

    async def live(self) -> dict[str, dict[str, Any]]:
        """id -> latest record, for every member heard from within `live_s`."""
        ids = sorted(await self.store.hgetall(self.kind + "s"))
        records = await self.store.mget([self._key(i) for i in ids])
        live = {}
        for i, r in zip(ids, records):
            if r is None:
                continue
            if sane(i, r):
                live[i] = r
            else:  # not dead either (its key exists): left out of placement until it beats again
                log.warning("%s record %s ignored: not a valid heartbeat", self.kind, i)
        return live

    async def dead(self) -> list[str]:
        """Members that announced themselves once and have since gone silent (not yet forgotten)."""
        ids = sorted(await self.store.hgetall(self.kind + "s"))
        records = await self.store.mget([self._key(i) for i in ids])
        return [i for i, r in zip(ids, records) if r is None]

    async def forget(self, member_id: str) -> None:
        await self.store.delete(self._key(member_id))
        await self.store.hdel(self.kind + "s", member_id)
