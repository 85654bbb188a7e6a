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
MAX_FOLLOWED = 16  # streams one socket counts (media_socket.c: a light subscriber of the bench has a few)
MAX_MISSING = 128  # skipped numbers kept per followed stream between two take_missing


class _Followed:
    """A stream counted from its clear RTP headers (media_socket.c `followed_stream`)."""

    __slots__ = ("tag_len", "max_ext", "received", "bytes", "gaps", "late", "missing")

    def __init__(self, max_ext: int, tag_len: int) -> None:
        self.tag_len = tag_len
        self.max_ext = max_ext
        self.received = self.bytes = self.gaps = self.late = 0
        self.missing: list[int] = []

    def count(self, data: bytes) -> None:
        seq = (data[2] << 8) | data[3]
        self.received += 1
        self.bytes += max(0, len(data) - self.tag_len)
        last = self.max_ext & 0xFFFF
        delta = (seq - last) & 0xFFFF
        if 0 < delta < 0x8000:
            if delta > 1:
                self.gaps += 1
                if delta < 64:
                    for k in range(1, delta):
                        skipped = (last + k) & 0xFFFF
                        if skipped not in self.missing and len(self.missing) < MAX_MISSING:
                            self.missing.append(skipped)
            self.max_ext += delta
        else:
            self.late += 1
            if seq in self.missing:
                self.missing.remove(seq)


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
        self.errors = self.calls = self.counted = 0
        self._busy = False
        self._followed: dict[int, _Followed] = {}

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

    def follow(self, ssrc: int, max_ext: int, tag_len: int) -> bool:
        """Count this RTP stream here from now on (deliver only its P-bit packets); False when
        MAX_FOLLOWED streams are followed already."""
        if max_ext < 0 or not 0 <= tag_len <= 16:
            raise ValueError("max_ext must be >= 0 and tag_len 0..16")
        if ssrc not in self._followed and len(self._followed) >= MAX_FOLLOWED:
            return False
        self._followed[ssrc] = _Followed(max_ext, tag_len)
        return True

    def followed(self, ssrc: int) -> tuple[int, int, int, int, int] | None:
        """(max_ext, received, bytes, gaps, late) of a followed stream."""
        f = self._followed.get(ssrc)
        return None if f is None else (f.max_ext, f.received, f.bytes, f.gaps, f.late)

    def take_missing(self, ssrc: int) -> list[int]:
        """The numbers skipped by small gaps and not arrived since, sorted; forgets them."""
        f = self._followed.get(ssrc)
        if f is None:
            return []
        out, f.missing = sorted(f.missing), []
        return out

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
        if self._followed and len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 209:
            f = self._followed.get(int.from_bytes(data[8:12], "big"))
            if f is not None:
                f.count(data)
                self.counted += 1
                if not data[0] & 0x20:
                    return
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
