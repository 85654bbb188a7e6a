"""The signalling edge: who may open a socket, how fast it may talk, what every response carries.

* Host check (DNS rebinding): a page on `evil.example` whose name an attacker re-points at
  127.0.0.1 is same-origin with itself, so only the Host header tells it apart. Served: public_url's
  host, `host`, localhost, IP literals (a rebinding needs a name) and `allowed_hosts`.
* Origin check on /ws: a browser sends the page's origin; another site's page may not drive a
  user's camera or room through our socket. Requests without Origin (bots, signalling.protocol.client) pass:
  they are not a browser acting for someone else.
* Per-address concurrent sockets, per-socket token bucket: one client cannot hold every slot or
  make the server do unbounded work.
* Security headers on every HTTP response.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from signalling.config import Settings

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

# The web client loads only its own files; `data:` is the empty favicon; WebRTC media are
# MediaStreams (not URLs). 'self' in connect-src covers ws:/wss: to the same host (CSP level 3).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class EdgeStats:
    """Process-wide counters of the edge, exported as basement_ws_* (labels are fixed reason words)."""

    def __init__(self) -> None:
        self.refused: Counter[str] = Counter()  # origin, host, per_address
        self.closed: Counter[str] = Counter()  # rate, not_reading
        self.rate_limited = 0
        self.coalesced = 0
        self.bad_messages: Counter[str] = Counter()  # error code sent for a message (protocol codes)
        self.open_sockets = 0
        self.detached = 0  # participants whose socket dropped without a close (kept for a resume)
        self.resume: Counter[str] = Counter()  # resumed, expired, unknown_token, gap, closed, over_cap


EDGE_STATS = EdgeStats()


class EdgeCollector:
    def __init__(self, stats: EdgeStats = EDGE_STATS) -> None:
        self.stats = stats

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        s = self.stats
        refused = CounterMetricFamily("basement_ws_refused", "HTTP/WebSocket requests refused at the edge",
                                      labels=["reason"])
        for reason in ("origin", "host", "per_address"):
            refused.add_metric([reason], s.refused[reason])
        yield refused
        closed = CounterMetricFamily("basement_ws_closed", "WebSockets closed by the server for abuse",
                                     labels=["reason"])
        for reason in ("rate", "not_reading"):
            closed.add_metric([reason], s.closed[reason])
        yield closed
        yield CounterMetricFamily("basement_ws_rate_limited", "client messages refused for rate (not applied)",
                                  value=s.rate_limited)
        yield CounterMetricFamily("basement_ws_coalesced", "queued state events replaced by a newer state",
                                  value=s.coalesced)
        errors = CounterMetricFamily("basement_ws_errors", "error replies to client messages", labels=["code"])
        for code, n in sorted(s.bad_messages.items()):
            errors.add_metric([code], n)
        yield errors
        yield GaugeMetricFamily("basement_ws_open", "open client WebSockets", value=s.open_sockets)
        yield CounterMetricFamily("basement_ws_detached", "participants whose WebSocket dropped without a close "
                                  "(kept resume_grace_s for a resume)", value=s.detached)
        resumes = CounterMetricFamily("basement_ws_resumes", "resume attempts and detached participants that "
                                      "never came back, by outcome", labels=["outcome"])
        for outcome in ("resumed", "expired", "unknown_token", "gap", "closed", "over_cap"):
            resumes.add_metric([outcome], s.resume[outcome])
        yield resumes


class TokenBucket:
    """`rate` tokens per second up to `burst`; one message costs one token."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.last = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(e, strict=False) for e in entries]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def split_host(value: str) -> str:
    """The host name of a Host header value (`name:port`, `[v6]:port`), lower-case."""
    try:
        return (urlsplit("//" + value).hostname or "").lower()
    except ValueError:
        return ""


@dataclass
class Edge:
    settings: Settings
    clock: Callable[[], float] = time.monotonic
    stats: EdgeStats = field(default_factory=lambda: EDGE_STATS)
    per_address: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        s = self.settings
        self.proxies = _networks(s.trusted_proxies)
        names = {h.lower() for h in s.allowed_hosts} | LOCAL_NAMES | {s.host.lower()}
        origins = {o.rstrip("/").lower() for o in s.allowed_origins}
        if s.public_url:
            public = urlsplit(s.public_url)
            names.add((public.hostname or "").lower())
            origins.add(f"{public.scheme}://{public.netloc}".lower())
        self.hosts = frozenset(names)
        self.origins = frozenset(origins)
        self.any_host = "*" in self.hosts
        self.any_origin = "*" in self.origins
        # (not for tls=self-signed: a LAN trial must be able to go back to plain HTTP)
        self.hsts = s.public_url.lower().startswith("https://") or bool(s.tls_cert)

    # --- who is asking -----------------------------------------------------------------------
    def client_address(self, request: web.Request) -> str:
        """The peer address, or behind a trusted proxy the last X-Forwarded-For hop it did not add."""
        addr = request.remote or ""
        if not self.proxies or not self._trusted(addr):
            return addr
        hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return addr

    def _trusted(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.proxies)

    def host_problem(self, request: web.Request) -> str | None:
        if self.any_host:
            return None
        host = split_host(request.headers.get("Host", ""))
        if host in self.hosts or _is_ip(host) or host.endswith(".localhost"):
            return None
        return f"host {host!r} is not served here (allowed_hosts)"

    def origin_problem(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None or self.any_origin:
            return None  # not a browser page: nobody's ambient authority is being borrowed
        origin = origin.rstrip("/").lower()
        if origin in self.origins:
            return None
        try:
            parts = urlsplit(origin)
        except ValueError:  # e.g. "http://[": not an origin a browser sends
            parts = None
        # the page's own origin: same host and port as this request (whose Host passed host_problem)
        if parts and parts.scheme in ("http", "https") and parts.netloc == request.headers.get("Host", "").lower():
            return None
        return f"origin {origin!r} may not open this socket (allowed_origins)"

    # --- limits ------------------------------------------------------------------------------
    def open_socket(self, addr: str) -> bool:
        """Count a socket from `addr`; False (nothing counted) when the address is at its cap."""
        cap = self.settings.ws_max_per_address
        if cap and self.per_address[addr] >= cap:
            self.stats.refused["per_address"] += 1
            return False
        self.per_address[addr] += 1
        self.stats.open_sockets += 1
        return True

    def close_socket(self, addr: str) -> None:
        self.stats.open_sockets -= 1
        self.per_address[addr] -= 1
        if self.per_address[addr] <= 0:
            del self.per_address[addr]  # the map holds only addresses with open sockets

    def bucket(self) -> TokenBucket | None:
        s = self.settings
        return TokenBucket(s.ws_rate_per_s, s.ws_burst, self.clock) if s.ws_rate_per_s else None

    # --- responses ---------------------------------------------------------------------------
    def add_headers(self, response: web.StreamResponse) -> None:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")  # frame-ancestors for browsers without CSP 2
        h.setdefault("Referrer-Policy", "no-referrer")  # page URLs may carry a grant
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), geolocation=()")
        if self.hsts:
            h.setdefault("Strict-Transport-Security", "max-age=31536000")


EDGE_KEY = web.AppKey("edge", Edge)


@web.middleware
async def host_guard(request: web.Request, handler: Callable) -> web.StreamResponse:
    edge = request.config_dict[EDGE_KEY]
    problem = edge.host_problem(request)
    if problem:
        edge.stats.refused["host"] += 1
        raise web.HTTPMisdirectedRequest(text=problem)
    return await handler(request)


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    request.config_dict[EDGE_KEY].add_headers(response)


def install(app: web.Application, edge: Edge) -> None:
    """Put the edge in front of every route of `app` (before the app is started)."""
    app[EDGE_KEY] = edge
    app.middlewares.append(host_guard)
    app.on_response_prepare.append(_on_prepare)
