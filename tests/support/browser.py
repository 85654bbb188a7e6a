"""Headless Chromium over the DevTools protocol (CDP), for end-to-end tests of the web client.

    async with Browser(url) as b:
        await b.wait_for("window.basement && window.basement.state === 'joined'")
        stats = await b.evaluate("window.basement.stats()")   # promises are awaited
        png = await b.screenshot(path)

Chromium runs with a fake camera and microphone, on loopback only, with a fresh temporary profile.
`close()` always kills the whole process group and removes the profile, and a finalizer does it
too if a test forgets (or the interpreter exits first). CDP goes over aiohttp's WebSocket client.

Chromium can run in another network namespace, under a command prefix (`prefix=link.command()`, see
tests/support/netns.py). Its DevTools then listens on that namespace's loopback, which this process
cannot reach (and new headless ignores --remote-debugging-address), so the Browser relays it: a
listener on this namespace's 127.0.0.1 whose every connection goes on from a socket made inside
Chromium's namespace (setns in a short-lived thread) to Chromium's loopback. DevTools never crosses
the veth pair, so `Link.down()` and `Link.block_udp()` do not touch it, and `devtools_port` and
`page_websocket_url()` work as without a prefix. A page on plain http from an address other than
loopback (e.g. http://10.201.0.1:port) is not a secure context, where getUserMedia does not exist;
the Browser marks the start URL's origin secure (--unsafely-treat-insecure-origin-as-secure) itself.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",            # let WebRTC use 127.0.0.1
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # plain IPs in candidates, no .local names
    # a page in a headless window is never "occluded" or "backgrounded"; keep its timers and video running
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


class BrowserError(RuntimeError):
    pass


_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def insecure_origin_flags(url: str) -> list[str]:
    """The flag that makes `url`'s origin a secure context, if it is plain http on a host other than
    loopback (only such origins lack getUserMedia); nothing otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "http" or (parts.hostname or "localhost") in _LOOPBACK_HOSTS:
        return []
    return [f"--unsafely-treat-insecure-origin-as-secure={parts.scheme}://{parts.netloc}"]


_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in_netns(netns_fd: int) -> socket.socket:
    """A non-blocking TCP socket of the network namespace `netns_fd` (an open /proc/PID/ns/net): a
    socket keeps the namespace it was made in, so it is made in a thread of its own that enters the
    namespace and then ends (setns moves only the calling thread; nothing else changes namespace)."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            if _libc.setns(netns_fd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns: {os.strerror(err)}")
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as e:
            made.append(e)

    t = threading.Thread(target=make, name="netns-socket", daemon=True)
    t.start()
    t.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    made[0].setblocking(False)
    return made[0]


class NetnsRelay:
    """Listens on 127.0.0.1 of this namespace (a free port, `port`) and relays each connection to
    127.0.0.1:`target_port` of the network namespace `netns_fd`."""

    def __init__(self, netns_fd: int, target_port: int) -> None:
        self.netns_fd, self.target_port = netns_fd, target_port
        self.owns_fd = False
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task] = set()

    async def start(self) -> NetnsRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @classmethod
    async def to_process(cls, pid: int, port: int) -> NetnsRelay | None:
        """A relay to 127.0.0.1:`port` of process `pid`'s network namespace, or None when that is
        this process's namespace (no relay needed). The relay holds the namespace open."""
        netns = f"/proc/{pid}/ns/net"
        if os.stat(netns).st_ino == os.stat("/proc/self/ns/net").st_ino:
            return None
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            relay = await cls(fd, port).start()
        except BaseException:
            os.close(fd)
            raise
        relay.owns_fd = True
        return relay

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conns.add(task)
        up_writer = None
        try:
            sock = socket_in_netns(self.netns_fd)
            try:
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.target_port))
            except BaseException:
                sock.close()
                raise
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        except (Exception, asyncio.CancelledError):  # a relayed connection ends as a TCP one would
            pass
        finally:
            self._conns.discard(task)
            for w in (writer, up_writer):
                if w is not None:
                    w.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=2)
        if self.owns_fd and self.netns_fd >= 0:
            os.close(self.netns_fd)
            self.netns_fd = -1


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        if writer.can_write_eof():
            try:
                writer.write_eof()
            except OSError:
                pass


class JSError(BrowserError):
    pass


def kill_browser(proc: subprocess.Popen, profile: str) -> None:
    """Terminate a browser and everything it started (its own process group: renderers, zygotes,
    content and utility processes), then drop its profile directory. Chromium's and Firefox's."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    shutil.rmtree(profile, ignore_errors=True)


def _spawn(args: list[str], log_path: str) -> subprocess.Popen:
    """Start Chromium in its own session (process group), its output going to log_path."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    Path(path).write_bytes(data)


class Browser:
    def __init__(self, url: str, window: tuple[int, int] = (1280, 720), extra_flags: list[str] | None = None,
                 start_timeout: float = 30.0, prefix: list[str] | None = None) -> None:
        """`prefix`: a command Chromium runs under, e.g. `netns.Link.command()` (see the module docstring)."""
        self.url = url
        self.window = window
        self.extra_flags = extra_flags or []
        self.start_timeout = start_timeout
        self.prefix = prefix or []
        self.proc: subprocess.Popen | None = None
        self.devtools_port: int | None = None  # where this process reaches DevTools (the relay's, if any)
        self._relay: NetnsRelay | None = None
        self.profile: str | None = None
        self.log_path: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.console: list[str] = []  # console messages and uncaught exceptions of the page
        self._finalizer: weakref.finalize | None = None

    async def __aenter__(self) -> Browser:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="basement-chromium-")
        self.log_path = os.path.join(self.profile, "chromium.log")
        args = [*self.prefix, CHROMIUM, *FLAGS, *insecure_origin_flags(self.url), *self.extra_flags,
                f"--user-data-dir={self.profile}",
                f"--window-size={self.window[0]},{self.window[1]}",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", self.url]
        self.proc = _spawn(args, self.log_path)
        self._finalizer = weakref.finalize(self, kill_browser, self.proc, self.profile)
        try:
            await asyncio.wait_for(self._attach(), self.start_timeout)
        except BaseException as e:
            tail = self.log_tail()
            await self.close()
            if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
                raise BrowserError(f"Chromium did not offer a page target in {self.start_timeout} s; "
                                   f"log tail:\n{tail}") from None
            raise

    async def _attach(self) -> None:
        # --remote-debugging-port=0: Chromium picks a free port and writes it to DevToolsActivePort
        port_file = Path(self.profile) / "DevToolsActivePort"
        while True:
            if self.proc.poll() is not None:
                raise BrowserError(f"Chromium exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                port = int(port_file.read_text().split()[0])
                break
            except (OSError, ValueError, IndexError):
                await asyncio.sleep(0.1)
        # Chromium is running by now (it wrote the file), so the prefix has put it where it stays
        self._relay = await NetnsRelay.to_process(self.proc.pid, port)
        if self._relay is not None:
            port = self._relay.port
        self.devtools_port = port
        self._session = aiohttp.ClientSession()
        ws_url = None
        while ws_url is None:
            try:
                async with self._session.get(f"http://127.0.0.1:{port}/json/list") as r:
                    for t in await r.json(content_type=None):
                        if t.get("type") == "page" and t.get("webSocketDebuggerUrl"):
                            ws_url = t["webSocketDebuggerUrl"]
                            break
            except (aiohttp.ClientError, ValueError):
                pass
            if ws_url is None:
                await asyncio.sleep(0.2)
        self._ws = await self._session.ws_connect(ws_url, max_msg_size=0, heartbeat=None)
        self._reader = asyncio.ensure_future(self._read())
        await self.send("Runtime.enable")
        await self.send("Log.enable")  # (replays what the page logged before we attached)
        # a fixed CSS viewport (the headless window's own excludes invisible browser UI), so layouts
        # and screenshots have the same size everywhere
        await self.send("Emulation.setDeviceMetricsOverride", {
            "width": self.window[0], "height": self.window[1], "deviceScaleFactor": 1, "mobile": False})

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._ws is not None:
            try:
                await asyncio.wait_for(self._ws.close(), 2)
            except (Exception, asyncio.CancelledError):
                pass
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._relay is not None:
            await self._relay.close()
            self._relay = None
        if self._finalizer is not None:
            # blocking waits (at most a few seconds) off the event loop
            await asyncio.get_running_loop().run_in_executor(None, self._finalizer)

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = Path(self.log_path).read_text(errors="replace").splitlines()
        except (OSError, TypeError):
            return ""
        return "\n".join(lines[-n:])

    # --- CDP ----------------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            async for m in self._ws:
                if m.type != aiohttp.WSMsgType.TEXT:
                    continue
                msg = json.loads(m.data)
                fut = self._pending.pop(msg.get("id"), None) if "id" in msg else None
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                elif msg.get("method") == "Runtime.consoleAPICalled":
                    p = msg["params"]
                    text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                    self.console.append(f"{p.get('type')}: {text}")
                elif msg.get("method") == "Log.entryAdded":  # e.g. a resource that failed to load
                    e = msg["params"]["entry"]
                    self.console.append(f"log {e.get('level')}: {e.get('text')} {e.get('url', '')}".rstrip())
                elif msg.get("method") == "Runtime.exceptionThrown":
                    d = msg["params"]["exceptionDetails"]
                    self.console.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(BrowserError("the CDP connection closed"))
            self._pending.clear()

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 20.0) -> dict:
        if self._ws is None or self._ws.closed:
            raise BrowserError("not connected to Chromium")
        cid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        await self._ws.send_str(json.dumps({"id": cid, "method": method, "params": params or {}}))
        try:
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(cid, None)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def evaluate(self, expr: str, timeout: float = 20.0) -> Any:
        """Evaluate a JS expression in the page; promises are awaited; the value comes back as JSON."""
        result = await self.send("Runtime.evaluate", {"expression": expr, "awaitPromise": True,
                                                      "returnByValue": True, "userGesture": True}, timeout)
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            raise JSError(f"{expr[:120]!r}: {d.get('exception', {}).get('description') or d.get('text')}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expr: str, timeout: float = 30.0, interval: float = 0.25) -> Any:
        """Poll a JS expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = await self.evaluate(expr, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
            except JSError as e:
                last = e
            except BrowserError as e:
                # while the page is still loading (or navigating) it has no execution context yet:
                # CDP answers "Cannot find default execution context" / "Execution context was
                # destroyed". The expression is simply not evaluable yet; anything else is a failure.
                if "execution context" not in str(e).lower():
                    raise
                last = e
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{expr!r} not truthy after {timeout} s (last: {last!r}); "
                                   f"page console: {self.console[-10:]}")
            await asyncio.sleep(interval)

    async def click(self, selector: str) -> None:
        ok = await self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                                 f" if (!e) return false; e.click(); return true; }})()")
        if not ok:
            raise BrowserError(f"nothing matches {selector!r}")

    async def screenshot(self, path: str | os.PathLike | None = None) -> bytes:
        result = await self.send("Page.captureScreenshot", {"format": "png"}, timeout=30)
        data = base64.b64decode(result["data"])
        if path is not None:
            write_bytes(path, data)
        return data

    # --- scripts before page load, navigation, a second DevTools connection -------------------
    async def add_init_script(self, source: str) -> str:
        """Run `source` in every document the page loads from now on, before the page's own scripts
        (Page.addScriptToEvaluateOnNewDocument); call `navigate()` to apply it to the current page."""
        await self.send("Page.enable")  # the page agent runs such scripts only while enabled
        result = await self.send("Page.addScriptToEvaluateOnNewDocument", {"source": source})
        return result["identifier"]

    async def navigate(self, url: str | None = None, timeout: float = 30.0) -> None:
        """Load `url` (default: the start URL again) and wait until the new document has loaded."""
        # the current document may still be loading (navigate right after start): Chromium shows a
        # complete about:blank before the start URL commits, and an evaluate in between finds no
        # execution context (two CI failures). Wait for the start URL's document, then mark it,
        # tolerating a context that is being replaced (wait_for does)
        loaded = "document.readyState === 'complete'"
        if self.url and self.url != "about:blank":
            loaded += " && location.href !== 'about:blank'"
        await self.wait_for(loaded, timeout)
        await self.wait_for("window.__basementOldDocument = true", timeout)
        result = await self.send("Page.navigate", {"url": url or self.url}, timeout)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url or self.url}: {result['errorText']}")
        await self.wait_for("!window.__basementOldDocument && document.readyState === 'complete'", timeout)

    async def page_websocket_url(self) -> str:
        """The DevTools WebSocket URL of the page, for a second, independent CDP client (whose
        bindings, events and scripts are its own)."""
        async with self._session.get(f"http://127.0.0.1:{self.devtools_port}/json/list") as r:
            for t in await r.json(content_type=None):
                if t.get("type") == "page" and t.get("webSocketDebuggerUrl"):
                    return t["webSocketDebuggerUrl"]
        raise BrowserError("Chromium lists no page target")


# Chromium's fake camera at 960x540: the smallest size from which Chromium sends three simulcast
# layers (q 240x135, h 480x270, f 960x540); the UI's default stays 1280x720.
VIDEO = "960x540"


@pytest.fixture
async def browser():
    """browser(server, room, name, **query) -> a Browser on the web client; all closed at teardown."""
    made: list[Browser] = []

    async def launch(server, room: str, name: str, extra_flags: list[str] | None = None,
                     prefix: list[str] | None = None, before_join: str | None = None, **query: str) -> Browser:
        """`prefix`: run Chromium under it, e.g. `link.command()` (the page on `server.url`, which for a
        server on `netns.SERVER_IP` is marked a secure origin; see the module docstring).
        `before_join`: JavaScript the page runs before Join is clicked (filling in the form)."""
        params = {"room": room, "name": name, "autojoin": "1", "video": VIDEO, **query}
        b = Browser(f"{server.url}/?{urlencode(params)}", extra_flags=extra_flags, prefix=prefix)
        made.append(b)
        await b.start()
        # autojoin only prefills the form and focuses Join: capture needs the user's click
        await b.wait_for("!!window.basement && document.activeElement.id === 'join-button'")
        if before_join:
            await b.evaluate(before_join)
        await b.click("#join-button")
        return b

    yield launch
    for b in made:
        await b.close()


async def poll(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0, interval: float = 0.3) -> Any:
    """Re-run an async check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout} s (last: {last!r})")
        await asyncio.sleep(interval)

