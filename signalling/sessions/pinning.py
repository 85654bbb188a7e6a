"""PinningService: a client of the IPFS Pinning Service API (https://ipfs.github.io/pinning-services-api-spec/),
which Pinata, Filebase and other hosted pinning services speak, and Kubo's `ipfs pin remote` uses.

The writer's IpfsMirroredStore asks the service to pin each session document (and batch manifest) once
its own IPFS node holds it, so the documents outlive that node. A request is idempotent here: before
asking, the client looks the CID up (`GET /pins?cid=`), and a pin the service already has (queued,
pinning or pinned) counts as done; a failed one is asked for again.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from signalling import safejson
from signalling.httpjson import read_at_most

MAX_ANSWER_BYTES = 256 * 1024
LIVE = ("queued", "pinning", "pinned")


class PinningError(Exception):
    """The service refused or failed a request (the message says which and why)."""


class PinningService:
    def __init__(self, endpoint: str, token: str, *, timeout_s: float = 10.0, origins: list[str] | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token = token  # a bearer credential: never logged, never in repr
        self.origins = origins or []  # multiaddrs of our IPFS node, a hint where to fetch from
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.requested = 0  # pin requests the service accepted

    def __repr__(self) -> str:
        return f"PinningService({self.endpoint!r}, token=<redacted>)"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout,
                                                  headers={"Authorization": f"Bearer {self._token}"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _json(self, r: aiohttp.ClientResponse, what: str) -> Any:
        data = await read_at_most(r, MAX_ANSWER_BYTES + 1)
        if r.status in (401, 403):
            raise PinningError(f"the pinning service refused the access token ({what}: HTTP {r.status})")
        if r.status not in (200, 202):
            raise PinningError(f"{what}: HTTP {r.status}: {bytes(data[:200]).decode(errors='replace')}")
        try:
            return safejson.loads(bytes(data), max_bytes=MAX_ANSWER_BYTES)
        except safejson.JsonError as e:
            raise PinningError(f"{what}: the answer is not JSON: {e}") from None

    async def status(self, cid: str) -> str | None:
        """The service's status for `cid` (queued, pinning, pinned, failed), None if it has no pin of it."""
        params = {"cid": cid, "status": ",".join((*LIVE, "failed"))}
        async with self._http().get(f"{self.endpoint}/pins", params=params) as r:
            body = await self._json(r, "list pins")
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise PinningError("list pins: the answer has no results list")
        statuses = [p.get("status") for p in results if isinstance(p, dict)]
        return next((s for s in statuses if s in LIVE), "failed" if "failed" in statuses else None)

    async def pin(self, cid: str, name: str = "") -> str:
        """Make sure the service pins `cid`; returns its status (queued, pinning or pinned)."""
        have = await self.status(cid)
        if have in LIVE:
            return have
        pin: dict[str, Any] = {"cid": cid, "name": name or cid}
        if self.origins:
            pin["origins"] = self.origins
        async with self._http().post(f"{self.endpoint}/pins", json=pin) as r:
            body = await self._json(r, "add pin")
        got = body.get("status") if isinstance(body, dict) else None
        if got not in LIVE:
            raise PinningError(f"add pin: the service answered status {str(got)[:40]!r} for {cid}")
        self.requested += 1
        return got
