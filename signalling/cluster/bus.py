"""The bus: ordered publish/subscribe plus request/reply with timeouts, on channels named by strings.

Two transports share every line of protocol logic here (`Bus`): `MemoryBus` (asyncio queues, one
process) and `RedisBus` (Redis pub/sub). Both msgpack-encode every envelope, so a payload that would
not survive Redis fails in the in-memory tests too.

Envelopes (msgpack maps):
    {"k": "msg", "b": body}                                   publish()
    {"k": "req", "r": rid, "to": reply_channel, "b": body}    request()
    {"k": "rep", "r": rid, "ok": true, "b": result}           reply
    {"k": "rep", "r": rid, "ok": false, "code": c, "message": m}

Ordering: everything one Bus sends leaves through one queue drained by one task, and everything it
receives is dispatched by one task in arrival order, so a node's events and replies reach a replica
in the order the node produced them (as with a direct call).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack

log = logging.getLogger("basement.cluster.bus")

Handler = Callable[[dict[str, Any]], Any]  # sync, or returning an awaitable (run as a task)
Responder = Callable[[Any], Awaitable[Any]]


class RemoteError(Exception):
    """A request failed on the far side (code from the remote error) or got no reply (code "timeout")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def encode(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def decode(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


class Bus(ABC):
    """One endpoint. `inbox` is the channel replies (and, for a replica, node events) come to."""

    def __init__(self, inbox: str | None = None) -> None:
        self.inbox = inbox or "inbox:" + secrets.token_hex(8)
        self.connected = False
        self._handlers: dict[str, Handler] = {}
        self._responders: dict[str, Responder] = {}
        self._waiting: dict[str, asyncio.Future] = {}
        self._outq: asyncio.Queue[tuple[str, bytes, str | None] | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._sender: asyncio.Task | None = None
        self.stats = {"requests": 0, "timeouts": 0, "errors": 0, "published": 0, "received": 0}

    # --- transport hooks ------------------------------------------------------------------------
    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _send_batch(self, batch: list[tuple[str, bytes]]) -> list[int]:
        """Send in order; return how many listeners each message reached."""

    @abstractmethod
    async def _listen(self, channel: str) -> None: ...

    @abstractmethod
    async def _unlisten(self, channel: str) -> None: ...

    @abstractmethod
    async def _shut(self) -> None: ...

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._open()
        self._sender = asyncio.ensure_future(self._send_loop())
        await self._listen(self.inbox)
        self.connected = True

    async def close(self) -> None:
        self.connected = False
        if self._sender is not None:
            self._outq.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._sender, 2.0)
        for t in list(self._tasks):
            t.cancel()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(RemoteError("closed", "the bus was closed"))
        await self._shut()

    async def flush(self) -> None:
        """Wait until everything published so far has been handed to the transport."""
        await self._outq.join()

    # --- API ----------------------------------------------------------------------------------------
    def publish(self, channel: str, body: Any) -> None:
        """Queue a message; never blocks, keeps order with every other send of this Bus."""
        self._send(channel, {"k": "msg", "b": body})

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Call handler(body) for each message on channel, in order (the inbox can have one too)."""
        self._handlers[channel] = handler
        if channel != self.inbox and channel not in self._responders:
            await self._listen(channel)

    async def serve(self, channel: str, responder: Responder) -> None:
        """Answer requests on channel; each runs in its own task, exceptions become error replies."""
        self._responders[channel] = responder
        if channel != self.inbox and channel not in self._handlers:
            await self._listen(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._handlers.pop(channel, None)
        self._responders.pop(channel, None)
        if channel != self.inbox:
            await self._unlisten(channel)

    async def request(self, channel: str, body: Any, timeout: float = 10.0) -> Any:
        """Send a request and wait for its reply; raises RemoteError (code "timeout" with no reply)."""
        rid = secrets.token_hex(8)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        self.stats["requests"] += 1
        self._send(channel, {"k": "req", "r": rid, "to": self.inbox, "b": body}, rid)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.stats["timeouts"] += 1
            raise RemoteError("timeout", f"no reply on {channel} within {timeout:g} s") from None
        except RemoteError:
            self.stats["errors"] += 1
            raise
        finally:
            self._waiting.pop(rid, None)

    # --- internals ----------------------------------------------------------------------------------
    def _send(self, channel: str, envelope: dict[str, Any], rid: str | None = None) -> None:
        self._outq.put_nowait((channel, encode(envelope), rid))

    async def _send_loop(self) -> None:
        while True:
            item = await self._outq.get()
            if item is None:
                self._outq.task_done()
                return
            batch = [item]
            stop = False
            # everything already queued goes in one round trip (a pipeline on Redis)
            while not self._outq.empty() and len(batch) < 256:
                nxt = self._outq.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._deliver_batch(batch)
            for _ in range(len(batch) + stop):
                self._outq.task_done()
            if stop:
                return

    async def _deliver_batch(self, batch: list[tuple[str, bytes, str | None]]) -> None:
        for attempt in range(5):
            try:
                reached = await self._send_batch([(c, d) for c, d, _ in batch])
                self.stats["published"] += len(batch)
                # a request nobody listens to (a dead node's channel) fails now instead of at its timeout
                for (channel, _, rid), n in zip(batch, reached):
                    fut = self._waiting.get(rid) if rid else None
                    if n == 0 and fut is not None and not fut.done():
                        fut.set_exception(RemoteError("unreachable", f"nobody listens on {channel}"))
                return
            except Exception as e:  # a transient Redis outage must not kill the sender task
                log.warning("bus send failed (attempt %d): %s", attempt + 1, e)
                await asyncio.sleep(0.2 * (attempt + 1))
        log.error("dropping %d bus messages after repeated send failures", len(batch))

    def _dispatch(self, channel: str, data: bytes) -> None:
        self.stats["received"] += 1
        try:
            env = decode(data)
            kind = env["k"]
        except Exception:
            log.warning("undecodable bus message on %s", channel)
            return
        if kind == "rep":
            fut = self._waiting.get(env.get("r"))
            if fut is not None and not fut.done():
                if env.get("ok"):
                    fut.set_result(env.get("b"))
                else:
                    fut.set_exception(RemoteError(env.get("code") or "error", env.get("message") or ""))
        elif kind == "msg":
            handler = self._handlers.get(channel)
            if handler is not None:
                try:
                    result = handler(env.get("b"))
                    if inspect.isawaitable(result):
                        self._spawn(result)
                except Exception:
                    log.exception("bus handler for %s failed", channel)
        elif kind == "req":
            responder = self._responders.get(channel)
            if responder is not None:
                self._spawn(self._respond(responder, env))

    def _spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respond(self, responder: Responder, env: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"k": "rep", "r": env.get("r")}
        try:
            reply.update(ok=True, b=await responder(env.get("b")))
        except Exception as e:
            code = getattr(e, "code", None)
            if not isinstance(code, str):
                log.exception("request handler failed")
                code = "internal"
            reply.update(ok=False, code=code, message=getattr(e, "message", None) or str(e))
        to = env.get("to")
        if to:
            self._send(to, reply)


class MemoryHub:
    """The shared medium of MemoryBuses: which bus listens to which channel."""

    def __init__(self) -> None:
        self.listeners: dict[str, set[MemoryBus]] = {}

    def send(self, channel: str, data: bytes) -> int:
        buses = list(self.listeners.get(channel, ()))
        for bus in buses:
            bus._rxq.put_nowait((channel, data))
        return len(buses)


class MemoryBus(Bus):
    def __init__(self, hub: MemoryHub, inbox: str | None = None) -> None:
        super().__init__(inbox)
        self.hub = hub
        self._rxq: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._reader: asyncio.Task | None = None

    async def _open(self) -> None:
        self._reader = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        while True:
            channel, data = await self._rxq.get()
            self._dispatch(channel, data)

    async def _send_batch(self, batch: list[tuple[str, bytes]]) -> list[int]:
        return [self.hub.send(channel, data) for channel, data in batch]

    async def _listen(self, channel: str) -> None:
        self.hub.listeners.setdefault(channel, set()).add(self)

    async def _unlisten(self, channel: str) -> None:
        self.hub.listeners.get(channel, set()).discard(self)

    async def _shut(self) -> None:
        for subs in self.hub.listeners.values():
            subs.discard(self)
        if self._reader is not None:
            self._reader.cancel()


class RedisBus(Bus):
    """Redis pub/sub: one connection for publishing (pipelined), one pub/sub connection for reading."""

    def __init__(self, url: str, inbox: str | None = None, prefix: str = "basement:") -> None:
        super().__init__(inbox)
        self.url = url
        self.prefix = prefix
        self._redis: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task | None = None
        self._channels: set[str] = set()

    async def _open(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(self.url)
        await self._redis.ping()
        self._pubsub = self._redis.pubsub()
        self._reader = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        n = len(self.prefix)
        while True:
            try:
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                m = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                self.connected = True
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # redis-py resubscribes on reconnect; until then requests time out on their own
                self.connected = False
                log.warning("bus connection lost: %s", e)
                await asyncio.sleep(0.5)
                continue
            if m is not None and m.get("type") == "message":
                channel = m["channel"].decode() if isinstance(m["channel"], bytes) else m["channel"]
                self._dispatch(channel[n:], m["data"])

    async def _send_batch(self, batch: list[tuple[str, bytes]]) -> list[int]:
        if len(batch) == 1:
            return [await self._redis.publish(self.prefix + batch[0][0], batch[0][1])]
        pipe = self._redis.pipeline(transaction=False)
        for channel, data in batch:
            pipe.publish(self.prefix + channel, data)
        return list(await pipe.execute())

    async def _listen(self, channel: str) -> None:
        self._channels.add(channel)
        await self._pubsub.subscribe(self.prefix + channel)

    async def _unlisten(self, channel: str) -> None:
        self._channels.discard(channel)
        await self._pubsub.unsubscribe(self.prefix + channel)

    async def _shut(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
