"""Issue #11, the signalling edge: hostile frames, floods, sockets that never read, foreign origins.

Every test talks to a real server (in this process, or `basement serve` as a child process where
the finding was a crash) over real sockets; rate limits run on a frozen clock so counts are exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from signalling.ports import free_port
from signalling.protocol import app as signalling_app
from signalling.protocol import messages as protocol
from signalling.protocol.client import Client
from signalling.protocol.edge import EDGE_KEY, EDGE_STATS
from signalling.protocol.rooms import SendQueue
from tests.support import procs
from tests.support.media import Tone
from tests.support.servers import native_only

# the signalling edge (frames, floods, origins) is the same whichever path forwards: one run
pytestmark = native_only

BASEMENT = str(Path(sys.executable).with_name("basement"))


async def _ws(url: str, **kw) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(url.replace("http", "ws", 1) + "/ws", **kw)
    except BaseException:
        await session.close()
        raise
    return session, ws


async def _next(ws: aiohttp.ClientWebSocketResponse, timeout: float = 15.0) -> dict | None:
    """The next JSON message, or None when the server closed the socket."""
    m = await asyncio.wait_for(ws.receive(), timeout)
    if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
        return None
    assert m.type == aiohttp.WSMsgType.TEXT, m
    return json.loads(m.data)


# --- 1. one frame must not kill the process -----------------------------------------------------
class ServeProcess:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASEMENT_")}
        env.update(BASEMENT_HOST="127.0.0.1", BASEMENT_PORT=str(self.port), BASEMENT_METRICS_PORT="0",
                   BASEMENT_ICE_ADDRESSES="127.0.0.1", BASEMENT_DATA_DIR=str(tmp / "data"), PYTHONUNBUFFERED="1")
        self.log_path = tmp / "serve.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([BASEMENT, "serve"], env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def tail(self) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    async def healthz(self) -> int:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/healthz") as r:
            return r.status

    async def wait_ready(self) -> None:
        for _ in range(600):
            assert self.proc.poll() is None, f"basement serve exited with {self.proc.returncode}:\n{self.tail()}"
            try:
                if await self.healthz() == 200:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError(self.tail())

    def stop(self) -> None:
        procs.stop(self.proc)
        self.log.close()


@pytest.mark.timeout(120)
async def test_deeply_nested_frame_is_a_precise_error_and_basement_serve_lives_on(tmp_path):
    srv = ServeProcess(tmp_path)
    try:
        await srv.wait_ready()
        session, ws = await _ws(srv.url)
        try:
            await ws.send_str("[" * 200_000)  # under the 256 KiB limit; used to SIGSEGV the process
            reply = await _next(ws)
            assert reply == {"type": "error", "code": "bad_json",
                             "message": f"message is not valid JSON: nested deeper than {protocol.MAX_DEPTH} levels"}
            await ws.send_str('{"type": "ping", "id": ' + "7" * 5000 + "}")  # over int's 4,300 digits
            reply = await _next(ws)
            assert reply is not None and reply["code"] == "bad_json", reply
            assert "4300" in reply["message"], reply
            await ws.send_str('{"type": "ping", "id": "same-socket"}')
            assert await _next(ws) == {"type": "pong", "id": "same-socket"}
        finally:
            await ws.close()
            await session.close()
        assert srv.proc.poll() is None, srv.tail()
        async with aiohttp.ClientSession() as s:
            for path in ("/auth/grant", "/auth/siwe", "/api/dev-wallet/sign"):  # the same frame as a body
                async with s.post(srv.url + path, data="[" * 200_000,
                                  headers={"Content-Type": "application/json"}) as r:
                    assert r.status in (400, 413), (path, r.status, await r.text())
                    assert srv.proc.poll() is None, (path, srv.tail())
        assert await srv.healthz() == 200
        session, ws = await _ws(srv.url)
        try:
            await ws.send_str('{"type": "ping", "id": "new-socket"}')
            assert await _next(ws) == {"type": "pong", "id": "new-socket"}
        finally:
            await ws.close()
            await session.close()
        assert srv.proc.poll() is None, srv.tail()
    finally:
        srv.stop()


# --- 3. rates, sockets, queues --------------------------------------------------------------------
async def test_ping_flood_gets_exactly_the_burst_then_rate_limited_then_closed(make_server):
    server = await make_server(ws_burst=10, ws_rate_per_s=1, ws_rate_strikes=5)
    server.app[EDGE_KEY].clock = lambda: 100.0  # frozen: the bucket never refills during the test
    limited, closed = EDGE_STATS.rate_limited, EDGE_STATS.closed["rate"]
    session, ws = await _ws(server.url)
    try:
        for i in range(40):
            await ws.send_str(json.dumps({"type": "ping", "id": i}))
        replies = []
        while (msg := await _next(ws)) is not None:
            replies.append(msg)
        assert replies[:10] == [{"type": "pong", "id": i} for i in range(10)]
        errors = replies[10:]
        assert len(errors) == 6, replies
        assert all(e["type"] == "error" and e["code"] == "rate_limited" for e in errors)
        assert "ws_burst" in errors[0]["message"] and "not applied" in errors[0]["message"]
        assert "closing" in errors[-1]["message"]
        assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
    finally:
        await ws.close()
        await session.close()
    assert EDGE_STATS.rate_limited - limited == 5
    assert EDGE_STATS.closed["rate"] - closed == 1
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{server.metrics_port}/metrics") as r:
        text = await r.text()
    assert f"basement_ws_rate_limited_total {float(EDGE_STATS.rate_limited)}" in text
    assert 'basement_ws_closed_total{reason="rate"}' in text


async def _room(server, room: str, names: list[str]) -> list[Client]:
    clients = []
    for name in names:
        c = Client(server.url)
        clients.append(c)
        await c.connect()
        await c.join(room, name)
    return clients


def _mute_states(c: Client, track: str) -> list[bool]:
    return [m["muted"] for m in c.messages if m.get("type") == "track_muted" and m.get("track") == track]


async def test_mute_flood_is_throttled_at_the_sender_and_others_stay(make_server):
    server = await make_server(ws_burst=101)
    server.app[EDGE_KEY].clock = lambda: 100.0
    applied: list[bool] = []  # the mutes the server really applied, in order
    real_mute = server.node.mute

    async def recording_mute(pid: str, track: str, muted: bool) -> dict:
        result = await real_mute(pid, track, muted)
        applied.append(muted)
        return result

    server.node.mute = recording_mute
    pub, *others = clients = await _room(server, "flood", ["pub", "a", "b"])
    try:
        await pub.publish(audio=Tone())
        track = pub.published["audio"]
        for c in others:
            await c.wait_message("track_published")
        for i in range(6000):  # toggles, starting with muted=True
            try:
                await pub.ws.send_str(json.dumps({"type": "mute", "track": track, "muted": i % 2 == 0}))
            except ConnectionError:  # the server may close the socket before we are done
                break
        await pub.wait_for(lambda: pub.ws.closed, timeout=30)
        assert pub.ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
        refusals = [m for m in pub.messages if m.get("code") == "rate_limited"]
        assert len(refusals) == 50 + 1  # ws_rate_strikes refusals, then the closing notice
        assert 90 < len(applied) < 101  # the burst, less join and offer: the rest was never applied
        for c in others:
            await c.wait_message("track_unpublished", track=track)
            states = _mute_states(c, track)
            assert states and states[-1] is applied[-1] and len(states) <= len(applied)
            assert (await c.request({"type": "ping"}))["type"] == "pong"
            assert not c.ws.closed
    finally:
        for c in clients:
            await c.close()

@pytest.fixture
def queues(monkeypatch) -> list[SendQueue]:
    """Every SendQueue the server creates from now on, in creation order (one per WebSocket)."""
    made: list[SendQueue] = []

    class Recorded(SendQueue):
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(signalling_app, "SendQueue", Recorded)
    return made


async def test_mute_flood_without_rate_limit_is_coalesced_for_the_others(make_server, queues):
    server = await make_server(ws_rate_per_s=0)
    coalesced = EDGE_STATS.coalesced
    pub, *others = clients = await _room(server, "coalesce", ["pub", "a", "b"])
    try:
        await pub.publish(audio=Tone())
        track = pub.published["audio"]
        for c in others:
            await c.wait_message("track_published")
        for i in range(6001):  # the last one mutes
            await pub.ws.send_str(json.dumps({"type": "mute", "track": track, "muted": i % 2 == 0}))
        assert (await pub.request({"type": "ping"}))["type"] == "pong"  # every mute has been applied
        for c in others + [pub]:
            assert (await c.request({"type": "ping"}))["type"] == "pong"
            assert not c.ws.closed
            assert _mute_states(c, track)[-1] is True
        assert EDGE_STATS.coalesced > coalesced
        assert max(q.high_water for q in queues) < 1024  # before: every victim hit 1024 and was cut off
        assert all(not q.overflowed for q in queues)
    finally:
        for c in clients:
            await c.close()


def _raw_frame(text: str) -> bytes:
    """A client text frame with a zero mask (valid, and no per-byte work in Python)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 65536:
        length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return b"\x81" + length + b"\0\0\0\0" + payload


async def test_a_client_that_never_reads_is_cut_off_with_a_bounded_queue(make_server, queues):
    server = await make_server(ws_rate_per_s=0, ws_send_queue=64)
    cut = EDGE_STATS.closed["not_reading"]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    try:
        writer.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        # each pong echoes a 100 KB id; we never read one, so the socket buffers fill, then the queue
        frame = _raw_frame(json.dumps({"type": "ping", "id": "x" * 100_000}))
        for _ in range(600):
            try:
                writer.write(frame)
                await writer.drain()
            except ConnectionError:
                break
            if EDGE_STATS.closed["not_reading"] > cut:
                break
        for _ in range(100):
            if EDGE_STATS.closed["not_reading"] > cut:
                break
            await asyncio.sleep(0.05)
        assert EDGE_STATS.closed["not_reading"] == cut + 1
        assert queues and queues[0].overflowed and queues[0].high_water == 64
    finally:
        writer.close()


async def test_sockets_per_address_are_capped(make_server):
    server = await make_server(ws_max_per_address=3)
    refused = EDGE_STATS.refused["per_address"]
    opened = [await _ws(server.url) for _ in range(3)]
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await _ws(server.url, headers={"X-Forwarded-For": "203.0.113.9"})  # no trusted proxy: ignored
        assert e.value.status == 429
        assert EDGE_STATS.refused["per_address"] == refused + 1
        session, ws = opened.pop()
        await ws.close()
        await session.close()
        edge = server.app[EDGE_KEY]
        for _ in range(100):  # the server counts the socket down when its handler returns
            if edge.per_address["127.0.0.1"] < 3:
                break
            await asyncio.sleep(0.05)
        opened.append(await _ws(server.url))
        await opened[-1][1].send_str('{"type": "ping"}')
        assert await _next(opened[-1][1]) == {"type": "pong"}
    finally:
        for session, ws in opened:
            await ws.close()
            await session.close()


async def test_a_trusted_proxy_forwards_the_client_address(make_server):
    server = await make_server(ws_max_per_address=1, trusted_proxies=["127.0.0.0/8"])
    a = await _ws(server.url, headers={"X-Forwarded-For": "198.51.100.1"})
    b = await _ws(server.url, headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.2"})
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await _ws(server.url, headers={"X-Forwarded-For": "198.51.100.1"})
        assert e.value.status == 429
    finally:
        for session, ws in (a, b):
            await ws.close()
            await session.close()


# --- 4. origins, hosts, headers -----------------------------------------------------------------
async def test_foreign_origins_and_hosts_are_refused(make_server):
    server = await make_server(allowed_origins=["https://app.example"])
    refused = dict(EDGE_STATS.refused)
    for origin in ("http://evil.example", "null", f"http://evil.example:{server.port}", "http://["):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await _ws(server.url, headers={"Origin": origin})
        assert e.value.status == 403
    for origin in (f"http://127.0.0.1:{server.port}", "https://app.example", None):
        session, ws = await _ws(server.url, headers={"Origin": origin} if origin else {})
        try:
            await ws.send_str(json.dumps({"type": "join", "room": "origins", "name": "n"}))
            assert (await _next(ws))["type"] == "joined"
        finally:
            await ws.close()
            await session.close()
    async with aiohttp.ClientSession() as s:
        # DNS rebinding: evil.example re-pointed at 127.0.0.1 is same-origin with itself, not with us
        for path in ("/", "/healthz", "/ws"):
            async with s.get(server.url + path, headers={"Host": f"evil.example:{server.port}"}) as r:
                assert r.status == 421 and "allowed_hosts" in await r.text()
        for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"[::1]:{server.port}"):
            async with s.get(server.url + "/healthz", headers={"Host": host}) as r:
                assert r.status == 200
    assert EDGE_STATS.refused["origin"] - refused.get("origin", 0) == 4
    assert EDGE_STATS.refused["host"] - refused.get("host", 0) == 3


async def test_pages_carry_security_headers_and_hsts_behind_https(make_server):
    plain = await make_server()
    tls = await make_server(public_url="https://meet.example")
    async with aiohttp.ClientSession() as s:
        async with s.get(plain.url + "/") as r:
            assert r.status == 200
            csp = r.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert "Strict-Transport-Security" not in r.headers
        async with s.get(plain.url + "/static/app.js") as r:
            assert r.status == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
        async with s.get(tls.url + "/", headers={"Host": "meet.example"}) as r:
            assert r.status == 200
            assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    session, ws = await _ws(tls.url, headers={"Origin": "https://meet.example"})
    try:
        await ws.send_str('{"type": "ping"}')
        assert await _next(ws) == {"type": "pong"}
    finally:
        await ws.close()
        await session.close()


async def test_a_socket_answers_pings_while_a_slow_request_is_handled_and_keeps_the_order(make_server,
                                                                                          monkeypatch):
    """aiohttp answers a client's ping only while the server reads the socket: a join that takes long
    on a busy server must not cost the client its heartbeat (aiohttp's client then closes the socket
    as if the server were gone). Messages are still handled one after the other, as sent."""
    server = await make_server()
    release = asyncio.Event()
    join = server.rooms.join

    async def slow_join(*args, **kw):
        await release.wait()
        return await join(*args, **kw)

    monkeypatch.setattr(server.rooms, "join", slow_join)
    session, ws = await _ws(server.url, autoping=False)
    try:
        await ws.send_str(json.dumps({"type": "join", "room": "slow", "name": "a", "id": 1}))
        await ws.send_str(json.dumps({"type": "ping", "id": 2}))
        await ws.ping(b"heartbeat")
        m = await asyncio.wait_for(ws.receive(), 10)  # the join is still waiting
        assert (m.type, m.data) == (aiohttp.WSMsgType.PONG, b"heartbeat")
        release.set()
        replies = [await _next(ws), await _next(ws)]
        assert [(r["type"], r.get("id")) for r in replies] == [("joined", 1), ("pong", 2)], replies
    finally:
        release.set()
        await ws.close()
        await session.close()


async def test_a_server_stops_while_a_request_is_stuck(make_server, monkeypatch):
    """Stopping cancels the request a socket's worker has in hand: it used to hold the shutdown for
    aiohttp's 60 s shutdown timeout (92 s for this test before)."""
    server = await make_server()
    started = asyncio.Event()

    async def stuck_join(*args, **kw):
        started.set()
        await asyncio.Event().wait()  # never

    monkeypatch.setattr(server.rooms, "join", stuck_join)
    session, ws = await _ws(server.url)
    try:
        await ws.send_str(json.dumps({"type": "join", "room": "stuck", "name": "a", "id": 1}))
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.wait_for(server.stop(), 30)  # a hang guard only
        assert await _next(ws) is None  # the socket was closed
    finally:
        await ws.close()
        await session.close()
