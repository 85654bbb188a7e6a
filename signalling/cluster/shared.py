"""Control-plane state every signalling replica must see alike: SIWE nonces and room configs.

Behind a Kubernetes Service, `GET /auth/nonce` and `POST /auth/siwe` may reach two different
replicas, and the admin API may update a gate on one replica while participants join through
another; so in cluster mode both live in the shared Store instead of process memory.
"""

from __future__ import annotations

import time

from signalling.access.gating import RoomConfig
from signalling.access.siwe import NonceState
from signalling.cluster.store import Store

ROOM_CONFIGS = "room_configs"


def nonce_key(nonce: str) -> str:
    return f"nonce:{nonce}"


class StoreNonceStore:
    """Single-use nonces: `consume` is a compare-and-set from unused to used, so of two replicas
    verifying the same message exactly one wins. Used nonces are kept until expiry so a replay is
    reported as a replay; the store's TTL then forgets them (no sweeping, no unbounded growth)."""

    # a nonce past its expiry is kept a little longer so it reads "expired" rather than "unknown"
    LINGER_S = 60.0

    def __init__(self, store: Store) -> None:
        self.store = store

    async def put(self, nonce: str, expires_at: float) -> None:
        ttl = max(1.0, expires_at - time.time()) + self.LINGER_S
        await self.store.set(nonce_key(nonce), {"exp": expires_at, "used": False}, ttl=ttl)

    async def peek(self, nonce: str, now: float) -> NonceState:
        entry = await self.store.get(nonce_key(nonce))
        return self._state(entry, now)

    async def consume(self, nonce: str, now: float) -> NonceState:
        key = nonce_key(nonce)
        entry = await self.store.get(key)
        state = self._state(entry, now)
        if state is not NonceState.OK:
            return state
        used = {"exp": entry["exp"], "used": True}
        ttl = max(1.0, entry["exp"] - now) + self.LINGER_S
        if await self.store.compare_and_set(key, entry, used, ttl=ttl):
            return NonceState.OK
        return NonceState.USED  # another replica consumed it between our read and write

    async def spend(self, key: str, expires_at: float) -> bool:
        """First use of a grant id across all replicas (SET NX); remembered until the grant expires."""
        return await self.store.set_if_absent(nonce_key(key), {"spent": True}, ttl=max(1.0, expires_at - time.time()))

    @staticmethod
    def _state(entry: dict | None, now: float) -> NonceState:
        if not isinstance(entry, dict):
            return NonceState.UNKNOWN
        if entry.get("used"):
            return NonceState.USED
        return NonceState.EXPIRED if float(entry.get("exp", 0)) <= now else NonceState.OK


class StoreRoomRegistry:
    """Room configurations (gates, limits) in one shared hash, as JSON-shaped dicts."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, name: str) -> RoomConfig | None:
        raw = await self.store.hget(ROOM_CONFIGS, name)
        return None if raw is None else RoomConfig.from_json(name, raw)

    async def put(self, config: RoomConfig) -> None:
        body = config.to_json()
        del body["name"]  # the hash field is the name
        await self.store.hset(ROOM_CONFIGS, config.name, body)

    async def seed(self, config: RoomConfig) -> None:
        if await self.store.hget(ROOM_CONFIGS, config.name) is None:
            await self.put(config)

    async def delete(self, name: str) -> bool:
        existed = await self.store.hget(ROOM_CONFIGS, name) is not None
        await self.store.hdel(ROOM_CONFIGS, name)
        return existed

    async def list(self) -> list[RoomConfig]:
        rooms = await self.store.hgetall(ROOM_CONFIGS)
        return [RoomConfig.from_json(name, rooms[name]) for name in sorted(rooms)]
