"""Assembles and runs the all-in-one server: signalling + SFU in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sfu import transport
from sfu.metrics import media_registry
from sfu.node import SfuNode
from signalling.app import create_app, metrics_app
from signalling.config import Settings
from signalling.rooms import RoomManager, admit_everyone

log = logging.getLogger("basement.server")


@dataclass
class Server:
    settings: Settings
    node: SfuNode
    rooms: RoomManager
    app: web.Application
    runners: list[web.AppRunner] = field(default_factory=list)
    port: int = 0
    metrics_port: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    async def stop(self) -> None:
        await self.node.close()
        for r in self.runners:
            await r.cleanup()


async def start_server(settings: Settings) -> Server:
    """Start on the configured ports (0 = pick a free one; the chosen ports are on the Server)."""
    transport.configure_ice(settings.ice_addresses, settings.public_ip)
    rooms_holder: dict[str, RoomManager] = {}

    def deliver(pid: str, msg: dict[str, Any]) -> None:
        rooms_holder["rooms"].deliver(pid, msg)

    node = SfuNode(deliver, speaker_interval=settings.speaker_interval_ms / 1000)
    rooms = RoomManager(node, admit_everyone, settings.max_participants_per_room)
    rooms_holder["rooms"] = rooms
    app = create_app(rooms)
    server = Server(settings, node, rooms, app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    server.runners.append(runner)
    server.port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked for
    if settings.metrics_port:
        mrunner = web.AppRunner(metrics_app(media_registry()), access_log=None)
        await mrunner.setup()
        msite = web.TCPSite(mrunner, settings.metrics_host, settings.metrics_port)
        await msite.start()
        server.runners.append(mrunner)
        server.metrics_port = msite._server.sockets[0].getsockname()[1]
    return server


async def serve_forever(settings: Settings) -> None:
    server = await start_server(settings)
    print(f"Basement is running: open {server.url}/  (metrics on "
          f"http://{settings.metrics_host}:{server.metrics_port}/metrics)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
