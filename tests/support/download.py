"""A bulk TCP download across an emulated link: the test's side writes as fast as TCP lets it, a reader
behind the link (in the link's client namespace) counts what arrives. Beside video it is the
competing flow of an access link a household shares (issue #15's fairness run)."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from tests.support.netns import SERVER_IP

# the reader, in the client namespace: connects and prints its byte count every 0.5 s
READER = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
total, last = 0, time.monotonic()
while True:
    data = s.recv(65536)
    if not data:
        break
    total += len(data)
    if time.monotonic() - last >= 0.5:
        print(total, flush=True)
        last = time.monotonic()
"""


class Download:
    """A bulk TCP transfer from SERVER_IP to a reader behind `link` (a netns.Link or ImpairedLink);
    `received`: the bytes the reader has counted so far."""

    def __init__(self, link: Any) -> None:
        self.link = link
        self.received = 0
        self.server: asyncio.AbstractServer | None = None
        self.reader: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        chunk = bytes(65536)

        async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self._writers.add(w)
            try:
                while True:
                    w.write(chunk)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        self.server = await asyncio.start_server(serve, SERVER_IP, 0, family=socket.AF_INET)
        port = self.server.sockets[0].getsockname()[1]
        self.reader = await asyncio.create_subprocess_exec(
            *self.link.command(sys.executable, "-c", READER, SERVER_IP, str(port)), stdout=asyncio.subprocess.PIPE)
        self._watch = asyncio.ensure_future(self._read_counts())

    async def _read_counts(self) -> None:
        assert self.reader is not None and self.reader.stdout is not None
        async for line in self.reader.stdout:
            self.received = int(line)

    async def stop(self) -> None:
        if self.reader is not None and self.reader.returncode is None:
            self.reader.kill()
            await self.reader.wait()
        if self._watch is not None:
            self._watch.cancel()
        if self.server is not None:
            self.server.close()
        # the server's side of the connection: closing the listener leaves it open (a ResourceWarning
        # in whatever test runs next), and `serve` may not have seen the reader go yet
        for w in list(self._writers):
            w.close()
            try:
                await asyncio.wait_for(w.wait_closed(), 5)
            except (TimeoutError, ConnectionError, OSError):
                pass
        self._writers.clear()
