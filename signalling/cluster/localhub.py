"""The parent's end of one worker's wire: the worker's bus traffic goes onto the parent's MemoryHub
and its store calls onto the parent's MemoryStore, so parent and workers share one bus and one store
without Redis (the all-in-one server's workers; docs/cluster.md "Workers").

What one worker can make the parent hold is bounded: frames are size-checked before parsing
(localwire), messages to a worker that stopped reading are dropped past MAX_BUFFERED_BYTES (counted),
and the parent handles one frame of a worker at a time. A frame that is not what the wire carries
ends that worker's connection (logged): it is a bug, and the worker exits and is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from signalling.cluster.bus import MAX_MESSAGE_BYTES, MemoryHub, valid_channel
from signalling.cluster.localwire import WireError, frame, read_frame
from signalling.cluster.store import MemoryStore

log = logging.getLogger("basement.cluster.localhub")

# Messages waiting to be written to one worker; past this the worker is not reading (stuck).
MAX_BUFFERED_BYTES = 64 * MAX_MESSAGE_BYTES

# Channels one worker may listen to: a node listens to two; far more is a bug, not load.
MAX_CHANNELS = 1024

# Store operations a worker may call, with how many arguments each takes (min, max).
STORE_OPS: dict[str, tuple[int, int]] = {
    "get": (1, 1), "mget": (1, 1), "set": (2, 3), "set_if_absent": (2, 3), "compare_and_set": (3, 4),
    "delete": (1, 1), "expire": (2, 2), "hset": (3, 3), "hget": (2, 2), "hgetall": (1, 1), "hdel": (2, 2),
}


class LocalHubPeer:
    """Serves one worker's wire until it closes; `stats` counts what was refused or dropped."""

    def __init__(self, name: str, hub: MemoryHub, store: MemoryStore,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.name = name
        self.hub = hub
        self.store = store
        self.reader = reader
        self.writer = writer
        self.stats = {"malformed": 0, "dropped": 0}
        self._channels: set[str] = set()
        self._task: asyncio.Task | None = None

    def start(self, config: dict[str, Any]) -> None:
        self.writer.write(frame("config", config))
        self._task = asyncio.ensure_future(self._serve())

    async def wait_closed(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._drop_listeners()
        self.writer.close()

    # --- MemoryHub listener -------------------------------------------------------------------------
    def receive(self, channel: str, data: bytes) -> None:
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            self.stats["dropped"] += 1
            if self.stats["dropped"] == 1 or self.stats["dropped"] % 1000 == 0:
                log.warning("%s is not reading its wire: %d messages dropped", self.name, self.stats["dropped"])
            return
        self.writer.write(frame("msg", channel, data))

    # --- the worker's frames ------------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while True:
                items = await read_frame(self.reader)
                await self._act(items)
                if self.writer.transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
                    await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker exited; its supervisor says why
        except WireError as e:
            self.stats["malformed"] += 1
            log.error("%s sent a malformed frame (%s): closing its wire", self.name, e)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: still only this worker's wire ends (its worker is restarted)
            self.stats["malformed"] += 1
            log.exception("%s: handling its frame failed: closing its wire", self.name)
        finally:
            self._drop_listeners()
            self.writer.close()

    async def _act(self, items: list[Any]) -> None:
        kind = items[0]
        if kind == "send" and len(items) == 3 and isinstance(items[2], list):
            reached = []
            for message in items[2]:
                if not (isinstance(message, list) and len(message) == 2 and valid_channel(message[0])
                        and isinstance(message[1], bytes) and len(message[1]) <= MAX_MESSAGE_BYTES):
                    raise WireError("a sent message must be [channel, bytes of at most 1 MiB]")
                reached.append(self.hub.send(message[0], message[1]))
            self.writer.write(frame("sent", items[1], reached))
        elif kind in ("listen", "unlisten") and len(items) == 3 and valid_channel(items[2]):
            channel = items[2]
            if kind == "listen":
                if channel not in self._channels and len(self._channels) >= MAX_CHANNELS:
                    raise WireError(f"more than {MAX_CHANNELS} channels listened to")
                self.hub.listeners.setdefault(channel, set()).add(self)
                self._channels.add(channel)
            else:
                listeners = self.hub.listeners.get(channel)
                if listeners is not None:
                    listeners.discard(self)
                    if not listeners:
                        del self.hub.listeners[channel]
                self._channels.discard(channel)
            # answered, as Redis answers SUBSCRIBE: whoever asks next is sure to be heard
            self.writer.write(frame("res", items[1], True, None))
        elif kind == "store" and len(items) == 4 and isinstance(items[3], list):
            op, args = items[2], items[3]
            arity = STORE_OPS.get(op) if isinstance(op, str) else None
            if arity is None or not arity[0] <= len(args) <= arity[1]:
                self.writer.write(frame("res", items[1], False, f"unknown store call {op!r}/{len(args)}"[:200]))
                return
            # keys and hash fields are strings, as on Redis (readers sort them: one int would break them all)
            keys = args[0] if op == "mget" else [args[0]]
            fields = [args[1]] if op in ("hset", "hget", "hdel") else []
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in [*keys, *fields]):
                self.writer.write(frame("res", items[1], False, f"{op}: keys and fields must be strings"))
                return
            try:
                value = await getattr(self.store, op)(*args)
            except Exception as e:  # wrong argument types: an error reply, the wire carries on
                self.writer.write(frame("res", items[1], False, f"{op}: {type(e).__name__}: {e}"[:500]))
                return
            self.writer.write(frame("res", items[1], True, value))
        else:
            raise WireError(f"unexpected {kind!r} frame of {len(items)} items"[:200])

    def _drop_listeners(self) -> None:
        for channel in self._channels:
            self.hub.listeners.get(channel, set()).discard(self)
        self._channels.clear()
