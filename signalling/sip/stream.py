"""SIP over TCP (RFC 3261 §18.3): messages framed by their Content-Length on a connection, each
answered on the connection it came on (SipService.handle with a stream Peer).

Bounded like every network input here: a message at most MAX_MESSAGE bytes and whole within
MESSAGE_S of its first byte (a slow sender is cut off), a connection idle IDLE_S closed, at most
MAX_PER_ADDRESS connections from one address and MAX_CONNECTIONS in all (more are closed at once,
counted), and at most MAX_UNSENT bytes waiting for a peer that does not read. A message without a
Content-Length cannot be framed: it is answered 400 (the parser says why) and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from typing import TYPE_CHECKING

from signalling.sip.message import MAX_MESSAGE

if TYPE_CHECKING:
    from signalling.sip.service import SipService

log = logging.getLogger("basement.sip")

IDLE_S = 300.0
MESSAGE_S = 10.0
MAX_PER_ADDRESS = 16
MAX_CONNECTIONS = 1024
MAX_UNSENT = 256 * 1024
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([0-9]{1,6})[ \t]*\r?$", re.I | re.M)


class FramingError(ValueError):
    pass


class Framer:
    """Bytes of one connection in, whole messages out (sans-IO). `broken` once a message could not
    be framed (it is still handed out, for the parser to answer): nothing after it can be."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.broken = False

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out: list[bytes] = []
        while self.buf and not self.broken:
            if self.buf.startswith(b"\r\n"):
                if b"\r\n\r\n".startswith(bytes(self.buf[:4])) and len(self.buf) < 4:
                    break  # a ping or a CRLF, not all here yet
                if self.buf.startswith(b"\r\n\r\n"):
                    out.append(b"\r\n\r\n")  # a keep-alive ping (RFC 5626 §3.5.1)
                    del self.buf[:4]
                else:
                    del self.buf[:2]  # (a CRLF between messages)
                continue
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_MESSAGE:
                    raise FramingError(f"no end of headers in {MAX_MESSAGE} bytes")
                break
            head = bytes(self.buf[:end])
            lengths = _CONTENT_LENGTH.findall(head)
            if len(lengths) != 1:
                self.broken = True  # the parser answers why (missing, or more than one)
                out.append(head + b"\r\n\r\n")
                break
            total = end + 4 + int(lengths[0])
            if total > MAX_MESSAGE:
                raise FramingError(f"a message of {total} bytes: at most {MAX_MESSAGE}")
            if len(self.buf) < total:
                break
            out.append(bytes(self.buf[:total]))
            del self.buf[:total]
        return out


class StreamListener:
    """The SIP service's TCP port (the same number as its UDP one)."""

    def __init__(self, service: SipService) -> None:
        self.service = service
        self.server: asyncio.Server | None = None
        self.per_address: Counter[str] = Counter()
        self.connections = 0
        self.tasks: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._accept, host, port, limit=MAX_MESSAGE)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self.tasks):
            t.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from signalling.sip.service import Peer

        addr = writer.get_extra_info("peername")[:2]
        stats = self.service.stats
        if self.connections >= MAX_CONNECTIONS or self.per_address[addr[0]] >= MAX_PER_ADDRESS:
            stats["drop:tcp_connections"] += 1
            writer.close()
            return
        self.connections += 1
        self.per_address[addr[0]] += 1
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)

        def send(data: bytes) -> None:
            if writer.is_closing():
                return
            if writer.transport.get_write_buffer_size() > MAX_UNSENT:
                stats["drop:tcp_unread"] += 1
                writer.close()  # a peer that does not read its answers
                return
            writer.write(data)

        peer = Peer(addr, send, stream=True)
        framer = Framer()
        started: float | None = None  # when the message being read began
        try:
            while not writer.is_closing():
                now = time.monotonic()
                wait = IDLE_S if started is None else MESSAGE_S - (now - started)
                if wait <= 0:
                    stats["drop:tcp_slow_message"] += 1
                    break
                try:
                    data = await asyncio.wait_for(reader.read(65536), wait)
                except TimeoutError:
                    stats["drop:tcp_slow_message" if started is not None else "tcp_idle_closed"] += 1
                    break
                if not data:
                    break
                try:
                    messages = framer.feed(data)
                except FramingError as e:
                    stats["drop:tcp_framing"] += 1
                    log.info("SIP/TCP from %s: %s; closing", addr[0], e)
                    break
                for m in messages:
                    self.service.handle(m, peer, time.monotonic())
                if framer.broken:
                    break
                started = (started or time.monotonic()) if framer.buf else None
        except (ConnectionError, OSError):
            pass
        finally:
            self.connections -= 1
            self.per_address[addr[0]] -= 1
            if self.per_address[addr[0]] <= 0:
                del self.per_address[addr[0]]
            if task is not None:
                self.tasks.discard(task)
            writer.close()
