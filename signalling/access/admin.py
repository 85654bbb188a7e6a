"""Admin HTTP API for room configuration, as an aiohttp sub-app.

Mount with `app.add_subapp("/admin", admin_app(registry, settings.admin_key))`. Every request
needs `Authorization: Bearer <admin_key>`; without a configured key the API refuses to exist.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from signalling.access.gating import GateError, RoomConfig, RoomRegistry, validate_room_name
from signalling.httpjson import BodyError, read_object

MAX_BODY = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def admin_app(registry: RoomRegistry, admin_key: str, *, chain_ids: Iterable[int] | None = None,
              on_change: Callable[[str], Awaitable[None]] | None = None) -> web.Application:
    """Routes: GET /rooms, GET/PUT/DELETE /rooms/{name}.

    `chain_ids`, when given, are the chains the server can evaluate: gates naming any other chain
    are rejected at PUT time rather than denying everyone at join time. `on_change(room)` runs after
    a PUT (e.g. re-check who is inside now, instead of at the next periodic round).
    """
    if not admin_key:
        raise ValueError("admin API needs an admin_key (set BASEMENT_ADMIN_KEY); refusing to start without one")
    expected = f"Bearer {admin_key}".encode()
    served = None if chain_ids is None else tuple(chain_ids)

    @web.middleware
    async def require_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "admin key required"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        if "name" in request.match_info:
            try:
                validate_room_name(request.match_info["name"])
            except GateError as exc:
                return _error(400, str(exc))
        return await handler(request)

    async def list_rooms(_: web.Request) -> web.Response:
        return web.json_response({"rooms": [r.to_json() for r in await registry.list()]})

    async def get_room(request: web.Request) -> web.Response:
        cfg = await registry.get(request.match_info["name"])
        if cfg is None:
            return _error(404, f"no room {request.match_info['name']!r}")
        return web.json_response(cfg.to_json())

    async def put_room(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            body = await read_object(request, max_bytes=MAX_BODY, empty={})
            cfg = RoomConfig.from_json(name, body, chain_ids=served)
        except BodyError as exc:
            return _error(exc.status, exc.reason)
        except GateError as exc:
            return _error(400, str(exc))
        created = await registry.get(name) is None
        await registry.put(cfg)
        if on_change is not None:
            await on_change(name)
        return web.json_response(cfg.to_json(), status=201 if created else 200)

    async def delete_room(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not await registry.delete(name):
            return _error(404, f"no room {name!r}")
        return web.Response(status=204)

    app = web.Application(middlewares=[require_key])
    app.add_routes([
        web.get("/rooms", list_rooms),
        web.get("/rooms/{name}", get_room),
        web.put("/rooms/{name}", put_room),
        web.delete("/rooms/{name}", delete_room),
    ])
    return app
