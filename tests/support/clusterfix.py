"""Helpers for the cluster tests: a throwaway redis-server and real `basement sfu|signal` processes."""

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

from signalling.ports import free_port

BASEMENT = str(Path(sys.executable).with_name("basement"))


class RedisProc:
    """redis-server on 127.0.0.1, in memory only (cluster state is rebuilt by heartbeats).

    `password`: required with AUTH, set from a config file (mode 0600) so it is not in redis-server's
    argv. `tls`: (cert, key, ca) PEM paths; Redis then listens with TLS only and `url` is rediss://.
    """

    def __init__(self, password: str = "", tls: tuple[str, str, str] | None = None) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="basement-cluster-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.password = password
        self.tls = tls

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProc:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        conf = os.path.join(self.dir, "redis.conf")
        with open(os.open(conf, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            if self.password:
                f.write(f"requirepass {self.password}\n")
        listen = ["--port", str(self.port)]
        if self.tls:
            cert, key, ca = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key,
                      "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            [binary, conf, *listen, "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "no", "--logfile", os.path.join(self.dir, "log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        extra = {"password": self.password or None}
        if self.tls:
            extra.update(ssl=True, ssl_ca_certs=self.tls[2])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.2, **extra).ping():
                    return self
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start: " + Path(self.dir, "log").read_text(errors="replace")[-2000:])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class Proc:
    """One `basement sfu` or `basement signal` child process on free ports."""

    def __init__(self, kind: str, ident: str, redis_url: str, logdir: str, **env: str) -> None:
        self.kind, self.id = kind, ident
        self.port, self.metrics_port = free_port(), free_port()
        self.log_path = os.path.join(logdir, f"{kind}-{ident}.log")
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("BASEMENT_")}
        child_env.update(BASEMENT_REDIS_URL=redis_url, BASEMENT_NODE_ID=ident, BASEMENT_HOST="127.0.0.1",
                         BASEMENT_PORT=str(self.port), BASEMENT_METRICS_HOST="127.0.0.1",
                         BASEMENT_METRICS_PORT=str(self.metrics_port), BASEMENT_ICE_ADDRESSES="127.0.0.1",
                         BASEMENT_LOG_LEVEL="info", PYTHONUNBUFFERED="1", **env)
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

    def logs(self) -> str:
        return "\n\n".join(f"--- {p.kind} {p.id}\n{p.tail(25)}" for p in self.nodes + self.replicas)


@pytest.fixture(scope="module")
def redis_proc():
    """A redis-server for the module's tests (each test uses its own key prefix or database)."""
    r = RedisProc().start()
    try:
        yield r
    finally:
        r.stop()
