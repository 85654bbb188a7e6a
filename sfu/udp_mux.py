"""UdpMux: every ICE transport of a node on one UDP port (setting `ice_udp_port`).

A port range per node is hard to run behind Kubernetes Services, load balancers and firewalls, so in
single-port mode every transport's host candidate has the same port. One socket per local address
(`UdpMux`) receives what comes to the port from addresses nobody knows yet, and hands each datagram
to the transport it belongs to (`MuxEndpoint`, the asyncio datagram transport aioice's StunProtocol
talks to):

1. by remote address, once known; else
2. by ICE username: a STUN Binding request names the local ufrag ("ufrag:peer-ufrag", RFC 8445
   §7.2.2). Its MESSAGE-INTEGRITY must verify with that transport's password before its source
   address is learnt, so nobody who does not know the password can steer another's traffic.
   Addresses the transport sends to are learnt too (the answers to its own checks come from them),
   but only tentatively: a signed request of another transport from such an address takes it over.

Anything else is dropped and counted (`basement_packets_dropped{reason="mux_unmatched"}`).

Once ICE has nominated a pair and DTLS starts on it, the transport gets a socket of its own: bound
to the same port with SO_REUSEPORT and `connect()`ed to the peer's address. The kernel delivers a
datagram to the connected socket whose peer matches before the shared one, so from then on the
transport's media is read (natively, with `recvmmsg`, on the native data path) and sent on its own
socket exactly as with a port per transport: the data path does not know the difference.
Datagrams still queued on the shared socket are handed over by address as before.

Bounds: a transport learns at most `MAX_ADDRESSES` remote addresses; an address belongs to the
first transport that proved it (never re-assigned while that transport lives).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from sfu.binding_request import binding_request
from sfu.media_socket import IP_MTU_DISCOVER, IP_PMTUDISC_PROBE, OwnDatagramTransport, PyMediaSocket
from sfu.metrics import STATS

log = logging.getLogger("basement.udp_mux")

MAX_ADDRESSES = 16  # remote addresses one transport may use (host, srflx, relay, IPv4 and IPv6 ...)
READ_BATCH = 64  # datagrams per wake-up of the shared socket at most
SLOT = 65536


def _addr(addr: Any) -> tuple[str, int]:
    return addr[0].split("%", 1)[0], int(addr[1])


def _bind(host: str, port: int, peer: tuple[str, int] | None = None) -> socket.socket:
    family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM,
                                                          flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)  # as media_socket
        sock.bind(sockaddr)
        if peer is not None:
            sock.connect(peer)
        return sock
    except BaseException:
        sock.close()
        raise


class UdpMux:
    """The shared socket of one local address and port, and who its datagrams belong to."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, reader_type: Any = None) -> None:
        self.loop = loop
        self.host = host
        self.sock = _bind(host, port)
        self.sockname = self.sock.getsockname()[:2]
        self.port = self.sockname[1]
        self.reader_type = reader_type or PyMediaSocket  # for the transports' own sockets
        # aioice's ufrags are 4 random characters (24 bits), so two transports of a busy node may share
        # one: the request's MESSAGE-INTEGRITY tells them apart (each has its own 22-character password)
        self._by_ufrag: dict[str, list[MuxEndpoint]] = {}
        self._by_addr: dict[tuple[str, int], MuxEndpoint] = {}
        self.closed = False
        self.unmatched = 0
        loop.add_reader(self.sock.fileno(), self._read)

    @property
    def endpoints(self) -> int:
        return sum(len(eps) for eps in self._by_ufrag.values())

    def endpoint(self, protocol: asyncio.DatagramProtocol) -> MuxEndpoint:
        ep = MuxEndpoint(self, protocol)
        connection = getattr(protocol, "receiver", None)  # aioice's Connection
        ufrag = getattr(connection, "local_username", None)
        password = getattr(connection, "local_password", None)
        if not ufrag or not password:
            raise OSError(f"cannot share UDP port {self.port}: this transport has no ICE credentials")
        ep.ufrag, ep.password = ufrag, password.encode()
        self._by_ufrag.setdefault(ufrag, []).append(ep)
        protocol.connection_made(ep)
        return ep

    def learn(self, ep: MuxEndpoint, addr: tuple[str, int], proven: bool = False) -> bool:
        """`addr` is `ep`'s: `proven` by a request signed with its password, or only sent to by it
        (tentative: a proven claim of another transport takes it over, or a participant could list
        someone else's address among its candidates and have that one's checks come to it)."""
        owner = self._by_addr.get(addr)
        if owner is ep:
            if proven:
                ep.proven.add(addr)
            return True
        if owner is not None and (not proven or addr in owner.proven):
            return False
        if len(ep.addresses) >= MAX_ADDRESSES:
            return False
        if owner is not None:  # a tentative claim gives way to a proven one
            owner.addresses.discard(addr)
        self._by_addr[addr] = ep
        ep.addresses.add(addr)
        if proven:
            ep.proven.add(addr)
        return True

    def rekey(self, ep: MuxEndpoint, ufrag: str, password: str) -> None:
        """`ep`'s transport restarted ICE with new credentials: its checks now name these. The
        addresses it proved stay its own (its peer may come back on one of them)."""
        same = self._by_ufrag.get(ep.ufrag, [])
        if ep in same:
            same.remove(ep)
            if not same:
                del self._by_ufrag[ep.ufrag]
        ep.ufrag, ep.password = ufrag, password.encode()
        self._by_ufrag.setdefault(ufrag, []).append(ep)

    def forget(self, ep: MuxEndpoint) -> None:
        same = self._by_ufrag.get(ep.ufrag, [])
        if ep in same:
            same.remove(ep)
            if not same:
                del self._by_ufrag[ep.ufrag]
        for addr in ep.addresses:
            if self._by_addr.get(addr) is ep:
                del self._by_addr[addr]
        ep.addresses.clear()
        ep.proven.clear()

    def sendto(self, data: Any, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            STATS.drop("send_buffer_full")
        except OSError as exc:
            log.debug("shared UDP socket %s: sendto %s failed: %s", self.sockname, addr, exc)

    def _read(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data, addr = self.sock.recvfrom(SLOT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error for an earlier send: nothing to read
                log.debug("shared UDP socket %s: %s", self.sockname, exc)
                return
            self.deliver(data, _addr(addr))

    def deliver(self, data: bytes, addr: tuple[str, int]) -> None:
        ep = self._by_addr.get(addr)
        if ep is None or (addr not in ep.proven and data[:1] == b"\x00"):
            # a new address, or a request from one only sent to so far: whose it is, the signature says
            ep = self._match(data, addr) or ep
        if ep is None:
            self.unmatched += 1
            STATS.drop("mux_unmatched")
            return
        ep.received(data, addr)

    def _match(self, data: bytes, addr: tuple[str, int]) -> MuxEndpoint | None:
        """The transport a STUN Binding request from a new address is for, once its integrity verifies."""
        request = binding_request(data)
        if request is None:
            return None
        ufrag, msg = request
        for ep in self._by_ufrag.get(ufrag, ()):
            if msg.check_message_integrity(ep.password):  # signed with this transport's password
                return ep if self.learn(ep, addr, proven=True) else None
        return None  # nobody's, or not signed (with the right password)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for eps in list(self._by_ufrag.values()):
            for ep in list(eps):
                ep.close()


_muxes: dict[tuple[str, int], UdpMux] = {}


def mux_for(loop: asyncio.AbstractEventLoop, host: str, port: int, reader_type: Any = None) -> UdpMux:
    """The shared socket of (host, port) in this process, opened on first use (OSError if it cannot bind)."""
    mux = _muxes.get((host, port))
    if mux is None or mux.closed or mux.loop is not loop:
        mux = _muxes[(host, port)] = UdpMux(loop, host, port, reader_type)
    return mux


def close_port(port: int) -> None:
    """Close the shared sockets of `port` (a server stopping) and every transport still on them."""
    for key in [k for k in _muxes if k[1] == port]:
        _muxes.pop(key).close()


class MuxEndpoint(OwnDatagramTransport):
    """One ICE transport's share of a UdpMux; later, its own connected socket."""

    def __init__(self, mux: UdpMux, protocol: asyncio.DatagramProtocol) -> None:
        super().__init__({"sockname": mux.sockname, "peername": None})
        self.mux = mux
        self._protocol = protocol
        self.ufrag = ""
        self.password = b""
        self.addresses: set[tuple[str, int]] = set()
        self.proven: set[tuple[str, int]] = set()  # those a request signed with `password` came from
        self.peer: tuple[str, int] | None = None  # the connected socket's peer
        self.own: socket.socket | None = None
        self.reader: Any = None  # the connected socket's reader (sfu.native_receive attaches to it)
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":  # the egress sends on it (sfu.transport._resolve_send)
            return self.own if self.own is not None else self.mux.sock
        return super().get_extra_info(name, default)

    # --- from the network ---------------------------------------------------------------------
    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._closing:
            return
        if self.own is None and data and 19 < data[0] < 64:  # DTLS (RFC 7983): on the nominated pair?
            self._connect_if_nominated(addr)
        self._protocol.datagram_received(data, addr)

    def _from_own(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self._closing:
            self._protocol.datagram_received(data, addr)

    # --- to the network -----------------------------------------------------------------------
    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing or addr is None:
            return
        addr = _addr(addr)
        if self.own is None and data and 19 < data[0] < 64:
            self._connect_if_nominated(addr)
        if self.own is not None and addr == self.peer:
            try:
                self.own.send(data)
            except (BlockingIOError, InterruptedError):
                STATS.drop("send_buffer_full")
            except OSError as exc:
                self._protocol.error_received(exc)
            return
        self.mux.learn(self, addr)  # the answer to what we send comes back from there
        self.mux.sendto(data, addr)

    def _connect_if_nominated(self, addr: tuple[str, int]) -> None:
        connection = getattr(self._protocol, "receiver", None)
        component = getattr(getattr(self._protocol, "local_candidate", None), "component", 1)
        pair = getattr(connection, "_nominated", {}).get(component)
        if pair is None or pair.protocol is not self._protocol or _addr(pair.remote_addr) != addr:
            return
        try:
            own = _bind(self.mux.host, self.mux.port, addr)
        except OSError as exc:  # the shared socket still carries it
            log.warning("UDP port %d: no socket of its own for %s (%s); it stays on the shared one",
                        self.mux.port, addr, exc)
            return
        self.own, self.peer = own, addr
        self.mux.learn(self, addr)
        self.reader = self.mux.reader_type(own.fileno(), self._from_own)
        self.mux.loop.add_reader(own.fileno(), self.reader.drain)
        STATS.sockets.add(self)  # basement_datagrams_received and friends count its reads

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.mux.forget(self)
        if self.own is not None:
            STATS.socket_closed(self)
            if not self.mux.loop.is_closed():
                self.mux.loop.remove_reader(self.own.fileno())
            self.reader.close()
            self.own.close()
        self.mux.loop.call_soon(self._protocol.connection_lost, None)
