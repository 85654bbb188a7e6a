"""The HTTP side: WebSocket signalling at /ws, the web client at /, health probes, metrics server."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sfu.peer import MediaError
from sfu.sdp import SdpError
from signalling import protocol
from signalling.protocol import ProtocolError
from signalling.rooms import Participant, RoomManager

log = logging.getLogger("basement.signalling")
STATIC = Path(__file__).parent / "static"

ROOMS_KEY = web.AppKey("rooms", RoomManager)
STATE_KEY = web.AppKey("state", dict)


class Connection:
    """One client WebSocket: a reader loop dispatching messages, a writer draining one queue.

    The queue is handed to the Participant on join, so replies and room events keep one order.
    """

    def __init__(self, ws: web.WebSocketResponse, rooms: RoomManager) -> None:
        self.ws = ws
        self.rooms = rooms
        self.participant: Participant | None = None
        self.out: asyncio.Queue = asyncio.Queue()

    def reply(self, msg: dict[str, Any]) -> None:
        if self.participant is not None:
            self.participant.send(msg)
        else:
            self.out.put_nowait(msg)

    async def writer(self) -> None:
        try:
            while True:
                msg = await self.out.get()
                if msg is None or self.ws.closed:
                    break
                await self.ws.send_str(json.dumps(msg))
        except (ConnectionError, RuntimeError):
            pass
        finally:
            if not self.ws.closed:
                await self.ws.close()

    async def handle(self, raw: Any) -> None:
        ref = None
        try:
            msg = protocol.parse(raw)
            ref = msg.get("id")
            await self.dispatch(msg, ref)
        except ProtocolError as e:
            if e.ref is None:
                e.ref = ref
            self.reply(e.to_message())
        except (MediaError, SdpError) as e:
            code = getattr(e, "code", "invalid_sdp")
            self.reply(ProtocolError(code, str(e), ref).to_message())
        except Exception:
            log.exception("internal error handling a message")
            err = ProtocolError("internal", "internal server error; the request was not applied", ref)
            self.reply(err.to_message())

    async def dispatch(self, msg: dict[str, Any], ref: Any) -> None:
        t = msg["type"]
        p = self.participant
        if t == "ping":
            self.reply({"type": "pong", **({"id": ref} if ref is not None else {})})
            return
        if t == "join":
            if p is not None:
                raise ProtocolError("already_joined", "this connection has already joined a room", ref)
            p, joined = await self.rooms.join(msg["room"], msg.get("name") or "", msg.get("grant"), self.out, ref)
            self.participant = p
            p.send({**joined, **_ref(ref)})
            return
        if p is None:
            raise ProtocolError("not_joined", f"{t}: send 'join' first", ref)
        node = self.rooms.node
        if t == "offer":
            answer = await node.publish(p.id, msg["sdp"])
            self.reply({"type": "answer", "target": "publisher", "sdp": answer, **_ref(ref)})
        elif t == "answer":
            await node.answer(p.id, msg["sdp"])
        elif t == "trickle":
            await node.candidate(p.id, msg["target"], msg["candidate"])
        elif t == "mute":
            await node.mute(p.id, msg["track"], msg["muted"])
        elif t == "subscription":
            result = await node.subscription(p.id, msg["track"], msg.get("layer"), msg.get("width"), msg.get("height"))
            self.reply({"type": "subscription", "track": msg["track"], **result, **_ref(ref)})
        elif t == "leave":
            p.send({"type": "left", "reason": "left", **_ref(ref)})
            await self.rooms.leave(p, "left")
            p.close()

    async def close(self) -> None:
        if self.participant is not None:
            await self.rooms.leave(self.participant, "disconnected")
            self.participant.close()


def _ref(ref: Any) -> dict[str, Any]:
    return {"id": ref} if ref is not None else {}


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    # frames a little over our limit still reach the parser, which answers `too_large`; aiohttp closes
    # the socket (1009) only for frames over 1 MiB
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1024 * 1024)
    await ws.prepare(request)
    conn = Connection(ws, request.app[ROOMS_KEY])
    writer = asyncio.ensure_future(conn.writer())
    try:
        async for m in ws:
            if m.type == WSMsgType.TEXT:
                await conn.handle(m.data)
            elif m.type == WSMsgType.BINARY:
                await conn.handle(m.data)
            elif m.type == WSMsgType.ERROR:
                break
    finally:
        await conn.close()
        conn.out.put_nowait(None)
        try:
            await asyncio.wait_for(writer, 2.0)
        except (TimeoutError, asyncio.CancelledError):
            writer.cancel()
    return ws


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


def create_app(rooms: RoomManager) -> web.Application:
    app = web.Application(client_max_size=protocol.MAX_MESSAGE_BYTES)
    app[ROOMS_KEY] = rooms
    app[STATE_KEY] = {}
    app.router.add_get("/", index)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_static("/static/", STATIC)
    return app


def metrics_app(registry: CollectorRegistry) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
