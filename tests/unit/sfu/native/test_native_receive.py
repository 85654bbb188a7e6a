"""sfu.native_receive: SRTP/SRTCP taken off a real aioice Connection and its StunProtocol, unprotected
by the native SrtpSession and delivered synchronously; everything else still reaches aioice."""

from __future__ import annotations

import aioice
import pytest
from aioice.ice import StunProtocol
from sfu._native import SrtpError, SrtpSession

from sfu.metrics import STATS
from sfu.native_receive import NativeReceive
from tests.unit.sfu.native.test_srtp import GCM128, key_for, rtp, sr


@pytest.fixture
async def rig():
    connection = aioice.Connection(ice_controlling=False)
    protocol = StunProtocol(connection)
    protocol.local_candidate = type("C", (), {"component": 1})()
    connection._protocols.append(protocol)
    key = key_for(GCM128)
    got: dict[str, list[bytes]] = {"rtp": [], "rtcp": []}
    rx = NativeReceive(connection, SrtpSession(GCM128, key, True), SrtpError,
                       got["rtp"].append, got["rtcp"].append)
    yield connection, protocol, SrtpSession(GCM128, key, False), rx, got
    connection._protocols.clear()  # it never had a socket to close
    await connection.close()


async def test_media_is_unprotected_and_delivered_without_aioice(rig):
    connection, protocol, tx, rx, got = rig
    packets = [rtp(seq, 0x1234, bytes([seq]) * 100) for seq in range(10, 20)]
    for p in packets:
        protocol.datagram_received(tx.protect(p), ("127.0.0.1", 5000))
    report = sr(0x1234)
    protocol.datagram_received(tx.protect_rtcp(report), ("127.0.0.1", 5000))
    assert got["rtp"] == packets
    assert got["rtcp"] == [report]
    assert rx.unprotected == 11 and rx.refused == 0
    assert connection._queue.empty()  # nothing went the aiortc way


async def test_other_datagrams_still_reach_aioice(rig):
    connection, protocol, _, _, got = rig
    dtls = bytes([22, 0xFE, 0xFD]) + bytes(30)  # a DTLS record (RFC 7983: 20-63)
    protocol.datagram_received(dtls, ("127.0.0.1", 5000))
    assert connection._queue.get_nowait() == (dtls, 1)
    assert got == {"rtp": [], "rtcp": []}


async def test_forged_replayed_and_short_packets_are_counted_drops(rig):
    _, protocol, tx, rx, got = rig
    before = STATS.dropped.get("srtp_refused", 0)
    good = tx.protect(rtp(1, 0x99, b"a" * 40))
    forged = bytearray(good)
    forged[-1] ^= 1
    for data in (bytes(forged), good, good, bytes([0x80, 0x60, 0, 1])):
        protocol.datagram_received(data, ("127.0.0.1", 5000))
    assert len(got["rtp"]) == 1  # the genuine packet, once
    assert rx.refused == 3
    assert STATS.dropped["srtp_refused"] - before == 3


async def test_close_gives_the_connection_back(rig):
    connection, protocol, tx, rx, got = rig
    rx.close()
    protocol.datagram_received(tx.protect(rtp(5, 0x1, b"z" * 20)), ("127.0.0.1", 5000))
    assert got["rtp"] == []
    assert connection._queue.qsize() == 1  # aioice queued it for aiortc, as without NativeReceive
