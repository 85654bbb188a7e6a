"""A worker's end of its wire to the parent (signalling.cluster.localwire): `LocalLink` carries the
frames, `LocalBus` and `LocalStore` are the Bus and Store a NodeAgent runs on, as it runs on
RedisBus/RedisStore in a cluster.

When the wire ends (the parent exited), every call fails with ConnectionError and `closed` is set:
a worker without its parent has nobody to serve and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Callable
from typing import Any

from signalling.cluster.bus import Bus
from signalling.cluster.localwire import BATCH_BYTES, WireError, frame, read_frame
from signalling.cluster.store import Store

log = logging.getLogger("basement.cluster.locallink")


class LocalLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = asyncio.Event()
        self.on_message: Callable[[str, bytes], None] = lambda channel, data: None
        self._seq = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._task: asyncio.Task | None = None

    @classmethod
    async def open(cls, fd: int) -> tuple[LocalLink, dict[str, Any]]:
        """The link on the inherited socket `fd`, and the configuration the parent sent first."""
        sock = socket.socket(fileno=fd)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 16)
        items = await read_frame(reader)
        if items[0] != "config" or len(items) != 2 or not isinstance(items[1], dict):
            raise WireError("the parent's first frame must be its configuration")
        link = cls(reader, writer)
        link._task = asyncio.ensure_future(link._read())
        return link, items[1]

    async def call(self, *items: Any) -> Any:
        """Send a frame that has a reply; its second item becomes the sequence number."""
        if self.closed.is_set():
            raise ConnectionError("the wire to the parent is closed")
        seq = next(self._seq)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting[seq] = fut
        try:
            self.writer.write(frame(items[0], seq, *items[1:]))
            await self.writer.drain()
            return await fut
        finally:
            self._waiting.pop(seq, None)

    async def _read(self) -> None:
        try:
            while True:
                items = await read_frame(self.reader)
                kind = items[0]
                if kind == "msg" and len(items) == 3 and isinstance(items[1], str) and isinstance(items[2], bytes):
                    self.on_message(items[1], items[2])
                elif kind == "sent" and len(items) == 3:
                    self._resolve(items[1], True, items[2])
                elif kind == "res" and len(items) == 4:
                    self._resolve(items[1], items[2] is True, items[3])
                else:
                    raise WireError(f"unexpected {kind!r} frame from the parent"[:200])
        except (asyncio.IncompleteReadError, ConnectionError):
            log.info("the wire to the parent ended")
        except WireError as e:
            log.error("the parent sent a malformed frame (%s): closing the wire", e)
        finally:
            self.closed.set()
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("the wire to the parent is closed"))
            self.writer.close()

    def _resolve(self, seq: Any, ok: bool, value: Any) -> None:
        fut = self._waiting.get(seq) if isinstance(seq, int) else None
        if fut is None or fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(RuntimeError(str(value)))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class LocalBus(Bus):
    """The Bus over the wire: the parent's MemoryHub routes what it sends and what it listens to."""

    def __init__(self, link: LocalLink, inbox: str | None = None, **limits: int) -> None:
        super().__init__(inbox, **limits)
        self.link = link

    async def _open(self) -> None:
        self.link.on_message = self._dispatch

    async def _send_batch(self, batch: list[tuple[str, bytes]]) -> list[int]:
        reached: list[int] = []
        chunk: list[list[Any]] = []
        size = 0
        for channel, data in batch:
            if chunk and size + len(data) > BATCH_BYTES:
                reached += await self.link.call("send", chunk)
                chunk, size = [], 0
            chunk.append([channel, data])
            size += len(data) + len(channel)
        if chunk:
            reached += await self.link.call("send", chunk)
        return reached

    async def _listen(self, channel: str) -> None:
        await self.link.call("listen", channel)

    async def _unlisten(self, channel: str) -> None:
        await self.link.call("unlisten", channel)

    async def _shut(self) -> None:
        return None


class LocalStore(Store):
    """The Store over the wire: every call runs on the parent's MemoryStore."""

    def __init__(self, link: LocalLink) -> None:
        self.link = link

    async def _call(self, op: str, *args: Any) -> Any:
        return await self.link.call("store", op, list(args))

    async def get(self, key: str) -> Any | None:
        return await self._call("get", key)

    async def mget(self, keys: list[str]) -> list[Any | None]:
        return await self._call("mget", keys)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self._call("set", key, value, ttl)

    async def set_if_absent(self, key: str, value: Any, ttl: float | None = None) -> bool:
        return bool(await self._call("set_if_absent", key, value, ttl))

    async def compare_and_set(self, key: str, expected: Any | None, new: Any | None,
                              ttl: float | None = None) -> bool:
        return bool(await self._call("compare_and_set", key, expected, new, ttl))

    async def delete(self, key: str) -> None:
        await self._call("delete", key)

    async def expire(self, key: str, ttl: float) -> bool:
        return bool(await self._call("expire", key, ttl))

    async def hset(self, key: str, field: str, value: Any) -> None:
        await self._call("hset", key, field, value)

    async def hget(self, key: str, field: str) -> Any | None:
        return await self._call("hget", key, field)

    async def hgetall(self, key: str) -> dict[str, Any]:
        return await self._call("hgetall", key)

    async def hdel(self, key: str, field: str) -> None:
        await self._call("hdel", key, field)
