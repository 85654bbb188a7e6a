"""A real IPFS node for the tests: js-ipfs (`jsipfs daemon`) with the Kubo-compatible HTTP RPC API.

npm's `kubo`/`go-ipfs` packages download their binary from GitHub at install time, which this machine
cannot reach; js-ipfs is JavaScript from the npm registry (tests/support/ipfs, `make node-deps`).
Two `overrides` in its package.json keep that install working here: `mortice` pinned to 3.0.6 (3.3
needs `Promise.withResolvers`, which the image's Node 20 lacks), and the optional WebRTC transports
`wrtc`/`electron-webrtc` replaced by `no-wrtc`, a stub that fails to import (their dependency chain
fetches a tarball from GitHub, so `npm ci` could not run; the daemon then runs without WebRTC).

The node runs `--offline` with a repo of its own: no swarm listeners, no bootstrap peers, no MDNS or
delegates, the API on 127.0.0.1 only. It can be stopped and started again on the same repo and port
(an IPFS outage).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalling.ports import free_port
from tests.support import procs

JSIPFS = Path(__file__).resolve().parent / "ipfs" / "node_modules" / ".bin" / "jsipfs"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class IpfsNode:
    def __init__(self, repo: Path | None = None, port: int = 0) -> None:
        if not JSIPFS.exists():
            raise FileNotFoundError(f"{JSIPFS} is missing: run `make node-deps`")
        self._tmp = None if repo else tempfile.TemporaryDirectory(prefix="basement-ipfs-")
        self.repo = repo or Path(self._tmp.name) / "repo"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.repo.parent / "jsipfs.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "IPFS_PATH": str(self.repo)}

    def _init(self) -> None:
        subprocess.run([str(JSIPFS), "init", "--empty-repo"], env=self._env(), check=True, capture_output=True,
                       timeout=60)
        config_path = self.repo / "config"
        config = json.loads(config_path.read_text())
        config["Addresses"] = {"Swarm": [], "Announce": [], "NoAnnounce": [], "Delegates": [],
                               "API": f"/ip4/127.0.0.1/tcp/{self.port}", "Gateway": "", "RPC": ""}
        config["Bootstrap"] = []
        config["Discovery"] = {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}}
        config_path.write_text(json.dumps(config, indent=1))

    def start(self, timeout_s: float = 60.0) -> IpfsNode:
        if not (self.repo / "config").exists():
            self._init()
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([str(JSIPFS), "daemon", "--offline"], env=self._env(),
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jsipfs daemon exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                req = urllib.request.Request(f"{self.url}/api/v0/version", method="POST")
                with _NO_PROXY.open(req, timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"jsipfs daemon did not answer on {self.url} within {timeout_s} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        procs.stop(proc)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


@pytest.fixture
def ipfs_node() -> Iterator[IpfsNode]:
    node = IpfsNode().start()
    try:
        yield node
    finally:
        node.close()
