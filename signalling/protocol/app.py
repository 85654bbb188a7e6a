"""The HTTP side: WebSocket signalling at /ws, the web client at /, health probes, metrics server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sfu.api import MediaError, SdpError
from signalling.access.throttle import client_key
from signalling.config import Settings
from signalling.protocol import messages
from signalling.protocol.edge import EDGE_KEY, EDGE_STATS, Edge, TokenBucket, install
from signalling.protocol.messages import ProtocolError
from signalling.protocol.replay import encode
from signalling.protocol.rooms import Participant, RoomManager, SendQueue

log = logging.getLogger("basement.signalling")
STATIC = Path(__file__).parent.parent / "web" / "static"

ROOMS_KEY = web.AppKey("rooms", RoomManager)
STATE_KEY = web.AppKey("state", dict)
SOCKETS_KEY = web.AppKey("sockets", set)  # the open signalling WebSockets, closed when the server stops


class _Handover(dict):
    """Queued on a connection that resumed a participant: its writer sends `resumed` and the
    messages to write again, then drains the participant's queue instead of its own."""

    def __init__(self, resumed: dict[str, Any], replay: list[str], queue: SendQueue) -> None:
        super().__init__(type="handover")
        self.resumed, self.replay, self.queue = resumed, replay, queue


class Connection:
    """One client WebSocket: a reader loop dispatching messages, a writer draining one queue.

    The queue is handed to the Participant on join, so replies and room events keep one order. It
    outlives the socket when the participant waits for a resume (docs/protocol.md "Reconnecting"):
    the next connection's writer then drains it.
    """

    def __init__(self, ws: web.WebSocketResponse, rooms: RoomManager, bucket: TokenBucket | None = None,
                 send_queue: int = 1024, strikes: int = 0, transport: Any = None, address: str = "") -> None:
        self.ws = ws
        self.rooms = rooms
        self.participant: Participant | None = None
        self.out = SendQueue(send_queue)
        self.out.on_overflow = self.abort
        self.bucket = bucket
        self.max_strikes = strikes  # refused-for-rate messages in a row before the socket is closed
        self.strikes = 0
        self.transport = transport
        self.aborted = False
        self.closing = False  # the server decided to close; stop reading and applying messages
        self.superseded = False  # a resume on another socket took the participant over
        self.writer_task: asyncio.Task | None = None
        self.worker_task: asyncio.Task | None = None  # handles what the socket reads (_work)
        self.address = address  # the client's (an IPv6 client's /64): participants waiting to resume are counted by it

    def reply(self, msg: dict[str, Any]) -> None:
        if self.participant is not None:
            self.participant.send(msg)
        elif not self.out.put(msg):
            self.out.end()

    def abort(self) -> None:
        """The client does not read what we send: drop the connection now.

        A graceful close would queue behind everything the client is not reading, and the writer
        is blocked on that very socket; aborting the transport frees both."""
        if self.aborted:
            return
        self.aborted = self.closing = True
        EDGE_STATS.closed["not_reading"] += 1
        log.warning("client is not reading (%d messages queued); disconnecting", self.out.qsize())
        if self.transport is not None:
            self.transport.abort()

    def take_over(self) -> None:
        """A resume on another socket took our participant: stop reading and writing for it now,
        without the leave a closed socket means; its queue and numbering carry on over there."""
        self.superseded = self.closing = True
        if self.writer_task is not None:
            # cancelled at its await: it never takes another message off the participant's queue,
            # and one it was writing is already numbered in the replay
            self.writer_task.cancel()
        if self.transport is not None:
            self.transport.abort()

    async def writer(self) -> None:
        try:
            while True:
                msg = await self.out.get()
                if msg is None:
                    break
                if isinstance(msg, _Handover):
                    await self.ws.send_str(json.dumps(msg.resumed))
                    for text in msg.replay:
                        await self.ws.send_str(text)
                    self.out = msg.queue
                    self.out.on_overflow = self.abort
                    continue
                p = self.participant
                # numbered (and kept) before it is written: if the socket is gone, a resume writes it
                replay = p.replay if p is not None and self.out is p.queue else None
                text = replay.frame(msg) if replay is not None else encode(msg)
                if self.ws.closed:
                    break
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            # (a socket taken over by a resume was aborted: there is no one to say goodbye to)
            if not self.ws.closed and not self.aborted and not self.superseded:
                code = WSCloseCode.POLICY_VIOLATION if self.closing else WSCloseCode.OK
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.close(code=code, message=b"rate limit exceeded" if self.closing else b"")

    def allowed(self) -> bool:
        """Take a token for one inbound message; False (and an error, or the close) when over the rate."""
        if self.bucket is None or self.bucket.take():
            self.strikes = 0
            return True
        self.strikes += 1
        EDGE_STATS.rate_limited += 1
        b = self.bucket
        err = ProtocolError("rate_limited", f"more than {b.burst} messages at once or {b.rate:g} per second "
                                            f"(ws_burst, ws_rate_per_s); the message was not applied")
        self.reply(err.to_message())
        if self.max_strikes and self.strikes >= self.max_strikes:
            EDGE_STATS.closed["rate"] += 1
            self.closing = True
            self.reply(ProtocolError("rate_limited", f"{self.strikes} messages in a row over the rate limit; "
                                                     "closing the connection").to_message())
            self.end()
        return False

    def end(self) -> None:
        if self.participant is not None:
            self.participant.close()
        else:
            self.out.end()

    async def handle(self, raw: Any) -> None:
        if self.closing:
            return  # not read: after a takeover the client sends it again on its new socket
        p = self.participant
        if p is not None:
            # counted whatever becomes of it: `resumed` tells the client how many were read
            p.received += 1
            p.heard()
        if not self.allowed():
            return
        ref = None
        try:
            msg = messages.parse(raw)
            ref = msg.get("id")
            if p is None:
                await self.dispatch(msg, ref)
            else:
                async with p.lock:  # (another socket's message of this participant may be running)
                    await self.dispatch(msg, ref)
        except ProtocolError as e:
            if e.ref is None:
                e.ref = ref
            EDGE_STATS.bad_messages[e.code] += 1
            self.reply(e.to_message())
        except (MediaError, SdpError) as e:
            code = getattr(e, "code", "invalid_sdp")
            EDGE_STATS.bad_messages[code] += 1
            self.reply(ProtocolError(code, str(e), ref).to_message())
        except Exception:
            log.exception("internal error handling a message")
            EDGE_STATS.bad_messages["internal"] += 1
            err = ProtocolError("internal", "internal server error; the request was not applied", ref)
            self.reply(err.to_message())

    async def dispatch(self, msg: dict[str, Any], ref: Any) -> None:
        t = msg["type"]
        p = self.participant
        if t == "ping":
            pong: dict[str, Any] = {"type": "pong", **_ref(ref)}
            if p is not None:
                if msg.get("n") is not None and p.replay is not None:
                    p.replay.ack(msg["n"])
                pong["received"] = p.received
            self.reply(pong)
            return
        if t in ("join", "resume") and p is not None:
            raise ProtocolError("already_joined", "this connection has already joined a room", ref)
        if t == "join":
            p, joined = await self.rooms.join(msg["room"], msg.get("name") or "", msg.get("grant"), self.out, ref,
                                              p2p=msg.get("p2p") is True)
            self.participant = p
            p.on_takeover = self.take_over
            p.send({**joined, **_ref(ref)})
            return
        if t == "resume":
            p, resumed, replay = await self.rooms.resume(msg["token"], msg["n"])
            self.participant = p
            p.on_takeover = self.take_over
            self.out.put(_Handover({**resumed, **_ref(ref)}, replay, p.queue))
            return
        if p is None:
            raise ProtocolError("not_joined", f"{t}: send 'join' first", ref)
        node = self.rooms.node
        if t == "offer":
            encryption = msg.get("encryption") or "none"
            _check_e2ee(p.e2ee, encryption, msg["sdp"], ref)
            answer = await node.publish(p.id, msg["sdp"], msg.get("sources"), encryption)
            self.reply({"type": "answer", "target": "publisher", "sdp": answer, **_ref(ref)})
        elif t == "answer":
            await node.answer(p.id, msg["sdp"])
        elif t == "trickle":
            await node.candidate(p.id, msg["target"], msg["candidate"])
        elif t == "p2p_signal":
            await node.p2p_signal(p.id, msg["to"], msg["data"])
        elif t == "restart_ice":
            await node.restart_ice(p.id, msg["target"])  # the new offer is the answer to it
        elif t == "mute":
            await node.mute(p.id, msg["track"], msg["muted"])
            # a reply of its own when the request has an id, so a client can match it (the room gets
            # track_muted either way); without an id it is a notification, and a toggle flood does not
            # fill the sender's own queue with replies
            if ref is not None:
                self.reply({"type": "muted", "track": msg["track"], "muted": msg["muted"], **_ref(ref)})
        elif t == "unpublish":
            await node.unpublish(p.id, msg["track"])
            self.reply({"type": "unpublished", "track": msg["track"], **_ref(ref)})
        elif t == "subscription":
            result = await node.subscription(p.id, msg["track"], msg.get("layer"), msg.get("width"), msg.get("height"),
                                             msg.get("pinned"))
            self.reply({"type": "subscription", "track": msg["track"], **result, **_ref(ref)})
        elif t == "allocation":
            explained = await node.allocation(p.id)
            self.reply({"type": "allocation", **explained, **_ref(ref)})
        elif t == "leave":
            p.send({"type": "left", "reason": "left", **_ref(ref)})
            await self.rooms.leave(p, "left")
            p.close()

    async def close(self, clean: bool) -> bool:
        """The socket ended (`clean`: with a close frame from the client). True when the participant
        lives on without this connection: taken over by a resume, or waiting for one."""
        p = self.participant
        if p is None:
            return False
        if self.superseded:
            return True
        if not clean and not self.closing and self.rooms.detach(p, self.address):
            log.info("socket of %s dropped without a close: it may resume within %g s", p.id,
                     self.rooms.resume_grace_s)
            return True
        await self.rooms.leave(p, "disconnected")
        p.close()
        return False


def _ref(ref: Any) -> dict[str, Any]:
    return {"id": ref} if ref is not None else {}


def _check_e2ee(mode: str, encryption: str, sdp: str, ref: Any) -> None:
    """A publish offer against the room's end-to-end encryption (docs/e2ee.md). The SFU cannot see
    whether frames are encrypted, so it holds each client to what it declares; an offer with only
    data channels (no audio or video m-line) carries no media and passes either way."""
    if not any(line.startswith(("m=audio", "m=video")) for line in sdp.splitlines()):
        return
    if mode == "required" and encryption == "none":
        raise ProtocolError("e2ee_required", "this room requires end-to-end encryption: encrypt every track "
                                             "with SFrame and send the offer with encryption \"sframe\"", ref)
    if mode == "off" and encryption != "none":
        raise ProtocolError("e2ee_off", "this room does not use end-to-end encryption: publish unencrypted "
                                        "tracks (an encrypted one could be decoded by no one here)", ref)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    if request.app[STATE_KEY].get("draining"):
        # a cluster replica handing its participants over (Replica.shutdown): a resume must land on
        # another replica, which takes them from here
        raise web.HTTPServiceUnavailable(text="this server is shutting down: connect to another")
    edge = request.config_dict[EDGE_KEY]
    problem = edge.origin_problem(request)
    if problem:
        edge.stats.refused["origin"] += 1
        raise web.HTTPForbidden(text=problem)
    addr = client_key(edge.client_address(request))  # an IPv6 client counts per /64, as sign-in does
    if not edge.open_socket(addr):
        cap = edge.settings.ws_max_per_address
        raise web.HTTPTooManyRequests(text=f"more than {cap} open sockets from {addr} (ws_max_per_address)")
    try:
        return await _serve_socket(request, edge, addr)
    finally:
        edge.close_socket(addr)


async def _serve_socket(request: web.Request, edge: Edge, addr: str) -> web.WebSocketResponse:
    # frames a little over our limit still reach the parser, which answers `too_large`; aiohttp closes
    # the socket (1009) only for frames over 1 MiB
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1024 * 1024)
    await ws.prepare(request)
    sockets = request.app[SOCKETS_KEY]
    sockets.add(ws)
    s = edge.settings
    conn = Connection(ws, request.app[ROOMS_KEY], edge.bucket(), s.ws_send_queue, s.ws_rate_strikes,
                      request.transport, addr)
    ws_connection[ws] = conn
    writer = conn.writer_task = asyncio.ensure_future(conn.writer())
    # Messages are handled in order by a worker while this loop goes on reading: aiohttp answers a
    # client's ping (and sees the pong to its own) only inside receive(), so a socket whose handler
    # waited on a slow request (a join into a large room on a busy server can take seconds) missed
    # its heartbeats and was closed by the client, as if the server had gone.
    inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue(INBOX)
    worker = conn.worker_task = asyncio.ensure_future(_work(conn, inbox))
    clean = False  # the client sent a close frame (it left); otherwise the socket just dropped
    try:
        while not worker.done():
            m = await ws.receive()
            if m.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await inbox.put(m.data)  # a full inbox stops reading: a flood waits, it is not kept
            elif m.type == WSMsgType.CLOSE:
                clean = True
                break
            elif m.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            if conn.closing:
                break  # the writer sends what is queued, then the close frame
    except asyncio.CancelledError:
        worker.cancel()  # the server is stopping: the request in hand is not waited for
        raise
    finally:
        if not worker.done() and not worker.cancelling():
            try:  # what was read before the socket ended is handled, as it was sent
                await inbox.put(None)
                await worker
            except asyncio.CancelledError:
                worker.cancel()
                raise
        sockets.discard(ws)
        if await conn.close(clean):
            writer.cancel()  # the participant's queue is not ours to end
            await asyncio.wait({writer}, timeout=2.0)
        else:
            conn.out.end()
            try:
                await asyncio.wait_for(writer, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
    return ws


INBOX = 16  # messages read ahead of the one being handled, per socket


async def _work(conn: Connection, inbox: asyncio.Queue[str | bytes | None]) -> None:
    """Handle a socket's messages in the order they came, until the reader says it ended (None) or
    the connection is closing."""
    while (data := await inbox.get()) is not None:
        await conn.handle(data)
        if conn.closing:
            return


# the Connection serving each open WebSocket (drop_sockets)
ws_connection: weakref.WeakKeyDictionary[web.WebSocketResponse, Connection] = weakref.WeakKeyDictionary()


def drop_sockets(app: web.Application) -> int:
    """Drop every open signalling socket the way a lost network would (no close frame), so each
    client resumes its participant, through another server of the cluster; returns how many."""
    dropped = 0
    for ws in list(app[SOCKETS_KEY]):
        conn = ws_connection.get(ws)
        if conn is not None and conn.transport is not None:
            conn.transport.abort()
            dropped += 1
    return dropped


async def _close_sockets(app: web.Application) -> None:
    """The server stops: every signalling WebSocket gets its close frame now (1001, going away).

    aiohttp's shutdown otherwise waits for each WebSocket handler to end by itself, which a connected
    client never makes it do: `basement serve` took 31 s to exit after SIGTERM with 100 participants
    connected, and a pod would be killed first. The closes run together: a client that does not
    answer holds up only aiohttp's close timeout, once."""
    sockets = list(app[SOCKETS_KEY])
    await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                           for ws in sockets), return_exceptions=True)
    # a request still in hand (a join waiting on a stuck node) would hold the handler, and the
    # shutdown with it, until aiohttp's 60 s shutdown timeout
    for ws in sockets:
        conn = ws_connection.get(ws)
        if conn is not None and conn.worker_task is not None:
            conn.worker_task.cancel()


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if state.get("draining"):
        return web.json_response({"ready": False, "reason": "draining"}, status=503)
    if state.get("connected") is False:
        return web.json_response({"ready": False, "reason": "cluster store unreachable"}, status=503)
    return web.json_response({"ready": True})


def create_app(rooms: RoomManager, settings: Settings | None = None) -> web.Application:
    """The public HTTP app; `settings` gives the edge its limits and names (None: see below)."""
    app = web.Application(client_max_size=messages.MAX_MESSAGE_BYTES)
    if settings is None:
        # A caller that does not pass its settings does not know the deployment's public names or
        # proxies either: a Host check or per-address cap would refuse everyone behind an Ingress.
        settings = Settings(allowed_hosts=["*"], ws_max_per_address=0)
    install(app, Edge(settings))
    app[ROOMS_KEY] = rooms
    app[STATE_KEY] = {}
    app[SOCKETS_KEY] = set()
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/", index)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_static("/static/", STATIC)
    return app


def metrics_app(registry: CollectorRegistry,
                refresh: Callable[[], Awaitable[None]] | None = None) -> web.Application:
    """/metrics of `registry`; `refresh` (optional) is awaited first (the media workers' metrics)."""

    async def metrics(request: web.Request) -> web.Response:
        if refresh is not None:
            await refresh()
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
