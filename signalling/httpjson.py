"""Reading a JSON object from an HTTP request body, safely: bounded size and nesting (safejson),
and a precise 4xx reason instead of an exception escaping into aiohttp's 500 page; and reading a
response body (of a service we call) without ever holding more than a limit."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from signalling import safejson


class BodyError(Exception):
    """The body cannot be used; `status` and `reason` are the HTTP answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


async def read_body(request: web.Request, *, max_bytes: int) -> bytes:
    """The whole body, or BodyError 413 as soon as it is known to exceed `max_bytes`."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyError(f"body larger than {max_bytes} bytes", 413)
    # one read may return only the first chunk; read on until EOF or one byte past the limit
    raw = bytearray()
    while len(raw) <= max_bytes:
        chunk = await request.content.read(max_bytes + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > max_bytes:
        raise BodyError(f"body larger than {max_bytes} bytes", 413)
    return bytes(raw)


async def read_object(request: web.Request, *, max_bytes: int, empty: dict[str, Any] | None = None,
                      max_depth: int = safejson.DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """The body as a JSON object; `empty` (when given) stands for an empty body."""
    raw = await read_body(request, max_bytes=max_bytes)
    if empty is not None and not raw.strip():
        return dict(empty)
    try:
        body = safejson.loads(raw, max_bytes=max_bytes, max_depth=max_depth)
    except safejson.JsonError as exc:
        raise BodyError(f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise BodyError(f"malformed JSON body: expected an object, got {type(body).__name__}")
    return body


def error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


async def read_at_most(r: aiohttp.ClientResponse, limit: int) -> bytes:
    """A response body, but never more than `limit` bytes (one `read(n)` may return just one chunk)."""
    data = bytearray()
    while len(data) < limit:
        chunk = await r.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)
