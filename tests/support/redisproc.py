"""A throwaway redis-server for the tests that need a real one (cluster, outbox, chain writer)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from signalling.ports import free_port


class RedisProc:
    """redis-server on 127.0.0.1 and a free port, in a directory of its own.

    In memory only by default (cluster state is rebuilt by heartbeats). `durable`: AOF with fsync
    always, the durability the session outbox relies on; `kill()` then `start()` again shows what
    survived. `password`: required with AUTH, set from a config file (mode 0600) so it is not in
    redis-server's argv. `tls`: (cert, key, ca) PEM paths; Redis then listens with TLS only and `url`
    is rediss://.
    """

    def __init__(self, password: str = "", tls: tuple[str, str, str] | None = None, *, durable: bool = False) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="basement-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.password = password
        self.tls = tls
        self.durable = durable

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProc:
        """Start (or, after `kill()`, restart on the same port and directory) and wait for PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make system-deps)")
        conf = os.path.join(self.dir, "redis.conf")
        with open(os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            if self.password:
                f.write(f"requirepass {self.password}\n")
        listen = ["--port", str(self.port)]
        if self.tls:
            cert, key, ca = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key,
                      "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, conf, *listen, "--bind", "127.0.0.1", "--dir", self.dir, "--save", "", *persistence,
             "--logfile", os.path.join(self.dir, "log")],
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

    def kill(self) -> None:
        """SIGKILL: no shutdown save; with `durable`, only what the AOF fsynced survives. The directory stays."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
