"""sfu.udp_mux: who a datagram on the shared port belongs to, and what nobody gets."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aioice import stun

from sfu import udp_mux
from sfu.metrics import STATS


class Connection:  # the two attributes of aioice's Connection the mux reads
    def __init__(self, ufrag: str, password: str) -> None:
        self.local_username, self.local_password = ufrag, password
        self._nominated: dict[int, Any] = {}


class Protocol(asyncio.DatagramProtocol):
    def __init__(self, ufrag: str, password: str) -> None:
        self.receiver = Connection(ufrag, password)
        self.got: list[tuple[bytes, Any]] = []
        self.lost = False

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append((data, addr))

    def connection_lost(self, exc: Any) -> None:
        self.lost = True


def request(ufrag: str, password: bytes | None) -> bytes:
    msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes={"USERNAME": f"{ufrag}:peer"})
    if password is not None:
        msg.add_message_integrity(password)
    return bytes(msg)


@pytest.fixture
async def mux():
    m = udp_mux.UdpMux(asyncio.get_running_loop(), "127.0.0.1", 0)
    yield m
    m.close()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def peer() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


async def test_a_signed_request_binds_its_address_then_everything_from_there_follows(mux):
    a, b = Protocol("ua", "pa"), Protocol("ub", "pb")
    mux.endpoint(a)
    mux.endpoint(b)
    pa, pb = peer(), peer()
    before = STATS.dropped.get("mux_unmatched", 0)
    pa.sendto(b"\x80early rtp", mux.sockname)  # before any request: nobody's
    pa.sendto(request("ua", b"pa"), mux.sockname)
    pa.sendto(b"\x16dtls", mux.sockname)
    pb.sendto(request("ub", b"pb"), mux.sockname)
    pb.sendto(request("ua", b"pa"), mux.sockname)  # b's address stays b's, whatever it names
    await settle()
    assert [d[:1] for d, _ in a.got] == [b"\x00", b"\x16"]
    assert {addr for _, addr in a.got} == {pa.getsockname()}
    assert len(b.got) == 2 and {addr for _, addr in b.got} == {pb.getsockname()}
    assert STATS.dropped.get("mux_unmatched", 0) - before == 1
    pa.close()
    pb.close()


async def test_unsigned_forged_and_unknown_requests_bind_nothing(mux):
    a = Protocol("ua", "pa")
    mux.endpoint(a)
    p = peer()
    for d in (request("ua", None), request("ua", b"wrong"), request("nobody", b"pa"), request("ua", b"pa")[:30],
              b"\x00" * 20, b"\x01\x01" + b"\x00" * 18):
        p.sendto(d, mux.sockname)
    await settle()
    assert a.got == [] and mux.unmatched == 6
    p.close()


async def test_addresses_a_transport_sends_to_are_learnt_but_bounded(mux):
    a = Protocol("ua", "pa")
    ep = mux.endpoint(a)
    peers = [peer() for _ in range(udp_mux.MAX_ADDRESSES + 2)]
    for p in peers:
        ep.sendto(b"\x00check", p.getsockname())
    await settle()
    for p in peers:
        p.sendto(b"\x00\x01answer", mux.sockname)
    await settle()
    assert len(a.got) == udp_mux.MAX_ADDRESSES and len(ep.addresses) == udp_mux.MAX_ADDRESSES
    assert mux.unmatched == 2
    for p in peers:
        p.close()


async def test_a_closed_transport_is_forgotten(mux):
    a = Protocol("ua", "pa")
    ep = mux.endpoint(a)
    p = peer()
    p.sendto(request("ua", b"pa"), mux.sockname)
    await settle()
    ep.close()
    await settle()
    assert a.lost and mux.endpoints == 0
    p.sendto(b"\x16late", mux.sockname)
    p.sendto(request("ua", b"pa"), mux.sockname)
    await settle()
    assert len(a.got) == 1 and mux.unmatched == 2
    with pytest.raises(OSError):  # no credentials, no share
        mux.endpoint(Protocol("", "x"))
    p.close()


async def test_two_transports_with_one_ufrag_are_told_apart_by_their_passwords(mux):
    # aioice's ufrags have 24 bits: on a busy node two transports share one now and then
    a, b = Protocol("same", "password-of-a"), Protocol("same", "password-of-b")
    mux.endpoint(a)
    mux.endpoint(b)
    pa, pb = peer(), peer()
    pb.sendto(request("same", b"password-of-b"), mux.sockname)
    pa.sendto(request("same", b"password-of-a"), mux.sockname)
    await settle()
    assert [addr for _, addr in a.got] == [pa.getsockname()]
    assert [addr for _, addr in b.got] == [pb.getsockname()]
    pa.close()
    pb.close()


async def test_an_address_only_sent_to_gives_way_to_a_signed_request_of_another_transport(mux):
    # a participant lists someone else's address among its candidates: the SFU's checks go there,
    # but that address's own signed request still reaches its transport, and keeps it
    a, b = Protocol("ua", "pa"), Protocol("ub", "pb")
    ea, eb = mux.endpoint(a), mux.endpoint(b)
    p = peer()
    ea.sendto(b"\x00check", p.getsockname())  # tentative: a only sent there
    await settle()
    p.sendto(request("ub", b"pb"), mux.sockname)
    p.sendto(b"\x16dtls", mux.sockname)
    await settle()
    assert a.got == [] and [d[:1] for d, _ in b.got] == [b"\x00", b"\x16"]
    assert p.getsockname() in eb.proven and p.getsockname() not in ea.addresses
    # proven now: a cannot take it back by sending, nor by a request signed for it
    ea.sendto(b"\x00check", p.getsockname())
    p.sendto(request("ua", b"pa"), mux.sockname)
    await settle()
    assert a.got == [] and len(b.got) == 3
    p.close()
