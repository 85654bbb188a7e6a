"""Headless Firefox ESR over WebDriver BiDi, for end-to-end tests of the web client.

    async with Firefox(url) as b:                    # the same calls as tests/support/browser.py's Browser
        await b.wait_for("window.basement && window.basement.state === 'joined'")
        stats = await b.evaluate("window.basement.stats()")   # promises are awaited
        other = await b.new_page(url2)               # another window of the same process

BiDi is spoken directly over aiohttp's WebSocket client: Firefox's built-in remote agent listens on
127.0.0.1 (`--remote-debugging-port=0` picks a free port, which Firefox writes to
WebDriverBiDiServer.json in the profile). Firefox runs with a fake camera and microphone, on
loopback only, in a fresh temporary profile and home directory (it would otherwise create
~/Downloads and ~/.config/mozilla in the real one).

`FirefoxProcess` is the process, `Firefox` a BiDi session with it. A `Firefox` without a process
starts its own and `close()` kills it; the `firefox` fixture instead gives every test a session with
one process shared by the whole run (`firefox_process`), and closes only the test's windows. The
process is always killed with its whole process group and its directory removed: by `kill()`, by a
finalizer if nothing called it, and by the kernel (PR_SET_PDEATHSIG) if the test run itself is
killed outright (the directory then stays behind in $TMPDIR as basement-firefox-*).
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
import subprocess
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.support.browser import NetnsRelay, kill_browser, write_bytes

FIREFOX = os.environ.get("FIREFOX") or shutil.which("firefox-esr") or "/usr/bin/firefox-esr"

# user.js of every profile. The media and ICE prefs are what make WebRTC work inside a loopback-only
# namespace (see /work/shared/notes/real-clients.md): without the camera/microphone *permission*
# Firefox gathers candidates only on the default-route interface, of which the namespace has none.
PREFS: dict[str, bool | int | str] = {
    # fake devices, no prompt, permission granted (the last two are what unlock host candidates)
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "permissions.default.camera": 1,
    "permissions.default.microphone": 1,
    # candidates on 127.0.0.1, as plain addresses (no mDNS .local names the SFU could not resolve)
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.autoplay.default": 0,  # remote <video>/<audio> play without a gesture
    "media.autoplay.blocking_policy": 0,
    # windows of a headless process are never "in the background": keep their timers at full rate
    "dom.min_background_timeout_value": 4,
    "dom.timeout.enable_budget_timer_throttling": False,
    # no first-run pages, default-browser checks or session restore
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "browser.startup.homepage_override.mstone": "ignore",
    "startup.homepage_welcome_url": "about:blank",
    "startup.homepage_welcome_url.additional": "",
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.sessionstore.resume_from_crash": False,
    "browser.tabs.warnOnClose": False,
    "toolkit.startup.max_resumed_crashes": -1,
    # no updates of the browser, add-ons, plugins (OpenH264) or search engines
    "app.update.disabledForTesting": True,
    "app.update.auto": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-manager.url": "",
    "browser.search.update": False,
    # no telemetry, crash reports, studies or experiments
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "",
    "browser.crashReports.unsubmittedCheck.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "app.normandy.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "nimbus.rollouts.enabled": False,
    # no network access of its own: remote settings, safe browsing, captive portal and connectivity
    # probes, prefetching, geolocation of the region (the namespace has no route anyway; these keep
    # the log quiet and the start fast)
    "services.settings.server": "http://127.0.0.1:9/",
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "network.trr.mode": 5,  # no DNS over HTTPS
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "geo.provider.network.url": "",
    "browser.ping-centre.telemetry": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "browser.urlbar.suggest.searches": False,
    "extensions.blocklist.enabled": False,
    "security.OCSP.enabled": 0,
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
}


class FirefoxError(RuntimeError):
    pass


class JSError(FirefoxError):
    pass


def _user_js(prefs: dict[str, bool | int | str]) -> str:
    return "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())


class Page:
    """One top-level browsing context (a window) of a Firefox process; the page calls of Browser."""

    def __init__(self, firefox: Firefox, context: str, url: str | None) -> None:
        self.firefox = firefox
        self.context = context
        self.url = url
        self.console: list[str] = []  # console messages and uncaught exceptions of the page

    async def evaluate(self, expr: str, timeout: float = 20.0) -> Any:
        """Evaluate a JS expression in the page; promises are awaited; the value comes back as JSON."""
        # BiDi serialises values as typed trees (its RemoteValue); JSON.stringify in the page gives
        # exactly what Browser.evaluate's returnByValue gives, at any depth
        wrapped = ("(async () => { const v = await (\n" + expr + "\n);"
                   " return v === undefined ? undefined : JSON.stringify(v); })()")
        result = await self.firefox.send("script.evaluate", {
            "expression": wrapped, "target": {"context": self.context}, "awaitPromise": True,
            "resultOwnership": "none", "userActivation": True}, timeout)
        if result.get("type") == "exception":
            d = result.get("exceptionDetails", {})
            raise JSError(f"{expr[:120]!r}: {d.get('text')}")
        value = result.get("result", {})
        if value.get("type") != "string":
            return None
        return json.loads(value["value"])

    async def wait_for(self, expr: str, timeout: float = 30.0, interval: float = 0.25) -> Any:
        """Poll a JS expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = await self.evaluate(expr, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
            except JSError as e:
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
            raise FirefoxError(f"nothing matches {selector!r}")

    async def screenshot(self, path: str | os.PathLike | None = None) -> bytes:
        result = await self.firefox.send("browsingContext.captureScreenshot", {"context": self.context}, 30)
        data = base64.b64decode(result["data"])
        if path is not None:
            write_bytes(path, data)
        return data

    async def navigate(self, url: str | None = None, timeout: float = 30.0) -> None:
        """Load `url` (default: the page's URL again) and wait until the new document has loaded."""
        self.url = url or self.url
        await self.firefox.send("browsingContext.navigate",
                                {"context": self.context, "url": self.url, "wait": "complete"}, timeout)

    async def close(self) -> None:
        """Close this window (the process stays). Its page gets `pagehide`: the web client leaves."""
        await self.firefox.send("browsingContext.close", {"context": self.context})
        self.firefox.pages.remove(self)

    def log_tail(self, n: int = 40) -> str:
        return self.firefox.log_tail(n)


# resolved here, not in the forked child: loading a library there could deadlock on a lock another
# thread of the parent held at the fork
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL Firefox if the thread that started it dies, so a test run killed outright
    (no teardown, no finalizer) leaves no browser behind; its child processes then exit on their own
    when their IPC channel to it closes. Firefox must therefore be spawned from a thread that lives
    as long as it should (the main thread, where the event loop runs: never from an executor)."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class FirefoxProcess:
    """A headless Firefox with its remote agent on a free loopback port, in a temporary profile and
    home directory. Synchronous, so one process can outlive the event loops of many tests."""

    def __init__(self, window: tuple[int, int] = (1280, 720), prefs: dict[str, bool | int | str] | None = None,
                 start_timeout: float = 30.0, prefix: list[str] | None = None) -> None:
        """`prefix`: a command Firefox runs under, e.g. `netns.Link.command()` (it must exec Firefox: the
        remote agent is then reached through a relay into that namespace, as tests/support/browser.py
        does for Chromium)."""
        self.window = window
        self.prefix = prefix or []
        self.prefs = {**PREFS, **(prefs or {})}
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.tmp: str | None = None
        self.profile: str | None = None
        self.log_path: str | None = None
        self.port: int | None = None
        self._finalizer: weakref.finalize | None = None

    def spawn(self) -> None:
        if not os.access(FIREFOX, os.X_OK):
            raise FirefoxError(f"no Firefox at {FIREFOX}: `make system-deps` installs firefox-esr "
                               f"(or set FIREFOX to a Firefox binary)")
        self.tmp = tempfile.mkdtemp(prefix="basement-firefox-")
        self.profile = os.path.join(self.tmp, "profile")
        home = os.path.join(self.tmp, "home")
        os.makedirs(self.profile)
        os.makedirs(home)
        Path(self.profile, "user.js").write_text(_user_js(self.prefs))
        self.log_path = os.path.join(self.tmp, "firefox.log")
        env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config"),
               "XDG_CACHE_HOME": os.path.join(home, ".cache"), "XDG_DATA_HOME": os.path.join(home, ".local"),
               "MOZ_CRASHREPORTER_DISABLE": "1"}
        args = [*self.prefix, FIREFOX, "--headless", "--no-remote", "--profile", self.profile,
                "--remote-debugging-port=0", "--remote-allow-hosts=127.0.0.1",
                f"--width={self.window[0]}", f"--height={self.window[1]}", "about:blank"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True, preexec_fn=_die_with_parent)
        self._finalizer = weakref.finalize(self, kill_browser, self.proc, self.tmp)

    def poll_port(self) -> int | None:
        """The remote agent's port once Firefox has written it to the profile; raises if Firefox died."""
        assert self.proc is not None and self.profile is not None
        if self.proc.poll() is not None:
            raise FirefoxError(f"Firefox exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            self.port = int(json.loads(Path(self.profile, "WebDriverBiDiServer.json").read_text())["ws_port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return self.port

    def start(self) -> None:
        """Spawn and wait (blocking) until the remote agent listens."""
        self.spawn()
        deadline = time.monotonic() + self.start_timeout
        try:
            while self.poll_port() is None:
                if time.monotonic() > deadline:
                    raise FirefoxError(f"Firefox did not open its remote agent in {self.start_timeout} s; "
                                       f"log tail:\n{self.log_tail()}")
                time.sleep(0.1)
        except BaseException:
            self.kill()
            raise

    async def start_async(self) -> None:
        """start() without blocking the event loop (the spawn itself stays on this thread)."""
        self.spawn()
        try:
            await asyncio.wait_for(self._wait_port(), self.start_timeout)
        except BaseException as e:
            tail = self.log_tail()
            self.kill()
            if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
                raise FirefoxError(f"Firefox did not open its remote agent in {self.start_timeout} s; "
                                   f"log tail:\n{tail}") from None
            raise

    async def _wait_port(self) -> None:
        while True:
            if self.poll_port() is not None:
                return
            await asyncio.sleep(0.1)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the process group and remove the profile (blocks for at most a few seconds)."""
        if self._finalizer is not None:
            self._finalizer()

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = Path(self.log_path or "").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


class Firefox:
    """A WebDriver BiDi session with a Firefox process: its own (started by `start()`, killed by
    `close()`), or a shared one passed in (then `close()` closes only the windows it opened).

    With a URL, `start()` opens it in a window, and the page calls (evaluate, wait_for, click,
    screenshot, navigate) go to that window, as Browser's do; `new_page()` opens more windows.
    """

    def __init__(self, url: str | None = None, window: tuple[int, int] = (1280, 720),
                 prefs: dict[str, bool | int | str] | None = None, start_timeout: float = 30.0,
                 process: FirefoxProcess | None = None, prefix: list[str] | None = None) -> None:
        self.url = url
        self.window = window
        self.start_timeout = start_timeout
        self.process = process or FirefoxProcess(window, prefs, start_timeout, prefix)
        self._owns_process = process is None
        self.version: str | None = None
        self.pages: list[Page] = []
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._relay: NetnsRelay | None = None

    async def __aenter__(self) -> Firefox:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            if self._owns_process:
                await self.process.start_async()
            elif not self.process.alive:
                raise FirefoxError(f"the shared Firefox is gone:\n{self.process.log_tail()}")
            await asyncio.wait_for(self._attach(), self.start_timeout)
            if self.url is not None:
                await self.new_page(self.url)
        except BaseException as e:
            tail = self.log_tail()
            await self.close()
            if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
                raise FirefoxError(f"no BiDi session with Firefox in {self.start_timeout} s; "
                                   f"log tail:\n{tail}") from None
            raise

    async def _attach(self) -> None:
        port = self.process.port
        assert self.process.proc is not None and port is not None
        # the remote agent checks the Host header: through a relay it still names the agent's own port
        headers = {"Host": f"127.0.0.1:{port}"}
        self._relay = await NetnsRelay.to_process(self.process.proc.pid, port)
        if self._relay is not None:
            port = self._relay.port
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(f"ws://127.0.0.1:{port}/session", headers=headers,
                                                  max_msg_size=0, heartbeat=None)
        self._reader = asyncio.ensure_future(self._read())
        caps = await self.send("session.new", {"capabilities": {}})
        self.version = caps.get("capabilities", {}).get("browserVersion")
        await self.send("session.subscribe", {"events": ["log.entryAdded"]})

    async def close(self) -> None:
        """Close the windows this session opened and end it; kill Firefox if it is this session's."""
        if self._ws is not None and not self._ws.closed:
            for page in list(self.pages):
                try:
                    await page.close()
                except (Exception, asyncio.CancelledError):
                    pass
            try:  # a shared Firefox takes one session at a time: free it for the next test
                await self.send("session.end", timeout=2)
            except (Exception, asyncio.CancelledError):
                pass
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
        if self._owns_process:
            # blocking waits (at most a few seconds) off the event loop
            await asyncio.get_running_loop().run_in_executor(None, self.process.kill)

    def log_tail(self, n: int = 40) -> str:
        return self.process.log_tail(n)

    # --- windows ------------------------------------------------------------------------------
    async def new_page(self, url: str) -> Page:
        """Open `url` in a new window with a fixed CSS viewport and wait until it has loaded. A
        window, not a tab: only the selected tab of a window is visible, and the web client
        unsubscribes from everything on a hidden page. Firefox's own first window is left alone
        (closing a process's last window quits it)."""
        context = (await self.send("browsingContext.create", {"type": "window"}))["context"]
        page = Page(self, context, url)
        self.pages.append(page)
        await self.send("browsingContext.setViewport", {
            "context": context, "viewport": {"width": self.window[0], "height": self.window[1]},
            "devicePixelRatio": 1})
        await page.navigate(url)
        return page

    @property
    def page(self) -> Page:
        if not self.pages:
            raise FirefoxError("no page open in this session")
        return self.pages[0]

    # --- the first window's page calls, as Browser has them -----------------------------------
    @property
    def console(self) -> list[str]:
        return self.page.console

    async def evaluate(self, expr: str, timeout: float = 20.0) -> Any:
        return await self.page.evaluate(expr, timeout)

    async def wait_for(self, expr: str, timeout: float = 30.0, interval: float = 0.25) -> Any:
        return await self.page.wait_for(expr, timeout, interval)

    async def click(self, selector: str) -> None:
        await self.page.click(selector)

    async def screenshot(self, path: str | os.PathLike | None = None) -> bytes:
        return await self.page.screenshot(path)

    async def navigate(self, url: str | None = None, timeout: float = 30.0) -> None:
        await self.page.navigate(url, timeout)

    # --- BiDi ---------------------------------------------------------------------------------
    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for m in self._ws:
                if m.type != aiohttp.WSMsgType.TEXT:
                    continue
                msg = json.loads(m.data)
                if msg.get("type") in ("success", "error") and "id" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif msg.get("method") == "log.entryAdded":
                    self._log_entry(msg["params"])
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(FirefoxError("the BiDi connection closed"))
            self._pending.clear()

    def _log_entry(self, p: dict[str, Any]) -> None:
        context = (p.get("source") or {}).get("context")
        for page in self.pages:
            if page.context == context:
                kind = p.get("method") or p.get("type")  # console.log: "log"; uncaught: "javascript"
                page.console.append(f"{kind}: {p.get('text')}")

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 20.0) -> dict:
        if self._ws is None or self._ws.closed:
            raise FirefoxError("not connected to Firefox")
        cid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        await self._ws.send_str(json.dumps({"id": cid, "method": method, "params": params or {}}))
        try:
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(cid, None)
        if reply.get("type") == "error":
            raise FirefoxError(f"{method}: {reply.get('error')}: {reply.get('message')}")
        return reply.get("result", {})


# Firefox's fake camera honours the requested size; 960x540 is what the Chromium tests publish, so
# both browsers' simulcast layers are q 240x135, h 480x270, f 960x540.
VIDEO = "960x540"


@pytest.fixture(scope="session")
def firefox_process() -> Iterator[FirefoxProcess]:
    """One Firefox for the whole run (its start costs seconds of a 2-core CI box); every test gets its
    own BiDi session and windows of it (`firefox`). Started lazily, again if a test killed it."""
    shared = FirefoxProcess()
    yield shared
    shared.kill()


@pytest.fixture
async def firefox(firefox_process: FirefoxProcess) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """firefox(server, room, name, **query) -> a Page on the web client, joined. A test's pages are
    windows of the shared Firefox, all closed at teardown."""
    if not firefox_process.alive:
        if firefox_process.proc is not None:  # a previous test's Firefox died: not this test's fault
            firefox_process.kill()
        await firefox_process.start_async()
    session = Firefox(process=firefox_process)
    await session.start()

    async def launch(server: Any, room: str, name: str, before_join: str | None = None, **query: str) -> Page:
        params = {"room": room, "name": name, "autojoin": "1", "video": VIDEO, **query}
        page = await session.new_page(f"{server.url}/?{urlencode(params)}")
        # autojoin only prefills the form and focuses Join: capture needs the user's click
        await page.wait_for("!!window.basement && document.activeElement.id === 'join-button'")
        if before_join:  # JavaScript the page runs before Join is clicked (filling in the form)
            await page.evaluate(before_join)
        await page.click("#join-button")
        return page

    try:
        yield launch
    finally:
        await session.close()
