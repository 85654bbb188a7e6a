"""Horizontal scale: the bus and the store (in-memory and Redis), the node registry, room placement,
the remote proxy signalling uses instead of an in-process SfuNode, and the SFU node agent.

See docs/cluster.md for the message formats and the failure model.
"""

from signalling.cluster.bus import Bus, MemoryBus, MemoryHub, RedisBus, RemoteError
from signalling.cluster.store import MemoryStore, RedisStore, Store

__all__ = ["Bus", "MemoryBus", "MemoryHub", "RedisBus", "RemoteError", "Store", "MemoryStore", "RedisStore"]
