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

Robustness: every envelope that arrives is checked (size, msgpack limits, shape) before anything
acts on it; a bad one is counted (`stats["malformed"]`, exported as `basement_bus_malformed`) and
logged, never allowed to end the reader task. What a Bus holds is bounded: at most `max_queued`
envelopes wait to be sent and at most `max_inflight` handlers run at once; beyond that a message is
dropped and counted (`stats["dropped"]`), and a request is answered `overloaded` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack

from signalling.cluster.redisconn import RedisTarget, as_target

log = logging.getLogger("basement.cluster.bus")

Handler = Callable[[dict[str, Any]], Any]  # sync, or returning an awaitable (run as a task)
Responder = Callable[[Any], Awaitable[Any]]

# An SDP offer is a few KiB and a client message at most 256 KiB (the WebSocket limit): 1 MiB leaves
# room for any legitimate envelope while bounding what one message can make a process allocate.
MAX_MESSAGE_BYTES = 1 << 20
MAX_CHANNEL_CHARS = 200
MAX_ID_CHARS = 64
MAX_ERROR_CHARS = 2000
# Envelopes waiting for the transport (they pile up only while Redis is unreachable: ~10 s of a busy
# node's traffic) and handlers running at once (each request is one task).
MAX_QUEUED = 10_000
MAX_INFLIGHT = 1_000
KINDS = ("msg", "req", "rep")


class RemoteError(Exception):
    """A request failed on the far side (code from the remote error) or got no reply (code "timeout")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BadEnvelope(ValueError):
    """Bytes from the bus that are not an acceptable envelope; `str(e)` says why (for the log)."""


def encode(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def decode(data: bytes) -> Any:
    """Decode one msgpack value of at most MAX_MESSAGE_BYTES; anything else is a BadEnvelope.

    The size check comes first so a huge message is refused before it is parsed; msgpack itself
    bounds nesting (StackError), caps every string/array/map length at the input's length (a
    header claiming 4 GiB cannot make it allocate), and refuses non-string map keys.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BadEnvelope(f"not bytes but {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise BadEnvelope(f"larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        return msgpack.unpackb(data, raw=False)
    except Exception as e:  # FormatError, StackError, ExtraData, UnicodeDecodeError, ValueError, ...
        raise BadEnvelope(f"undecodable msgpack ({type(e).__name__})") from None


def valid_channel(channel: Any) -> bool:
    return (isinstance(channel, str) and 0 < len(channel) <= MAX_CHANNEL_CHARS and channel.isprintable()
            and not any(c.isspace() for c in channel))


def _short_str(env: dict[str, Any], key: str, limit: int) -> str:
    value = env.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise BadEnvelope(f"{key!r} must be a string of 1-{limit} characters")
    return value


def parse_envelope(data: bytes) -> dict[str, Any]:
    """Decode and check one envelope's shape; the result is safe for the dispatcher to act on."""
    env = decode(data)
    if not isinstance(env, dict):
        raise BadEnvelope(f"envelope is a {type(env).__name__}, not a map")
    kind = env.get("k")
    if kind not in KINDS:
        raise BadEnvelope("'k' is not one of msg/req/rep")
    if kind == "req":
        _short_str(env, "r", MAX_ID_CHARS)
        if not valid_channel(env.get("to")):
            raise BadEnvelope("'to' is not a channel name")
    elif kind == "rep":
        _short_str(env, "r", MAX_ID_CHARS)
        if not isinstance(env.get("ok"), bool):
            raise BadEnvelope("'ok' must be true or false")
        if not env["ok"]:
            code, message = env.get("code", "error"), env.get("message", "")
            if not isinstance(code, str) or not 0 < len(code) <= MAX_ID_CHARS or not isinstance(message, str):
                raise BadEnvelope("an error reply needs a string 'code' and 'message'")
            env["code"], env["message"] = code, message[:MAX_ERROR_CHARS]
    return env


class Bus(ABC):
    """One endpoint. `inbox` is the channel replies (and, for a replica, node events) come to."""

    def __init__(self, inbox: str | None = None, max_queued: int = MAX_QUEUED,
                 max_inflight: int = MAX_INFLIGHT) -> None:
        self.inbox = inbox or "inbox:" + secrets.token_hex(8)
        if not valid_channel(self.inbox):
            raise ValueError(f"bad inbox channel name {self.inbox!r}")
        self.max_queued = max_queued
        self.max_inflight = max_inflight
        self.connected = False
        self._handlers: dict[str, Handler] = {}
        self._responders: dict[str, Responder] = {}
        self._waiting: dict[str, asyncio.Future] = {}
        self._outq: asyncio.Queue[tuple[str, bytes, str | None] | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._sender: asyncio.Task | None = None
        self.stats = {"requests": 0, "timeouts": 0, "errors": 0, "published": 0, "received": 0,
                      "malformed": 0, "dropped": 0}
        self._quiet_until = 0.0  # rate limit for drop/malformed log lines (a flood must not flood the log)
        self._unlogged = 0

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
    def publish(self, channel: str, body: Any) -> bool:
        """Queue a message; never blocks, keeps order with every other send of this Bus.

        False when it was dropped (counted) because `max_queued` envelopes are already waiting.
        """
        return self._send(channel, {"k": "msg", "b": body})

    def reject(self, channel: str, reason: str, counter: str = "malformed") -> None:
        """Count and log (rate-limited) a message this bus or one of its handlers refused."""
        self.stats[counter] += 1
        now = time.monotonic()
        if now < self._quiet_until:
            self._unlogged += 1
            return
        more = f" (+{self._unlogged} more since the last report)" if self._unlogged else ""
        log.warning("bus message on %s %s: %s%s", channel, "dropped" if counter == "dropped" else "refused",
                    reason, more)
        self._quiet_until, self._unlogged = now + 1.0, 0

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
        if not self._send(channel, {"k": "req", "r": rid, "to": self.inbox, "b": body}, rid):
            self._waiting.pop(rid, None)
            self.stats["errors"] += 1
            raise RemoteError("overloaded", f"{self.max_queued} bus messages are waiting to be sent")
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
    def _send(self, channel: str, envelope: dict[str, Any], rid: str | None = None) -> bool:
        # checked here, at the caller, so one bad message can never fail a whole batch in the sender
        if not valid_channel(channel):
            raise ValueError(f"bad bus channel name {channel!r}")
        data = encode(envelope)
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueError(f"bus message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
        if self._outq.qsize() >= self.max_queued:
            self.reject(channel, f"{self.max_queued} messages already wait to be sent", "dropped")
            return False
        self._outq.put_nowait((channel, data, rid))
        return True

    def _transient(self, error: Exception) -> bool:
        """Whether a send failure may succeed when retried (the transport was away)."""
        return isinstance(error, (OSError, asyncio.TimeoutError))

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
                if not self._transient(e):
                    # not an outage: send one by one so only the message at fault is lost
                    log.exception("bus send failed; sending %d messages one by one", len(batch))
                    await self._deliver_singly(batch)
                    return
                log.warning("bus send failed (attempt %d): %s", attempt + 1, e)
                await asyncio.sleep(0.2 * (attempt + 1))
        self.stats["dropped"] += len(batch)
        log.error("dropping %d bus messages after repeated send failures", len(batch))

    async def _deliver_singly(self, batch: list[tuple[str, bytes, str | None]]) -> None:
        for channel, data, rid in batch:
            try:
                (n,) = await self._send_batch([(channel, data)])
            except Exception as e:
                self.reject(channel, f"send failed: {e}", "dropped")
                n = None
            fut = self._waiting.get(rid) if rid else None
            if fut is not None and not fut.done() and not n:
                fut.set_exception(RemoteError("unreachable", f"could not deliver to {channel}"))
            if n is not None:
                self.stats["published"] += 1

    def _dispatch(self, channel: str, data: bytes) -> None:
        """Act on one received envelope. Never raises: the reader task that calls it must survive."""
        self.stats["received"] += 1
        try:
            env = parse_envelope(data)
        except BadEnvelope as e:
            self.reject(channel, str(e))
            return
        try:
            self._act(channel, env)
        except Exception:  # a bug, not bad input: still must not end the reader
            self.stats["malformed"] += 1
            log.exception("bus dispatch on %s failed", channel)

    def _act(self, channel: str, env: dict[str, Any]) -> None:
        kind = env["k"]
        if kind == "rep":
            fut = self._waiting.get(env["r"])
            if fut is not None and not fut.done():
                if env["ok"]:
                    fut.set_result(env.get("b"))
                else:
                    fut.set_exception(RemoteError(env["code"], env["message"]))
        elif kind == "msg":
            handler = self._handlers.get(channel)
            if handler is not None:
                try:
                    result = handler(env.get("b"))
                    if inspect.isawaitable(result):
                        if len(self._tasks) >= self.max_inflight:
                            if inspect.iscoroutine(result):
                                result.close()
                            self.reject(channel, f"{self.max_inflight} handlers already running", "dropped")
                        else:
                            self._spawn(result)
                except Exception:
                    log.exception("bus handler for %s failed", channel)
        elif kind == "req":
            responder = self._responders.get(channel)
            if responder is None:
                return
            if len(self._tasks) >= self.max_inflight:
                self.reject(channel, f"{self.max_inflight} requests already running", "dropped")
                self._reply(env["to"], {"k": "rep", "r": env["r"], "ok": False, "code": "overloaded",
                                        "message": "the node is handling too many requests"})
                return
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
            if not isinstance(code, str) or not code:
                log.exception("request handler failed")
                code = "internal"
            message = getattr(e, "message", None) or str(e)
            # the receiver refuses longer fields (parse_envelope): trim here so the reply still arrives
            reply.update(ok=False, code=code[:MAX_ID_CHARS], message=str(message)[:MAX_ERROR_CHARS])
        self._reply(env["to"], reply)

    def _reply(self, to: str, reply: dict[str, Any]) -> None:
        try:
            self._send(to, reply)
        except (ValueError, TypeError) as e:  # a result msgpack cannot carry, or one over the size limit
            log.error("reply %s could not be sent: %s", reply.get("r"), e)
            self._send(to, {"k": "rep", "r": reply["r"], "ok": False, "code": "internal",
                            "message": "the reply could not be encoded"})


class MemoryHub:
    """The shared medium of MemoryBuses: which listener takes which channel. A listener is a MemoryBus
    or the parent's end of a worker's wire (signalling.cluster.localhub); each has `receive`."""

    def __init__(self) -> None:
        self.listeners: dict[str, set[Any]] = {}

    def send(self, channel: str, data: bytes) -> int:
        listeners = list(self.listeners.get(channel, ()))
        for listener in listeners:
            listener.receive(channel, data)
        return len(listeners)


class MemoryBus(Bus):
    def __init__(self, hub: MemoryHub, inbox: str | None = None) -> None:
        super().__init__(inbox)
        self.hub = hub
        self._rxq: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._reader: asyncio.Task | None = None

    async def _open(self) -> None:
        self._reader = asyncio.ensure_future(self._read_loop())

    def receive(self, channel: str, data: bytes) -> None:
        self._rxq.put_nowait((channel, data))

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
    """Redis pub/sub: one connection for publishing (pipelined), one pub/sub connection for reading.

    `target`: a URL, or a RedisTarget (URL + password + TLS CA, see redisconn).
    """

    def __init__(self, target: str | RedisTarget, inbox: str | None = None, prefix: str = "basement:",
                 **limits: int) -> None:
        super().__init__(inbox, **limits)
        self.target = as_target(target)
        self.prefix = prefix
        self._redis: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task | None = None
        self._channels: set[str] = set()

    async def _open(self) -> None:
        self._redis = self.target.client()
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
                channel = m["channel"].decode(errors="replace") if isinstance(m["channel"], bytes) else m["channel"]
                self._dispatch(channel[n:], m["data"])

    def _transient(self, error: Exception) -> bool:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        return isinstance(error, (RedisConnectionError, RedisTimeoutError)) or super()._transient(error)

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
