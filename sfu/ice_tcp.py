"""IceTcp: passive ICE-TCP candidates on one TCP port (setting `ice_tcp_port`; RFC 6544).

On networks that let no UDP through (corporate firewalls, some proxies) a browser can still reach
the SFU if the SFU offers a TCP candidate: every transport then advertises, next to its UDP host
candidates, `a=candidate:… tcp … <address> <ice_tcp_port> typ host tcptype passive`. The browser
(an "active" candidate) connects to that port and speaks ICE over the stream, each STUN, DTLS, RTP
and RTCP packet prefixed with its 16-bit length (RFC 4571 framing).

One listening socket per local address serves every transport, as single-port UDP does
(`sfu.udp_mux`). An accepted connection belongs to nobody until its first frame: a STUN Binding
request whose USERNAME names a transport's ICE ufrag and whose MESSAGE-INTEGRITY verifies with that
transport's password. Then the connection is that transport's, for good: it becomes one more local
"socket" of the transport's aioice connection (an aioice `StunProtocol` whose datagram transport
is this stream), so ICE checks, nomination, consent, DTLS and SRTP work over it unchanged, and
`PeerTransport` sends on it as on any nominated pair (the Python send path: the native egress is
UDP only). Losing the stream is losing that pair (a TCP connection is the path; ICE-TCP has no
other recovery).

Bounds (each a counted drop, `basement_packets_dropped{reason=…}`, and the connection closed):
- a connection that does not prove itself within `HELLO_TIMEOUT_S`, or whose first frame is not a
  signed Binding request for a live transport (`ice_tcp_refused`);
- at most `MAX_UNPROVEN_PER_ADDRESS` unproven connections from one remote IP at a time, and
  `MAX_UNPROVEN` in all (`ice_tcp_limit`);
- at most `MAX_STREAMS_PER_CONNECTION` streams per transport (`ice_tcp_limit`);
- a frame of length 0 or a first byte that RFC 7983 assigns to nothing we speak (`ice_tcp_malformed`);
- what the peer does not read: once `MAX_WRITE_BUFFER` bytes wait in the kernel and asyncio for one
  stream, further media to it is dropped (`tcp_send_buffer_full`), as a full UDP socket buffer
  drops; memory per stream is bounded by that and one frame of input (64 KiB).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import weakref
from collections.abc import Iterable
from typing import Any, cast

from aioice import ice as aioice_ice
from aioice.candidate import Candidate, candidate_foundation, candidate_priority

from sfu.binding_request import binding_request
from sfu.metrics import STATS

log = logging.getLogger("basement.ice_tcp")

HELLO_TIMEOUT_S = 10.0
MAX_UNPROVEN_PER_ADDRESS = 16
MAX_UNPROVEN = 1024
MAX_STREAMS_PER_CONNECTION = 8
MAX_WRITE_BUFFER = 1 << 20
# RFC 6544 §4.2: a TCP candidate's local preference; below any UDP host candidate's (65535), so a
# path over UDP wins where both work
TCP_LOCAL_PREFERENCE = (1 << 13) * 4 + 8191  # direction preference 4 (passive host), other 8191


def _ip(addr: Any) -> str:
    return str(addr[0]).split("%", 1)[0]


class IceTcpListener:
    """The listening socket of one local address and port, and the streams accepted on it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.server: asyncio.AbstractServer | None = None
        self.streams: set[IceTcpStream] = set()
        self.unproven: dict[str, int] = {}
        self.closed = False

    async def start(self) -> IceTcpListener:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: IceTcpStream(self), sock=sock)
        return self

    def unproven_total(self) -> int:
        return sum(self.unproven.values())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.server is not None:
            self.server.close()
        for stream in list(self.streams):
            stream.close()


class IceTcpStream(asyncio.Protocol):
    """One accepted TCP connection: RFC 4571 frames in and out, and (once proven) the datagram
    transport of an aioice `StunProtocol` of the transport it proved itself for."""

    def __init__(self, listener: IceTcpListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.buffer = bytearray()
        self.connection: Any = None  # aioice Connection, once proven
        self.protocol: Any = None  # aioice StunProtocol over this stream, once proven
        self._counted_unproven = False
        self._hello_timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.received = 0
        self.sent = 0

    # --- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = (_ip(peer), int(peer[1]))
        listener = self.listener
        if listener.closed:
            transport.close()
            return
        ip = self.peer[0]
        if listener.unproven.get(ip, 0) >= MAX_UNPROVEN_PER_ADDRESS or listener.unproven_total() >= MAX_UNPROVEN:
            STATS.drop("ice_tcp_limit")
            transport.abort()
            return
        listener.unproven[ip] = listener.unproven.get(ip, 0) + 1
        self._counted_unproven = True
        listener.streams.add(self)
        self._hello_timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT_S, self._hello_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buf = self.buffer
        buf += data
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            frame = bytes(buf[2:2 + size])
            del buf[:2 + size]
            self._frame(frame)
            if self.closed:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        protocol = self.protocol
        if protocol is not None:
            protocol.connection_lost(exc)  # aioice: the pair over this stream is gone

    # --- the datagram transport aioice's StunProtocol sends through ------------------------------
    def sendto(self, data: bytes, addr: Any = None) -> None:
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return
        if len(data) > 0xFFFF:
            STATS.drop("ice_tcp_malformed")
            return
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            STATS.drop("tcp_send_buffer_full")
            return
        transport.write(struct.pack("!H", len(data)) + data)
        self.sent += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":  # not a UDP socket: the native egress must not take it (PeerTransport)
            return None
        if name == "peername":
            return self.peer
        if self.transport is None:
            return default
        return self.transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self._end()

    # --- inside --------------------------------------------------------------------------------
    def _frame(self, frame: bytes) -> None:
        self.received += 1
        if not frame:
            return self._refuse("ice_tcp_malformed")
        protocol = self.protocol
        if protocol is None:
            return self._hello(frame)
        first = frame[0]
        if first < 4:  # STUN (RFC 7983)
            try:
                protocol.datagram_received(frame, self.peer)
            except struct.error:  # aioice trusts attribute lengths (sfu.transport patches its parser)
                STATS.drop("ice_tcp_malformed")
        elif 19 < first < 64 or 127 < first < 192:  # DTLS, RTP/RTCP: the connection's data path
            self.connection.data_received(frame, 1)
        else:
            STATS.drop("ice_tcp_malformed")

    def _hello(self, frame: bytes) -> None:
        """The first frame: a Binding request signed for a live transport, or the end."""
        match = _match(frame)
        if match is None:
            return self._refuse("ice_tcp_refused")
        connection, candidate = match
        streams = _streams(connection)
        if len(streams) >= MAX_STREAMS_PER_CONNECTION:
            return self._refuse("ice_tcp_limit")
        self._proven()
        self.connection = connection
        streams.add(self)
        protocol = aioice_ice.StunProtocol(connection)
        protocol.local_candidate = candidate
        protocol.connection_made(self)  # type: ignore[arg-type]  # a datagram transport in all but name
        self.protocol = protocol
        protocol.datagram_received(frame, self.peer)

    def _hello_timeout(self) -> None:
        self._hello_timer = None
        if self.protocol is None and not self.closed:
            self._refuse("ice_tcp_refused")

    def _proven(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        if self._counted_unproven:
            self._counted_unproven = False
            ip = self.peer[0]
            left = self.listener.unproven.get(ip, 1) - 1
            if left > 0:
                self.listener.unproven[ip] = left
            else:
                self.listener.unproven.pop(ip, None)

    def _refuse(self, reason: str) -> None:
        STATS.drop(reason)
        if self.transport is not None:
            self.transport.abort()
        self._end()

    def _end(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._proven()
        self.buffer = bytearray()
        self.listener.streams.discard(self)
        if self.connection is not None:
            _streams(self.connection).discard(self)


# --- which transports are reachable over TCP ------------------------------------------------------
# ufrag -> aioice connections with that local ufrag (aioice's ufrags are 4 characters: they collide,
# and the request's signature tells the connections apart)
_by_ufrag: dict[str, list[weakref.ref[Any]]] = {}
_listeners: dict[tuple[str, int], IceTcpListener] = {}


def _streams(connection: Any) -> set[IceTcpStream]:
    streams = getattr(connection, "_basement_tcp_streams", None)
    if streams is None:
        streams = connection._basement_tcp_streams = set()
    return streams


def _match(frame: bytes) -> tuple[Any, Candidate] | None:
    request = binding_request(frame)
    if request is None:
        return None
    ufrag, msg = request
    refs = _by_ufrag.get(ufrag, [])
    for ref in list(refs):
        connection = ref()
        if connection is None or getattr(connection, "_closing", False):
            refs.remove(ref)
            continue
        if msg.check_message_integrity(connection.local_password.encode()):
            candidate = _candidate_of(connection)
            return (connection, candidate) if candidate is not None else None
    return None


def _candidate_of(connection: Any) -> Candidate | None:
    for c in connection.local_candidates:
        if c.transport == "tcp" and c.component == 1:
            return c
    return None


async def listener(host: str, port: int) -> IceTcpListener:
    """The listening socket on (host, port), opened now if it is not yet (raises OSError)."""
    key = (host, port)
    found = _listeners.get(key)
    if found is None or found.closed:
        found = _listeners[key] = await IceTcpListener(host, port).start()
    return found


async def add_candidates(connection: Any, hosts: Iterable[str], port: int) -> list[Candidate]:
    """Passive TCP host candidates for `connection` on each of `hosts` (component 1: the SFU
    bundles and multiplexes RTCP), registered so streams proving themselves for it find it."""
    made = []
    for host in hosts:
        try:
            await listener(host, port)
        except OSError as exc:
            log.warning("ICE-TCP: cannot listen on %s port %d: %s", host, port, exc.strerror or exc)
            continue
        made.append(Candidate(
            foundation=candidate_foundation("host", "tcp", host), component=1, transport="tcp",
            priority=candidate_priority(1, "host", TCP_LOCAL_PREFERENCE), host=host, port=port,
            type="host", tcptype="passive"))
    if made:
        refs = _by_ufrag.setdefault(connection.local_username, [])
        refs[:] = [r for r in refs if r() is not None]
        refs.append(weakref.ref(connection))
    return made


def rekey(connection: Any, old_ufrag: str) -> None:
    """`connection` restarted ICE: streams must now prove themselves with its new credentials.
    Streams it already has stay (one may carry the pair the restart nominates again)."""
    refs = _by_ufrag.get(old_ufrag)
    if refs is None:
        return
    mine = [r for r in refs if r() is connection]
    if not mine:
        return
    refs[:] = [r for r in refs if r() is not None and r() is not connection]
    if not refs:
        del _by_ufrag[old_ufrag]
    _by_ufrag.setdefault(connection.local_username, []).append(mine[0])


def forget(connection: Any) -> None:
    """`connection` is closing: nobody may prove a stream for it, and its streams end."""
    refs = _by_ufrag.get(getattr(connection, "local_username", ""), None)
    if refs is not None:
        refs[:] = [r for r in refs if r() is not None and r() is not connection]
        if not refs:
            del _by_ufrag[connection.local_username]
    for stream in list(getattr(connection, "_basement_tcp_streams", ())):
        stream.close()


def close_port(port: int) -> None:
    """Close the listeners on `port` (a server stopping) and every stream accepted there."""
    for key in [k for k in _listeners if k[1] == port]:
        _listeners.pop(key).close()
