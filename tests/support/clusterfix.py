"""Helpers for the cluster tests: a throwaway redis-server (`redis_proc`) and real `basement sfu|signal` processes."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest

from signalling.cluster.placement import Placer
from signalling.cluster.registry import Registry
from signalling.cluster.store import RedisStore
from signalling.ports import free_port
from tests.support.redisproc import RedisProc

BASEMENT = str(Path(sys.executable).with_name("basement"))


class Proc:
    """One `basement sfu` or `basement signal` child process on free ports."""

    def __init__(self, kind: str, ident: str, redis_url: str, logdir: str, **env: str) -> None:
        self.kind, self.id = kind, ident
        self.port, self.metrics_port = free_port(), free_port()
        self.log_path = os.path.join(logdir, f"{kind}-{ident}.log")
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("BASEMENT_")}
        # the data dir (a writer's CID store) in the test's own directory, not the working directory
        child_env.update({"BASEMENT_REDIS_URL": redis_url, "BASEMENT_NODE_ID": ident, "BASEMENT_HOST": "127.0.0.1",
                          "BASEMENT_PORT": str(self.port), "BASEMENT_METRICS_HOST": "127.0.0.1",
                          "BASEMENT_METRICS_PORT": str(self.metrics_port), "BASEMENT_ICE_ADDRESSES": "127.0.0.1",
                          "BASEMENT_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1",
                          "BASEMENT_DATA_DIR": os.path.join(logdir, f"data-{ident}"),
                          # one process per node unless a test says otherwise: node ids and ports as given
                          "BASEMENT_WORKERS": "1", **env})
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen([BASEMENT, kind], env=child_env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def get(self, path: str, port: int | None = None) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port or self.port}{path}") as r:
            return r.status, await r.text()

    async def wait_ready(self, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} {self.id} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                status, _ = await self.get("/readyz")
                if status == 200:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.kind} {self.id} not ready:\n{self.tail()}")

    async def metric(self, name: str) -> float:
        _, text = await self.get("/metrics", self.metrics_port)
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind} {self.id} still running:\n{self.tail()}")
            await asyncio.sleep(0.1)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()

    def tail(self, n: int = 40) -> str:
        self.log.flush()
        lines = Path(self.log_path).read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


class Cluster:
    def __init__(self, redis: RedisProc) -> None:
        self.redis = redis
        self.logdir = tempfile.mkdtemp(prefix="basement-cluster-logs-")
        self.nodes: list[Proc] = []
        self.replicas: list[Proc] = []
        self.grant_secret = secrets.token_hex(32)
        self.admin_key = secrets.token_hex(16)
        self.public_url = "https://meet.basement.test"

    async def start(self, nodes: int, replicas: int, **env: str) -> Cluster:
        self.nodes = [Proc("sfu", f"sfu{i}", self.redis.url, self.logdir, BASEMENT_DRAIN_TIMEOUT_S="120", **env)
                      for i in range(nodes)]
        # what a Helm release gives every replica alike: one grant key, one public URL, one admin key
        shared = {"BASEMENT_GRANT_SECRET": self.grant_secret, "BASEMENT_PUBLIC_URL": self.public_url,
                  "BASEMENT_ADMIN_KEY": self.admin_key, **env}
        self.replicas = [Proc("signal", f"sig{i}", self.redis.url, self.logdir, **shared) for i in range(replicas)]
        await asyncio.gather(*(p.wait_ready() for p in self.nodes + self.replicas))
        return self

    def node(self, node_id: str) -> Proc:
        return next(p for p in self.nodes if p.id == node_id)

    def stop(self) -> None:
        for p in self.nodes + self.replicas:
            p.kill()
        # the logs matter while a test can still fail with them (`logs`); afterwards they are litter
        shutil.rmtree(self.logdir, ignore_errors=True)

    def logs(self) -> str:
        return "\n\n".join(f"--- {p.kind} {p.id}\n{p.tail(25)}" for p in self.nodes + self.replicas)


async def placement(c: Cluster, room: str) -> str | None:
    """The node `room` is placed on, as Redis says."""
    store = RedisStore(c.redis.url)
    await store.start()
    try:
        return await Placer(store, Registry(store)).current(room)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def redis_proc():
    """A redis-server for the module's tests (each test uses its own key prefix or database)."""
    r = RedisProc().start()
    try:
        yield r
    finally:
        r.stop()
