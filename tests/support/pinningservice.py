"""An IPFS Pinning Service API for the tests: `mock-ipfs-pinning-service` (tests/support/pinning, `make
node-deps`), the in-memory implementation of the spec that Kubo's own remote-pinning tests run against,
standing in for Pinata and other hosted services. On 127.0.0.1 with a bearer token of its own (from the
environment, never argv)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalling.ports import free_port
from tests.support import procs

SERVE = Path(__file__).resolve().parent / "pinning" / "serve.js"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PinningServiceProc:
    def __init__(self) -> None:
        if not (SERVE.parent / "node_modules" / "mock-ipfs-pinning-service").exists():
            raise FileNotFoundError(f"{SERVE.parent}/node_modules is missing: run `make node-deps`")
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self._tmp = tempfile.TemporaryDirectory(prefix="basement-pinning-")
        self.log_path = Path(self._tmp.name) / "pinning.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> PinningServiceProc:
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(["node", str(SERVE), str(self.port)],
                                         env={**os.environ, "PIN_TOKEN": self.token},
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pinning service exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                self.pins()
                return self
            except OSError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError(f"pinning service did not answer on {self.url} within {timeout_s} s")

    def pins(self) -> dict[str, str]:
        """cid -> status of every pin the service holds (any status)."""
        req = urllib.request.Request(f"{self.url}/pins?status=queued,pinning,pinned,failed&limit=1000",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with _NO_PROXY.open(req, timeout=2) as r:
            return {p["pin"]["cid"]: p["status"] for p in json.loads(r.read())["results"]}

    def close(self) -> None:
        proc, self.proc = self.proc, None
        procs.stop(proc)
        self._tmp.cleanup()


@pytest.fixture
def pinning_service() -> Iterator[PinningServiceProc]:
    svc = PinningServiceProc().start()
    try:
        yield svc
    finally:
        svc.close()
