"""The one way a Basement process starts an HTTP server (signalling app, probes or /metrics)."""

from __future__ import annotations

import ssl

from aiohttp import web


async def start_app(app: web.Application, host: str, port: int,
                    ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (HTTPS with `ssl_context`); returns the runner (call `cleanup()` to
    stop) and the port really bound, which is the one to announce when 0 (any free port) was asked for."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    return runner, server.sockets[0].getsockname()[1]
