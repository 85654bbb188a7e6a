"""Per-client-address token buckets for the HTTP sign-in endpoints.

A client is its address, except that IPv6 addresses count per /64: one host usually holds a whole
/64, so counting single IPv6 addresses would give an attacker 2^64 separate budgets.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web


def request_client(request: web.Request) -> str:
    """The key of the client that sent `request`: its address as the edge sees it (X-Forwarded-For
    only from `trusted_proxies`), else the socket's peer."""
    from signalling.protocol.edge import EDGE_KEY  # the app's edge, when the app has one

    edge = request.config_dict.get(EDGE_KEY)
    return client_key(edge.client_address(request) if edge is not None else request.remote)


def client_key(remote: str | None) -> str:
    """The key a client address is counted under (IPv6 /64 prefix, IPv4 address, or the raw text)."""
    if not remote:
        return "?"
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class RateLimiter:
    """Token bucket per key: `burst` requests at once, refilled at `per_minute` per minute.

    At most `max_keys` buckets are kept. When full, buckets that have refilled completely are
    dropped first (a full bucket is the same as no bucket), then the least recently used: losing a
    bucket only forgives that client, it never blocks anyone else.
    """

    def __init__(self, per_minute: float, burst: int | None = None, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, math.ceil(per_minute)))
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self.refused = 0

    def take(self, key: str) -> float:
        """Spend one token; 0.0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
            self.refused += 1
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._shrink(now)
        return wait

    def _shrink(self, now: float) -> None:
        full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
