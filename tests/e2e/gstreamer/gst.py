"""The test side of `tests/support/gst_peer.py`: a webrtcbin peer in a `/usr/bin/python3` subprocess,
and the relay between it and Basement's WebSocket protocol (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

from signalling.protocol.client import Client

DRIVER = Path(__file__).resolve().parents[2] / "support" / "gst_peer.py"
# the gi bindings (python3-gi, gir1.2-gst-plugins-bad-1.0, gir1.2-nice-0.1) are Debian packages for
# the system interpreter; `make system-deps` installs them
SYSTEM_PYTHON = "/usr/bin/python3"


class GstPeer:
    """One webrtcbin, spoken to in JSON lines; its events are kept in order in `events`."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.events: list[dict[str, Any]] = []
        self._waiters: set[asyncio.Future[None]] = set()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, log_path: Path, prefix: list[str] | None = None, address: str = "127.0.0.1") -> GstPeer:
        """`prefix`: a command to run it under (e.g. a test link's `command()`), `address`: where
        libnice gathers (there, the link's client address)."""
        stderr = log_path.open("wb")
        try:
            proc = await asyncio.create_subprocess_exec(
                *(prefix or []), SYSTEM_PYTHON, str(DRIVER), address, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=stderr)
        finally:
            stderr.close()  # the child holds its own descriptor
        peer = cls(proc, log_path)
        await peer.wait_event("ready", timeout=20)
        return peer

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            self.events.append(json.loads(line))
            self._wake()
        self._wake()

    def _wake(self) -> None:
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._waiters.clear()

    async def changed(self, timeout: float) -> None:
        """Return when an event arrives (or the process ends), or after `timeout`."""
        w: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(w)
        try:
            await asyncio.wait_for(w, timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(w)

    async def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()

    def errors(self) -> list[str]:
        return [e["message"] for e in self.events if e["event"] == "error"]

    async def wait_event(self, name: str, timeout: float = 20.0, after: int = 0, **match: Any) -> dict[str, Any]:
        """The first `name` event at index >= `after` whose fields match."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events[after:]:
                if e["event"] == name and all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.errors():
                raise AssertionError(f"webrtcbin reported errors: {self.errors()}; log: {self.log_tail()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._reader.done():
                raise AssertionError(f"no {name} {match or ''} event from webrtcbin within {timeout} s "
                                     f"(events: {[e['event'] for e in self.events][-20:]}); log: {self.log_tail()}")
            await self.changed(remaining)

    async def stats(self) -> dict[str, Any]:
        n = len(self.events)
        await self.send(cmd="stats")
        return await self.wait_event("stats", after=n)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """The process dies at once: no DTLS close_notify, its sockets just vanish."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.send(cmd="quit")
                await asyncio.wait_for(self.proc.wait(), 5)
            except (TimeoutError, ConnectionError):
                self.kill()
        await self.proc.wait()
        self._reader.cancel()


class RelayClient(Client):
    """A Basement client whose media is a webrtcbin: SDP and candidates are relayed both ways."""

    def __init__(self, url: str, gst: GstPeer) -> None:
        super().__init__(url)
        self.gst = gst
        self._relayed = 0
        self._relay_task: asyncio.Future[None] | None = None
        self._targets: dict[str, bool] = {}  # target -> its connection exists on the server

    async def publish_gst(self, width: int = 320, height: int = 240, fps: int = 30) -> dict[str, Any]:
        """webrtcbin offers VP8 + Opus; returns the server's answer message."""
        n = len(self.gst.events)
        await self.gst.send(cmd="publish", width=width, height=height, fps=fps, audio=True)
        offer = await self.gst.wait_event("offer", after=n)
        reply = await self.request({"type": "offer", "target": "publisher", "sdp": offer["sdp"]})
        await self.gst.send(cmd="answer", sdp=reply["sdp"])
        self._start_relay("publisher")
        return reply

    async def subscribe_gst(self) -> None:
        await self.gst.send(cmd="subscribe")

    async def _on_subscriber_offer(self, msg: dict[str, Any]) -> None:
        # replaces aiortc: webrtcbin answers the server's subscribe offer
        async with self._sub_lock:
            if self._closed:
                return
            n = len(self.gst.events)
            await self.gst.send(cmd="offer", sdp=msg["sdp"])
            answer = await self.gst.wait_event("answer", after=n)
            await self.send({"type": "answer", "target": "subscriber", "sdp": answer["sdp"]})
            self._start_relay("subscriber")
            self._changed.set()

    def _start_relay(self, target: str) -> None:
        """Trickle webrtcbin's candidates to `target`; one peer is either publisher or subscriber."""
        self._targets[target] = True
        if self._relay_task is None:
            self._relay_task = asyncio.ensure_future(self._relay(target))

    async def _relay(self, target: str) -> None:
        while not self._closed:
            for e in self.gst.events[self._relayed:]:
                self._relayed += 1
                if e["event"] == "candidate" and e["candidate"]:
                    await self.send({"type": "trickle", "target": target, "candidate": {
                        "candidate": e["candidate"], "sdpMLineIndex": e["sdpMLineIndex"]}})
            await self.gst.changed(1.0)

    async def close(self) -> None:
        if self._relay_task is not None:
            self._relay_task.cancel()
        await super().close()
