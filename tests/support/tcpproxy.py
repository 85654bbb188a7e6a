"""A TCP proxy on 127.0.0.1 that can fail like a network: cut every connection, refuse new ones.

Tests put it between a client and the server's HTTP port to drop a signalling WebSocket the way a
lost Wi-Fi or a changed network does: no close frame, no FIN from the peer that still thinks the
connection is up (`cut` aborts both sides), and for a while no way back (`down`).
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0  # accepted since start
        self.down = False  # refuse (reset) new connections, as an unreachable server would look
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._frozen: set[asyncio.StreamWriter] = set()  # connections that carry nothing any more
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Abort every open connection, both sides; returns how many were cut."""
        writers = list(self._open)
        for w in writers:
            w.transport.abort()
        self._open.clear()
        return len(writers) // 2

    def freeze(self) -> int:
        """From now on the open connections carry nothing, either way, and stay open: a path that went
        dark without a reset, which neither end notices until a timeout. New connections work."""
        self._frozen |= self._open
        return len(self._open) // 2

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._open.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if dst in self._frozen:
                    continue  # lost on the way
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # the other side ended: pass the end on (a clean close stays clean)
            if dst in self._open:
                self._open.discard(dst)
                with contextlib.suppress(Exception):
                    dst.close()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
