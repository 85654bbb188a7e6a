"""A real coturn TURN server on 127.0.0.1 for tests, with the TURN REST API shared secret.

Its configuration goes to a file of mode 0600 (the secret stays out of every process's argv), its
log to `turn.log` in the test's directory; relayed traffic only ever goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from pathlib import Path

from signalling.ports import free_port
from tests.support import procs

RELAY_PORTS = (50000, 50999)  # where coturn allocates relayed addresses


class Coturn:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.secret = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None

    def url(self, transport: str = "udp") -> str:
        return f"turn:127.0.0.1:{self.port}?transport={transport}"

    @property
    def log(self) -> str:
        path = self.workdir / "turn.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self, timeout: float = 10.0) -> Coturn:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "turnserver.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join([
                "listening-ip=127.0.0.1", "relay-ip=127.0.0.1", f"listening-port={self.port}",
                f"min-port={RELAY_PORTS[0]}", f"max-port={RELAY_PORTS[1]}",
                "use-auth-secret", f"static-auth-secret={self.secret}", "realm=basement.test",
                "fingerprint", "no-tls", "no-dtls", "no-cli", "no-multicast-peers",
                # the SFU under test listens on loopback, which coturn refuses to relay to by default
                "allow-loopback-peers",
                f"userdb={self.workdir / 'turndb'}", f"pidfile={self.workdir / 'turnserver.pid'}",
                f"log-file={self.workdir / 'turn.log'}", "simple-log", "verbose", "",
            ]))
        self.proc = _spawn(conf)
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"coturn did not start (exit {self.proc.returncode}):\n"
                                       f"{self.log[-2000:]}") from None
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        procs.stop(self.proc, 5)


def _spawn(conf: Path) -> subprocess.Popen:
    return subprocess.Popen(["turnserver", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
