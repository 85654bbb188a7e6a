"""SFUs under test, each in its own process: Basement (`basement serve`) and Janus (VideoRoom).

The generator measures the SFU's CPU from /proc/<pid>/stat, so the SFU must never share a process
with the generator. Both targets bind 127.0.0.1 only, on free ports; Janus gets a private config
folder with per-run random secrets, only the VideoRoom plugin, and its HTTP and WebSocket transports.

Both targets' participants sign in as real clients do: each opens a signalling WebSocket of its own
(Basement's protocol; Janus's WebSocket transport with a Janus session per participant, as janus.js
does), so a join's cost includes its signalling connection on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen.peers import LightSubscriber, SyntheticPublisher
from signalling.ports import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")



def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def proc_children(pid: int) -> list[int]:
    """The child processes of `pid` (a `basement serve --workers N`'s media workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _tree_sum(pid: int, of: Callable[[int], float]) -> float:
    """`of` a process plus `of` each of its children now running (a worker that exited takes its
    share with it)."""
    total = of(pid)
    for child in proc_children(pid):
        with contextlib.suppress(OSError):
            total += of(child)
    return total


def tree_cpu_seconds(pid: int) -> float:
    return _tree_sum(pid, proc_cpu_seconds)


def tree_rss_bytes(pid: int) -> int:
    return int(_tree_sum(pid, proc_rss_bytes))


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# CPUs the SFU under test may run on (None: any). `basement bench --pin` gives the SFU its own core and
# keeps the generator off it, so "SFU CPU" is capacity per core and the generator cannot starve it.
SFU_CPUS: set[int] | None = None


def pin(sfu_cpus: set[int] | None) -> None:
    global SFU_CPUS
    SFU_CPUS = sfu_cpus


def _spawn(cmd: list[str], stderr_path: str | None = None) -> tuple[subprocess.Popen, Any]:
    """Start an SFU child in its own session, so a Ctrl-C reaches the bench, which then stops it."""
    log = open(stderr_path, "wb") if stderr_path else None  # noqa: SIM115 - the caller closes it in stop()
    cpus = SFU_CPUS
    proc = subprocess.Popen(cmd, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
                            stdout=subprocess.PIPE if log else subprocess.DEVNULL,
                            stderr=log or subprocess.DEVNULL, start_new_session=True,
                            cwd=str(Path(__file__).resolve().parents[2]))
    return proc, log


def _stop_process(proc: subprocess.Popen | None, timeout: float = 5.0) -> bool:
    """Stop a child SFU; True when it was still running (so its logs hold nothing to investigate)."""
    if proc is None or proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    return True


class Target:
    keep_logs = False  # set when a run failed: stop() leaves the SFU's log in place
    name = "?"
    supports_simulcast = False
    proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return proc_rss_bytes(self.pid)

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def new_room(self, max_publishers: int) -> str:
        raise NotImplementedError

    async def publish(self, room: str, pub: SyntheticPublisher, subscriber: LightSubscriber | None = None) -> Any:
        raise NotImplementedError

    async def subscribe(self, room: str, sub: LightSubscriber, feeds: list[Any]) -> Any:
        raise NotImplementedError

    async def leave_all(self) -> None:
        """End every participant of the last run on the SFU, so the next run starts clean."""

    async def forwarded_packets(self) -> int | None:
        """The SFU's own count of RTP packets sent to subscribers, when it exposes one."""
        return None

    async def relayed_packets(self) -> int | None:
        """RTP packets the SFU relayed between its media workers (rooms spanning them), if it does."""
        return None

    async def sfu_figures(self) -> dict[str, Any]:
        """What the SFU says of its own state at the end of a window, when it says anything: video
        downtracks it paused, by reason (`paused_downtracks`), those waiting for a key frame
        (`waiting_downtracks`), packets each media worker forwarded since it started
        (`forwarded_by_worker`, with `--workers`), datagrams per segmented send
        (`gso_datagrams_per_send`), and since it started: participants who left, by reason (`left`),
        connections that ended under a participant, by `target/cause` (`transports_ended`), and ICE
        consent expiries (`consent_expired`). A stall the subscribers see is told apart by these."""
        return {}

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}; see {self.log_path}")

    log_path = ""


# --- Basement -----------------------------------------------------------------------------------


class _BasementConn:
    """One participant's signalling WebSocket (docs/protocol.md), just what the bench needs."""

    def __init__(self, session: aiohttp.ClientSession, ws_url: str) -> None:
        self.session = session
        self.ws_url = ws_url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = 0
        self.waiters: dict[int, asyncio.Future] = {}
        self.subscriber: LightSubscriber | None = None
        self.reader: asyncio.Task | None = None
        self.errors: list[dict[str, Any]] = []
        self.close_reason = ""
        self._lock = asyncio.Lock()
        self.connected_at = 0.0  # time.monotonic() when the WebSocket opened (bench.join_timeline)

    async def connect(self, timeout: float = 30.0) -> None:
        try:
            self.ws = await asyncio.wait_for(self.session.ws_connect(self.ws_url, heartbeat=30, max_msg_size=0),
                                             timeout)
        except TimeoutError:
            raise TimeoutError(f"no WebSocket to {self.ws_url} within {timeout:.0f} s") from None
        self.connected_at = time.monotonic()
        self.reader = asyncio.ensure_future(self._read())

    async def request(self, msg: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        assert self.ws is not None
        self.ids += 1
        ref = self.ids
        fut = asyncio.get_running_loop().create_future()
        self.waiters[ref] = fut
        if self.ws.closed:
            raise ConnectionError(f"cannot send {msg.get('type')!r}: {self.closed_because()}")
        await self.ws.send_str(json.dumps({**msg, "id": ref}))
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TimeoutError(f"basement sent no reply to {msg.get('type')!r} within {timeout:.0f} s") from None
        finally:
            self.waiters.pop(ref, None)
        if reply.get("type") == "error":
            raise RuntimeError(f"basement refused {msg.get('type')}: {reply.get('code')}: {reply.get('message')}")
        return reply

    def closed_because(self) -> str:
        ws = self.ws
        code = ws.close_code if ws is not None else None
        reason = self.close_reason
        return f"basement closed the signalling connection (code {code}{': ' + reason if reason else ''})"

    async def _read(self) -> None:
        try:
            await self._read_messages()
        finally:
            if self.subscriber is not None:  # (a stalled subscriber says so: bench.loadgen.scenario)
                ws = self.ws
                exc = ws.exception() if ws is not None else None  # e.g. our heartbeat's missing pong
                self.subscriber.signalling_closed = (f"code {ws.close_code if ws is not None else None}"
                                                     + (f", {type(exc).__name__}" if exc else ""))
            # whatever ended the connection, nobody waits 30 s for a reply that cannot come
            for fut in self.waiters.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(self.closed_because()))

    async def _read_messages(self) -> None:
        assert self.ws is not None
        while True:
            m = await self.ws.receive()
            if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                          aiohttp.WSMsgType.ERROR):
                self.close_reason = str(m.extra or "") if m.type == aiohttp.WSMsgType.CLOSE else str(m.data or "")
                return
            if m.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(m.data)
            ref = msg.get("id")
            if ref in self.waiters and not self.waiters[ref].done():
                self.waiters[ref].set_result(msg)
            elif msg.get("type") == "error":
                self.errors.append(msg)
            if msg.get("type") == "offer" and msg.get("target") == "subscriber":
                asyncio.ensure_future(self._answer(msg["sdp"]))

    async def _answer(self, sdp: str) -> None:
        async with self._lock:  # offers are answered in order; the server serialises them too
            if self.subscriber is None or self.ws is None or self.ws.closed or self.subscriber.transport.closed:
                return
            try:
                answer = await self.subscriber.answer(sdp)
                await self.ws.send_str(json.dumps({"type": "answer", "target": "subscriber", "sdp": answer}))
            except Exception:
                pass  # the run is tearing down: tracks leaving trigger re-offers nobody needs

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


class BasementTarget(Target):
    name = "basement"
    supports_simulcast = True

    def __init__(self, python: str | None = None, log_dir: str | None = None, datapath: str = "native",
                 udp_gso: bool = True, aes_ni: bool = True, workers: int = 1) -> None:
        self.datapath = datapath
        self.workers = workers  # `serve --workers`: the SFU's CPU is then that of the parent and its workers
        self.udp_gso = udp_gso  # native path: segmented sends (sfu/gso.py); off to measure what they save
        self.aes_ni = aes_ni  # native path: AES on AES-NI (sfu/native/aes_gcm.c); off: OpenSSL's EVP
        self.name = (f"basement-{datapath}" + ("" if udp_gso else "-nogso") + ("" if aes_ni else "-evp")
                     + (f"-w{workers}" if workers > 1 else ""))
        self.python = python or sys.executable
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="basement-bench-")
        self.log_path = os.path.join(self.log_dir, "basement.log")
        self.url = ""
        self.metrics_url = ""
        self.session: aiohttp.ClientSession | None = None
        self.conns: list[_BasementConn] = []
        self._rooms = 0

    async def start(self) -> None:
        metrics_port = free_port()
        cmd = [self.python, "-m", "signalling.cli", "serve", "--port", "0", "--metrics-port", str(metrics_port),
               "--ice-addresses", "127.0.0.1", "--log-level", "warning", "--max-participants-per-room", "100000",
               # every simulated user comes from 127.0.0.1 and joins in a burst: the per-address socket cap
               # and message rate that protect a public server would refuse the load generator itself
               "--ws-max-per-address", "0", "--ws-rate-per-s", "0", "--datapath", self.datapath,
               "--udp-gso", "true" if self.udp_gso else "false", "--aes-ni", "true" if self.aes_ni else "false",
               "--data-dir", os.path.join(self.log_dir, "var"), "--workers", str(self.workers)]
        self.proc, self._log = _spawn(cmd, self.log_path)
        line = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline), 60)
        m = re.search(rb"open (http://\S+?)/?\s", line + b" ")
        if not m:
            self.check_alive()
            raise RuntimeError(f"basement serve printed {line!r}; see {self.log_path}")
        self.url = m.group(1).decode()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        # every simulated participant holds one WebSocket of this session for the whole run: aiohttp's
        # default pool (100 connections) made participant 101 wait for a free one until its 300 s
        # timeout (the N = 100 "no reply" failure)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def stop(self) -> None:
        for c in self.conns:
            with contextlib.suppress(Exception):
                await c.close()
        self.conns.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None
        healthy = _stop_process(self.proc)
        if getattr(self, "_log", None):
            self._log.close()
        if healthy and not self.keep_logs:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        else:
            print(f"basement bench: the SFU's log is {self.log_path}", file=sys.stderr)

    async def new_room(self, max_publishers: int) -> str:
        self._rooms += 1
        return f"bench{self._rooms}-{secrets.token_hex(3)}"

    async def _conn(self, room: str, name: str, subscriber: LightSubscriber | None) -> _BasementConn:
        assert self.session is not None
        c = _BasementConn(self.session, self.url.replace("http://", "ws://") + "/ws")
        # before the join: the server's first subscriber offer may follow `joined` immediately
        c.subscriber = subscriber
        self.conns.append(c)
        await c.connect()
        await c.request({"type": "join", "room": room, "name": name[:64]})
        return c

    async def publish(self, room: str, pub: SyntheticPublisher, subscriber: LightSubscriber | None = None) -> Any:
        c = await self._conn(room, pub.name, subscriber)
        offer = await pub.offer()
        reply = await c.request({"type": "offer", "target": "publisher", "sdp": offer})
        await pub.accept(reply["sdp"])
        return c

    async def subscribe(self, room: str, sub: LightSubscriber, feeds: list[Any]) -> Any:
        c = await self._conn(room, sub.name, sub)
        return c

    async def leave_all(self) -> None:
        conns, self.conns = self.conns, []
        for c in conns:
            with contextlib.suppress(Exception):
                await c.close()

    async def _metrics(self) -> str:
        assert self.session is not None
        async with self.session.get(self.metrics_url) as r:
            return await r.text()

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return tree_rss_bytes(self.pid)

    async def forwarded_packets(self) -> int | None:
        text = await self._metrics()
        found = re.findall(r"^basement_packets_out(?:_total)?(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
        return int(sum(float(v) for v in found)) if found else None  # summed over workers

    async def relayed_packets(self) -> int | None:
        text = await self._metrics()
        found = re.findall(r"^basement_relayed_packets_out(?:_total)?(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
        return int(sum(float(v) for v in found)) if found else None  # summed over workers

    async def sfu_figures(self) -> dict[str, Any]:
        text = await self._metrics()
        # every figure is summed over the series of all media workers (one series without workers)
        def by(pattern: str) -> dict[str, int]:
            out: Counter[str] = Counter()
            for m in re.finditer(pattern, text, re.MULTILINE):
                out["/".join(m.groups()[:-1])] += int(float(m.group(m.lastindex or 0)))
            return dict(out)

        paused = by(r'^basement_downtracks_paused\{[^}]*reason="([^"]+)"[^}]*\} (\S+)$')

        def total(name: str) -> float | None:
            found = re.findall(rf"^{name}(?:_total)?(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE)
            return sum(float(v) for v in found) if found else None

        sends, datagrams = total("basement_udp_gso_sends"), total("basement_udp_gso_datagrams")
        left = by(r'^basement_participants_left_total\{[^}]*reason="([^"]+)"[^}]*\} (\S+)$')
        ended = by(r'^basement_transports_ended_total\{[^}]*target="([^"]+)",cause="([^"]+)"[^}]*\} (\S+)$')
        consent = total("basement_ice_consent_expired")
        waiting = sum(int(float(m.group(1))) for m in re.finditer(
            r'^basement_downtracks_waiting\{[^}]*\} (\S+)$', text, re.MULTILINE))
        forwarded = by(r'^basement_packets_out_total\{[^}]*worker="([^"]+)"[^}]*\} (\S+)$')
        participants = by(r'^basement_participants\{[^}]*worker="([^"]+)"[^}]*\} (\S+)$')
        return {"paused_downtracks": paused, "waiting_downtracks": waiting, "forwarded_by_worker": forwarded,
                "participants_by_worker": participants,
                "gso_datagrams_per_send": datagrams / sends if sends and datagrams is not None else None,
                "left": left, "transports_ended": ended,
                "consent_expired": int(consent) if consent is not None else None}


# --- Janus --------------------------------------------------------------------------------------

JANUS_LIB = "/usr/lib/x86_64-linux-gnu/janus"
JANUS_PLUGINS = ("audiobridge", "duktape", "echotest", "lua", "nosip", "recordplay", "sip", "streaming",
                 "textroom", "videocall", "voicemail")


def write_janus_config(folder: Path, http_port: int, admin_port: int, rtp_range: tuple[int, int],
                       api_secret: str, admin_secret: str, room_admin_key: str, ws_port: int = 0) -> Path:
    """A minimal private config: loopback only, random secrets, VideoRoom + HTTP (+ WebSocket) transports."""
    plugins_off = ",".join(f"libjanus_{p}.so" for p in JANUS_PLUGINS)
    ws_off = "" if ws_port else ",libjanus_websockets.so"
    lib = JANUS_LIB
    (folder / "janus.jcfg").write_text(f"""general: {{
	plugins_folder = "{lib}/plugins"
	transports_folder = "{lib}/transports"
	events_folder = "{lib}/events"
	loggers_folder = "{lib}/loggers"
	debug_level = 3
	admin_secret = "{admin_secret}"
	api_secret = "{api_secret}"
	server_name = "bench-janus"
	session_timeout = 120
	protected_folders = ["/bin","/boot","/dev","/etc","/lib","/proc","/sbin","/sys","/usr","/var"]
}}
certificates: {{
}}
media: {{
	rtp_port_range = "{rtp_range[0]}-{rtp_range[1]}"
	nack_queue = 500
}}
nat: {{
	nice_debug = false
	ice_enforce_list = "127.0.0.1"
	ignore_mdns = true
	full_trickle = false
}}
plugins: {{
	disable = "{plugins_off}"
}}
transports: {{
	disable = "libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so,libjanus_pfunix.so{ws_off}"
}}
loggers: {{
	disable = "libjanus_jsonlog.so"
}}
events: {{
	broadcast = false
}}
""")
    (folder / "janus.transport.http.jcfg").write_text(f"""general: {{
	json = "compact"
	base_path = "/janus"
	http = true
	port = {http_port}
	ip = "127.0.0.1"
	https = false
}}
admin: {{
	admin_base_path = "/admin"
	admin_http = true
	admin_port = {admin_port}
	admin_ip = "127.0.0.1"
	admin_https = false
	admin_acl = "127."
}}
cors: {{
}}
""")
    if ws_port:
        (folder / "janus.transport.websockets.jcfg").write_text(f"""general: {{
	json = "compact"
	ws = true
	ws_port = {ws_port}
	ws_ip = "127.0.0.1"
	wss = false
}}
admin: {{
	admin_ws = false
	admin_wss = false
}}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text(f"""general: {{
	admin_key = "{room_admin_key}"
	lock_rtp_forward = true
}}
""")
    return folder / "janus.jcfg"


ANCHOR_IF = ("bjanus0", "bjanus1")


def ensure_janus_can_gather() -> None:
    """Give libnice a non-loopback interface that carries 127.0.0.1, in a loopback-only namespace.

    Janus (libnice) never gathers on IFF_LOOPBACK interfaces, so on a machine where media must stay
    on 127.0.0.1 it finds no candidate at all ("Error gathering candidates"). Inside a private
    network namespace that has nothing but `lo`, an unconnected veth pair holding 127.0.0.1/32 fixes
    that: the kernel still delivers 127.0.0.1 locally via `lo`, and the pair leads nowhere.
    Outside such a namespace this refuses rather than touch a real network.
    """
    ifaces = {name for _, name in socket.if_nameindex()}  # /sys/class/net may show the host
    if ANCHOR_IF[0] in ifaces:
        return
    if ifaces - {"lo"}:
        raise RuntimeError("the janus target must run in a loopback-only network namespace: "
                           "unshare -n -- bash -c 'ip link set lo up && exec \"$@\"' x basement bench ...")
    a, b = ANCHOR_IF
    for cmd in (["ip", "link", "add", a, "type", "veth", "peer", "name", b],
                ["ip", "link", "set", a, "addrgenmode", "none"], ["ip", "link", "set", b, "addrgenmode", "none"],
                ["ip", "addr", "add", "127.0.0.1/32", "dev", a],
                ["ip", "link", "set", a, "up"], ["ip", "link", "set", b, "up"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"janus target: {' '.join(cmd)} failed: {r.stderr.strip()}")


class JanusTarget(Target):
    name = "janus"
    supports_simulcast = False  # the comparison uses the same single-layer shape on both targets

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or shutil.which("janus") or "/usr/bin/janus"
        self.dir = Path(tempfile.mkdtemp(prefix="janus-bench-"))
        self.log_path = str(self.dir / "janus.log")
        self.api_secret = secrets.token_urlsafe(24)
        self.admin_secret = secrets.token_urlsafe(24)
        self.room_key = secrets.token_urlsafe(24)
        self.base = ""
        self.admin = ""
        self.session: aiohttp.ClientSession | None = None
        self.control: _JanusConn | None = None  # the bench's own Janus session: it creates the rooms
        self.handles: list[int] = []  # the control session's handles (one per room created)
        self.subscriber_handles: list[tuple[int, int]] = []  # (session, handle) of each subscriber
        self.conns: list[_JanusConn] = []  # one per participant
        self.ws_url = ""

    async def start(self) -> None:
        ensure_janus_can_gather()
        http_port, admin_port, ws_port = free_port(), free_port(), free_port()
        base = 20000 + secrets.randbelow(400) * 100
        cfg = write_janus_config(self.dir, http_port, admin_port, (base, base + 4999), self.api_secret,
                                 self.admin_secret, self.room_key, ws_port=ws_port)
        self.proc, _ = _spawn([self.binary, "-F", str(self.dir), "-C", str(cfg), "-o", "-N", "-L", self.log_path])
        self.base = f"http://127.0.0.1:{http_port}/janus"
        self.admin = f"http://127.0.0.1:{admin_port}/admin"
        self.ws_url = f"ws://127.0.0.1:{ws_port}/"
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # one WebSocket each
        deadline = time.monotonic() + 20
        while True:
            self.check_alive()
            try:
                async with self.session.get(f"{self.base}/info") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"janus did not answer /info; see {self.log_path}")
            await asyncio.sleep(0.05)
        self.control = _JanusConn(self.session, self.ws_url, self.api_secret)
        await self.control.connect()

    async def stop(self) -> None:
        for c in [*self.conns, *([self.control] if self.control else [])]:
            with contextlib.suppress(Exception):
                await c.close()  # closing a WebSocket ends its Janus session
        self.conns.clear()
        self.control = None
        if self.session is not None:
            await self.session.close()
            self.session = None
        if _stop_process(self.proc):  # a crashed Janus keeps its folder (log) for inspection
            shutil.rmtree(self.dir, ignore_errors=True)

    async def new_room(self, max_publishers: int) -> str:
        assert self.control is not None
        hid = await self.control.attach()
        self.handles.append(hid)
        room = 100000 + secrets.randbelow(900000)
        await self.control.message(hid, {"request": "create", "room": room, "admin_key": self.room_key,
                                  "publishers": max(3, max_publishers), "videocodec": "vp8", "audiocodec": "opus",
                                  "bitrate": 0, "fir_freq": 0, "permanent": False, "audiolevel_event": False})
        return str(room)

    async def _participant(self) -> _JanusConn:
        """A participant's own Janus session on its own WebSocket, as a browser with janus.js has."""
        assert self.session is not None
        c = _JanusConn(self.session, self.ws_url, self.api_secret)
        self.conns.append(c)
        await c.connect()
        return c

    async def publish(self, room: str, pub: SyntheticPublisher, subscriber: LightSubscriber | None = None) -> Any:
        c = await self._participant()
        hid = await c.attach()
        offer = await pub.offer()
        ev = await c.message(hid, {"request": "joinandconfigure", "room": int(room), "ptype": "publisher",
                                   "display": pub.name, "audio": pub.want_audio, "video": pub.want_video},
                             {"type": "offer", "sdp": offer})
        await pub.accept(ev["jsep"]["sdp"])
        await c.trickle_done(hid)
        return ev["plugindata"]["data"]["id"]

    async def subscribe(self, room: str, sub: LightSubscriber, feeds: list[Any]) -> Any:
        c = await self._participant()
        hid = await c.attach()
        ev = await c.message(hid, {"request": "join", "room": int(room), "ptype": "subscriber",
                                   "streams": [{"feed": f} for f in feeds]})
        answer = await sub.answer(ev["jsep"]["sdp"])
        await c.message(hid, {"request": "start", "room": int(room)}, {"type": "answer", "sdp": answer})
        await c.trickle_done(hid)
        self.subscriber_handles.append((c.sid, hid))
        return c

    async def leave_all(self) -> None:
        # closing a participant's WebSocket ends its Janus session (and its handles) on the server
        conns, self.conns, self.subscriber_handles = self.conns, [], []
        for c in conns:
            with contextlib.suppress(Exception):
                await c.close()
        handles, self.handles = self.handles, []
        for hid in handles:
            with contextlib.suppress(Exception):
                assert self.control is not None
                await self.control.detach(hid)

    async def forwarded_packets(self) -> int | None:
        """Sum of RTP packets Janus reports sent on subscriber handles (Admin API handle_info)."""
        assert self.session is not None
        total = 0
        for sid, hid in self.subscriber_handles:
            body = {"janus": "handle_info", "transaction": secrets.token_hex(6), "admin_secret": self.admin_secret}
            async with self.session.post(f"{self.admin}/{sid}/{hid}", json=body) as r:
                info = await r.json(content_type=None)
            total += _janus_out_packets(info.get("info", {}))
        return total


class _JanusConn:
    """One participant's Janus session over Janus's WebSocket transport (janus.js's `server: ws://...`).

    Janus answers a request with `success` or `ack` on the same transaction, and a plugin's reply
    comes later as an `event` with that transaction; a keepalive every 25 s (janus.js's period) keeps
    the session alive past the server's `session_timeout`.
    """

    def __init__(self, session: aiohttp.ClientSession, url: str, api_secret: str) -> None:
        self.session = session
        self.url = url
        self.api_secret = api_secret
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.sid = 0
        self.replies: dict[str, asyncio.Future] = {}  # transaction -> success/ack/error
        self.events: dict[str, asyncio.Future] = {}  # transaction -> the plugin's event
        self.tasks: list[asyncio.Task] = []
        self.connected_at = 0.0  # time.monotonic() when the WebSocket opened (bench.join_timeline)

    async def connect(self, timeout: float = 30.0) -> None:
        try:
            self.ws = await asyncio.wait_for(
                self.session.ws_connect(self.url, protocols=("janus-protocol",), max_msg_size=0), timeout)
        except TimeoutError:
            raise TimeoutError(f"no WebSocket to janus at {self.url} within {timeout:.0f} s") from None
        self.connected_at = time.monotonic()
        self.tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._keepalive())]
        self.sid = (await self._request({"janus": "create"}))["data"]["id"]

    async def attach(self) -> int:
        reply = await self._request({"janus": "attach", "plugin": "janus.plugin.videoroom"})
        return reply["data"]["id"]

    async def message(self, hid: int, body: dict[str, Any], jsep: dict[str, Any] | None = None,
                      timeout: float = 30.0) -> dict[str, Any]:
        msg: dict[str, Any] = {"janus": "message", "handle_id": hid, "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        tx = secrets.token_hex(8)
        self.events[tx] = asyncio.get_running_loop().create_future()
        try:
            reply = await self._request(msg, tx)
            if reply.get("janus") == "success":  # a synchronous plugin reply
                return reply
            try:
                ev = await asyncio.wait_for(self.events[tx], timeout)
            except TimeoutError:
                raise TimeoutError(f"janus sent no event for {body.get('request')!r} within {timeout:.0f} s") from None
        finally:
            self.events.pop(tx, None)
        data = ev.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise RuntimeError(f"janus videoroom refused {body.get('request')}: {data['error']}")
        return ev

    async def trickle_done(self, hid: int) -> None:
        await self._request({"janus": "trickle", "handle_id": hid, "candidate": {"completed": True}})

    async def detach(self, hid: int) -> None:
        await self._request({"janus": "detach", "handle_id": hid})

    async def _request(self, msg: dict[str, Any], tx: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        assert self.ws is not None
        tx = tx or secrets.token_hex(8)
        fut = asyncio.get_running_loop().create_future()
        self.replies[tx] = fut
        body = {**msg, "transaction": tx, "apisecret": self.api_secret}
        if self.sid:
            body["session_id"] = self.sid
        try:
            await self.ws.send_str(json.dumps(body))
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TimeoutError(f"janus sent no reply to {msg['janus']!r} within {timeout:.0f} s") from None
        finally:
            self.replies.pop(tx, None)
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus error on {msg['janus']}: {reply.get('error')}")
        return reply

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for m in self.ws:
                if m.type != aiohttp.WSMsgType.TEXT:
                    continue
                ev = json.loads(m.data)
                tx = ev.get("transaction", "")
                kind = ev.get("janus")
                if kind == "event" and tx in self.events and not self.events[tx].done():
                    self.events[tx].set_result(ev)
                elif kind in ("success", "ack", "error") and tx in self.replies and not self.replies[tx].done():
                    self.replies[tx].set_result(ev)
        finally:
            gone = ConnectionError(f"janus closed the WebSocket {self.url}")
            for fut in (*self.replies.values(), *self.events.values()):
                if not fut.done():
                    fut.set_exception(gone)

    async def _keepalive(self) -> None:
        assert self.ws is not None
        while not self.ws.closed:
            await asyncio.sleep(25)
            with contextlib.suppress(Exception):
                await self.ws.send_str(json.dumps({"janus": "keepalive", "session_id": self.sid,
                                                   "transaction": secrets.token_hex(6),
                                                   "apisecret": self.api_secret}))

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        if self.ws is not None:
            await self.ws.close()


def _janus_out_packets(info: dict[str, Any]) -> int:
    """RTP packets sent per m-line: info.webrtc.media.<mid>.stats.out.packets (DTLS stats excluded)."""
    media_ = (info.get("webrtc") or {}).get("media") or {}
    return sum(int(((m.get("stats") or {}).get("out") or {}).get("packets", 0)) for m in media_.values())


# basement = basement-native, the default data path; basement-nogso: the same without UDP_SEGMENT sends;
# basement-evp: the same with SRTP's AES on OpenSSL's EVP instead of AES-NI
TARGETS = ("basement", "basement-nogso", "basement-evp", "basement-python", "janus")


def make_target(name: str, workers: int = 1) -> Target:
    """`workers`: media worker processes of the Basement targets (`basement serve --workers`)."""
    if name in ("basement", "basement-native"):
        return BasementTarget(datapath="native", workers=workers)
    if name == "basement-nogso":
        return BasementTarget(datapath="native", udp_gso=False, workers=workers)
    if name == "basement-evp":
        return BasementTarget(datapath="native", aes_ni=False, workers=workers)
    if name == "basement-python":
        return BasementTarget(datapath="python", workers=workers)
    if name == "janus":
        return JanusTarget()
    raise ValueError(f"unknown target {name!r} ({', '.join(TARGETS)})")


Progress = Callable[[str], None]
