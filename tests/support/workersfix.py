"""`basement serve --workers N` as a child process on free ports (`serve` fixture), for the tests of
media workers (tests/e2e/cluster/test_workers.py, tests/e2e/browser/test_workers_browser.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest

from sfu import transport
from signalling.ports import free_port
from signalling.protocol.client import Client
from tests.support.clusterfix import BASEMENT


class Serve:
    """`basement serve --workers N` on free ports, its log in a temporary file."""

    def __init__(self, workers: int, **settings: str) -> None:
        """`settings`: BASEMENT_* variables for the server, on top of the test's own."""
        self.port, self.metrics_port = free_port(), free_port()
        self.logdir = tempfile.mkdtemp(prefix="basement-workers-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASEMENT_")}
        env.update(BASEMENT_HOST="127.0.0.1", BASEMENT_PORT=str(self.port),
                   BASEMENT_METRICS_PORT=str(self.metrics_port), BASEMENT_ICE_ADDRESSES="127.0.0.1",
                   BASEMENT_DATA_DIR=self.logdir, PYTHONUNBUFFERED="1", **settings)
        self.log = open(os.path.join(self.logdir, "serve.log"), "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([BASEMENT, "serve", "--workers", str(workers)], env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, n: int = 40) -> str:
        self.log.flush()
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-n:])

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited with {self.proc.returncode}:\n{self.tail()}"
            try:
                async with aiohttp.ClientSession() as s, s.get(f"{self.url}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError(f"serve not ready:\n{self.tail()}")

    async def metric(self, name: str) -> dict[str, float]:
        """worker -> value of a per-worker gauge or counter."""
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = await r.text()
        out = {}
        for line in text.splitlines():
            if line.startswith(name + "{") and 'worker="' in line:
                worker = line.split('worker="', 1)[1].split('"', 1)[0]
                out[worker] = float(line.rsplit(" ", 1)[1])
        return out

    def pids(self) -> dict[int, int]:
        """worker index -> pid of its latest process, as the server logs each start."""
        out = {}
        for line in self.tail(10_000).splitlines():
            if "media worker " in line and " started (pid " in line:
                index = int(line.split("media worker ", 1)[1].split(" ", 1)[0])
                out[index] = int(line.rsplit("(pid ", 1)[1].rstrip(")"))
        return out

    def children(self) -> set[int]:
        return {int(pid) for pid in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
async def serve():
    transport.configure_ice(["127.0.0.1"])  # the test's own aiortc clients gather on loopback too
    made: list[Serve] = []
    clients: list[Client] = []

    async def make(workers: int, **settings: str) -> Serve:
        s = Serve(workers, **settings)
        made.append(s)
        await s.wait_ready()
        return s

    make.clients = clients
    try:
        yield make
    finally:
        for c in clients:
            await c.close()
        for s in made:
            s.stop()
            shutil.rmtree(s.logdir, ignore_errors=True)


async def joined(make, url: str, room: str, name: str) -> tuple[Client, dict]:
    c = Client(url)
    make.clients.append(c)
    await c.connect()
    return c, await c.join(room, name)


