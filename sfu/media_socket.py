"""The native data path's own UDP sockets: read with `recvmmsg`, SRTP unprotected on arrival.

uvloop's UDP transport reads one datagram per `recvfrom` and makes a bytes object, an address tuple
and a Python call for each, and it cannot be told to stop reading; in a 6 x 6 meeting that was the
largest single share of the SFU's samples. So on the native path the ICE host candidates' sockets
are ours: `MediaSocketTransport` is the asyncio datagram transport aioice's `StunProtocol` talks to,
and the event loop calls `_native.MediaSocket.drain` (C, no Python frame) whenever the socket is
readable. Until a transport's DTLS-SRTP keys are known every datagram goes to the protocol, as the
event loop would hand it over; `sfu.native_receive.NativeReceive` then attaches the receive session,
and SRTP/SRTCP goes straight to the transport's handlers.

`PyMediaSocket` is `_native.MediaSocket`'s pure-Python twin (the same tests run against both).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

from sfu.metrics import STATS

BATCH = 32  # datagrams per recvmmsg, as media_socket.c
ROUNDS = 4  # recvmmsg calls per drain at most: a busy socket cannot starve the event loop
SLOT = 65536  # bytes per datagram buffer: a UDP datagram always fits


def _address(addr: Any) -> tuple[str, int]:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return addr[0].split("%", 1)[0], addr[1]  # as the kernel's address, without an IPv6 zone
    return "", 0


class PyMediaSocket:
    """`_native.MediaSocket` in Python: one datagram per `recvmsg`, the same deliveries and counters."""

    def __init__(self, fd: int, on_other: Callable[[bytes, tuple[str, int]], None]) -> None:
        if fd < 0:
            raise ValueError("fd must be an open socket's descriptor")
        if not callable(on_other):
            raise TypeError("on_other must be callable")
        self.fd = fd
        self._sock = socket.socket(fileno=os.dup(fd))
        self._on_other = on_other
        self._session: Any = None
        self._on_rtp: Callable[[bytes], None] | None = None
        self._on_rtcp: Callable[[bytes], None] | None = None
        self._on_drop: Callable[[str], None] | None = None
        self.received = self.unprotected = self.refused = self.other = self.dropped = 0
        self.errors = self.calls = 0
        self._busy = False

    @property
    def attached(self) -> bool:
        return self._session is not None

    def attach(self, session: Any, on_rtp: Callable[[bytes], None], on_rtcp: Callable[[bytes], None],
               on_drop: Callable[[str], None]) -> None:
        if not (hasattr(session, "unprotect") and hasattr(session, "unprotect_rtcp")):
            raise TypeError(f"session must be an SrtpSession, not {type(session).__name__}")
        if not all(callable(f) for f in (on_rtp, on_rtcp, on_drop)):
            raise TypeError("on_rtp, on_rtcp and on_drop must be callable")
        self._session, self._on_rtp, self._on_rtcp, self._on_drop = session, on_rtp, on_rtcp, on_drop

    def detach(self) -> None:
        self._session = self._on_rtp = self._on_rtcp = self._on_drop = None

    def close(self) -> None:
        self.fd = -1
        self.detach()
        self._sock.close()

    def drain(self) -> int:
        if self._busy or self.fd < 0:
            return 0
        self._busy = True
        self.calls += 1
        first: BaseException | None = None
        total = 0
        try:
            while total < BATCH * ROUNDS and self.fd >= 0:
                try:
                    data, _, flags, addr = self._sock.recvmsg(SLOT)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self.errors += 1
                    break
                total += 1
                self.received += 1
                if flags & socket.MSG_TRUNC:
                    self.dropped += 1
                    continue
                try:
                    self._deliver(data, addr)
                except Exception as e:  # the first is raised when drain returns, as in C
                    if first is None:
                        first = e
        finally:
            self._busy = False
        if first is not None:
            raise first
        return total

    def _deliver(self, data: bytes, addr: Any) -> None:
        session = self._session
        if session is not None and data and 127 < data[0] < 192:
            rtcp = len(data) >= 2 and 191 < data[1] < 209
            try:
                plain = session.unprotect_rtcp(data) if rtcp else session.unprotect(data)
            except ValueError:  # SrtpError: malformed, forged, replayed, too many SSRCs
                self.refused += 1
                if self._on_drop is not None:
                    self._on_drop("srtp_refused")
                return
            self.unprotected += 1
            handler = self._on_rtcp if rtcp else self._on_rtp
            if handler is not None:
                handler(plain)
            return
        self.other += 1
        self._on_other(data, _address(addr))


class OwnDatagramTransport(asyncio.DatagramTransport):
    """What an asyncio datagram transport of ours has to say beyond sending and closing (aioice's
    StunProtocol is its protocol): `_protocol`, `_closing` and `close()` are the subclass's."""

    _protocol: asyncio.DatagramProtocol
    _closing: bool

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_write_buffer_size(self) -> int:
        return 0


class MediaSocketTransport(OwnDatagramTransport):
    """The asyncio datagram transport over one of our sockets, for aioice's StunProtocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.DatagramProtocol,
                 reader_type: Any) -> None:
        super().__init__({"socket": sock, "sockname": sock.getsockname(), "peername": None})
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._closing = False
        self.reader = reader_type(sock.fileno(), protocol.datagram_received)
        protocol.connection_made(self)
        loop.add_reader(sock.fileno(), self.reader.drain)
        STATS.sockets.add(self)

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            STATS.drop("send_buffer_full")  # UDP: the kernel's buffer is full, the datagram is lost
        except OSError as exc:
            self._protocol.error_received(exc)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        STATS.socket_closed(self)
        self._loop.remove_reader(self._sock.fileno())
        self.reader.close()
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)


# <linux/in.h>; the socket module does not name them
IP_MTU_DISCOVER = 10
IP_PMTUDISC_PROBE = 3


def open_endpoint(loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.DatagramProtocol],
                  host: str, port: int, reader_type: Any) -> tuple[MediaSocketTransport, asyncio.DatagramProtocol]:
    """A UDP socket bound to (host, port) (port 0: any), read by `reader_type`; raises OSError as
    `loop.create_datagram_endpoint` would when it cannot bind."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM,
                                                          flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET:
            # Don't Fragment on every datagram, whatever path MTU the kernel has learnt (PROBE).
            # Media datagrams are sized to fit a path (about 1,250 B at most), so none is fragmented
            # either way; and a datagram without DF costs the kernel an IP ID from its shared hashed
            # table (__ip_select_ident), about 2 % of the SFU's CPU in a 6 x 6 meeting. IPv6 routers
            # never fragment.
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        sock.bind(sockaddr)
        protocol = factory()
        return MediaSocketTransport(loop, sock, protocol, reader_type), protocol
    except BaseException:
        sock.close()
        raise
