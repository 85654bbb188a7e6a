"""A server that stops says so to every connected client: a close frame, 1001 going away."""

from __future__ import annotations

import asyncio

from aiohttp import WSCloseCode

from tests.support.media import Tone


async def test_stopping_the_server_closes_every_websocket_as_going_away(make_server):
    srv = await make_server()
    from signalling.protocol.client import Client

    clients = [Client(srv.url) for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            await c.connect()
            await c.join("bye", f"p{i}")
        await clients[0].publish(audio=Tone())
        await clients[1].wait_track(kind="audio", timeout=20)
        # aiohttp's shutdown waits for every WebSocket handler to end; a connected client never ends
        # its own, so without the close frames the server hung here for 30 s and then dropped them
        await asyncio.wait_for(srv.stop(), 20)
        for c in clients:
            await c.wait_for(lambda c=c: c.ws is not None and c.ws.closed, timeout=10)
            assert c.ws.close_code == WSCloseCode.GOING_AWAY, c.ws.close_code
    finally:
        for c in clients:
            await c.close()
