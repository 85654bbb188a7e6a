"""The store: shared key/value and hash state with expiry and compare-and-set.

`MemoryStore` (one process) and `RedisStore` keep the same contract, checked by one set of tests.
Values are any msgpack-able object; both implementations store the encoded bytes, so a value read
back is a copy and compare-and-set compares encodings. Keys are namespaced by `prefix` on Redis.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any

from signalling.cluster.bus import BadEnvelope, decode, encode
from signalling.cluster.redisconn import RedisTarget, as_target

log = logging.getLogger("basement.cluster.store")


class Store(ABC):
    @abstractmethod
    async def get(self, key: str) -> Any | None: ...

    @abstractmethod
    async def set(self, key: str, value: Any, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def set_if_absent(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Atomically set key when it does not exist; True when this call set it."""

    @abstractmethod
    async def compare_and_set(self, key: str, expected: Any | None, new: Any | None,
                              ttl: float | None = None) -> bool:
        """Atomically: if the value is `expected` (None = absent), make it `new` (None = delete)."""

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def expire(self, key: str, ttl: float) -> bool:
        """Give an existing key (value or hash) a time to live; False when the key does not exist."""

    @abstractmethod
    async def hset(self, key: str, field: str, value: Any) -> None: ...

    @abstractmethod
    async def hget(self, key: str, field: str) -> Any | None: ...

    @abstractmethod
    async def hgetall(self, key: str) -> dict[str, Any]: ...

    @abstractmethod
    async def hdel(self, key: str, field: str) -> None: ...

    async def mget(self, keys: list[str]) -> list[Any | None]:
        return [await self.get(k) for k in keys]

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryStore(Store):
    """Shared by every component of one process; expiry follows the monotonic clock."""

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}
        self._hashes: dict[str, dict[str, bytes]] = {}
        self._expiry: dict[str, float] = {}

    def _alive(self, key: str) -> None:
        at = self._expiry.get(key)
        if at is not None and time.monotonic() >= at:
            self._values.pop(key, None)
            self._hashes.pop(key, None)
            self._expiry.pop(key, None)

    def _put(self, key: str, value: Any, ttl: float | None) -> None:
        self._values[key] = encode(value)
        self._hashes.pop(key, None)
        if ttl:
            self._expiry[key] = time.monotonic() + ttl
        else:
            self._expiry.pop(key, None)

    async def get(self, key: str) -> Any | None:
        self._alive(key)
        raw = self._values.get(key)
        return None if raw is None else decode(raw)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._put(key, value, ttl)

    async def set_if_absent(self, key: str, value: Any, ttl: float | None = None) -> bool:
        self._alive(key)
        if key in self._values or key in self._hashes:
            return False
        self._put(key, value, ttl)
        return True

    async def compare_and_set(self, key: str, expected: Any | None, new: Any | None,
                              ttl: float | None = None) -> bool:
        self._alive(key)
        current = self._values.get(key)
        if (current is None) != (expected is None) or (current is not None and current != encode(expected)):
            return False
        if new is None:
            await self.delete(key)
        else:
            self._put(key, new, ttl)
        return True

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)
        self._hashes.pop(key, None)
        self._expiry.pop(key, None)

    async def expire(self, key: str, ttl: float) -> bool:
        self._alive(key)
        if key not in self._values and key not in self._hashes:
            return False
        self._expiry[key] = time.monotonic() + ttl
        return True

    async def hset(self, key: str, field: str, value: Any) -> None:
        self._alive(key)
        self._hashes.setdefault(key, {})[field] = encode(value)

    async def hget(self, key: str, field: str) -> Any | None:
        self._alive(key)
        raw = self._hashes.get(key, {}).get(field)
        return None if raw is None else decode(raw)

    async def hgetall(self, key: str) -> dict[str, Any]:
        self._alive(key)
        return {f: decode(v) for f, v in self._hashes.get(key, {}).items()}

    async def hdel(self, key: str, field: str) -> None:
        self._alive(key)
        h = self._hashes.get(key)
        if h is not None:
            h.pop(field, None)
            if not h:
                await self.delete(key)


# KEYS[1]; ARGV: expected encoding ('' = must be absent), new encoding ('' = delete), ttl ms (0 = none)
_CAS = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if cur then return 0 end
elseif cur ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
elseif tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
"""


def _ms(ttl: float | None) -> int | None:
    return max(1, int(ttl * 1000)) if ttl else None


class RedisStore(Store):
    """Values read back are decoded with the bus's limits; one that is not valid msgpack (written by
    something else reaching Redis) reads as absent and is counted in `stats["malformed"]`."""

    def __init__(self, target: str | RedisTarget, prefix: str = "basement:") -> None:
        self.target = as_target(target)
        self.prefix = prefix
        self.stats = {"malformed": 0}
        self._redis: Any = None
        self._cas: Any = None

    async def start(self) -> None:
        self._redis = self.target.client()
        await self._redis.ping()
        self._cas = self._redis.register_script(_CAS)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _load(self, key: str, raw: bytes | None) -> Any | None:
        if raw is None:
            return None
        try:
            return decode(raw)
        except BadEnvelope as e:
            self.stats["malformed"] += 1
            log.warning("store value %s ignored: %s", key, e)
            return None

    async def get(self, key: str) -> Any | None:
        return self._load(key, await self._redis.get(self._k(key)))

    async def mget(self, keys: list[str]) -> list[Any | None]:
        if not keys:
            return []
        raws = await self._redis.mget([self._k(k) for k in keys])
        return [self._load(k, r) for k, r in zip(keys, raws)]

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self._redis.set(self._k(key), encode(value), px=_ms(ttl))

    async def set_if_absent(self, key: str, value: Any, ttl: float | None = None) -> bool:
        return bool(await self._redis.set(self._k(key), encode(value), px=_ms(ttl), nx=True))

    async def compare_and_set(self, key: str, expected: Any | None, new: Any | None,
                              ttl: float | None = None) -> bool:
        args = [b"" if expected is None else encode(expected), b"" if new is None else encode(new), _ms(ttl) or 0]
        return bool(await self._cas(keys=[self._k(key)], args=args))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._k(key))

    async def expire(self, key: str, ttl: float) -> bool:
        return bool(await self._redis.pexpire(self._k(key), _ms(ttl)))

    async def hset(self, key: str, field: str, value: Any) -> None:
        await self._redis.hset(self._k(key), field, encode(value))

    async def hget(self, key: str, field: str) -> Any | None:
        return self._load(f"{key}/{field}", await self._redis.hget(self._k(key), field))

    async def hgetall(self, key: str) -> dict[str, Any]:
        raw = await self._redis.hgetall(self._k(key))
        out = {}
        for f, v in raw.items():
            name = f.decode(errors="replace") if isinstance(f, bytes) else f
            value = self._load(f"{key}/{name}", v)
            if value is not None:
                out[name] = value
        return out

    async def hdel(self, key: str, field: str) -> None:
        await self._redis.hdel(self._k(key), field)
