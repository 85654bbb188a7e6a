"""sfu.ice_tcp: ICE over a TCP stream (RFC 6544, RFC 4571 framing) with real aioice connections.

The SFU's side is an aioice Connection with the passive TCP candidate `add_candidates` gives it. The
peer is either raw frames on a socket (to see exactly what the listener accepts and answers) or a
second aioice Connection whose one local "socket" is an active TCP stream (`Active`, below): the
two then run ICE to the end, nominate the pair over TCP and exchange data both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

import aioice
import pytest
from aioice import stun
from aioice.candidate import Candidate

from sfu import ice_tcp
from sfu.metrics import STATS
from signalling.ports import free_port


def frame(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def request(connection: Any, password: str | None = None, username: str | None = None) -> bytes:
    msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST,
                       attributes={"USERNAME": username or f"{connection.local_username}:peer",
                                   "PRIORITY": 1234, "ICE-CONTROLLING": 1})
    msg.add_message_integrity((password or connection.local_password).encode())
    return bytes(msg)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))[0]
    return await asyncio.wait_for(reader.readexactly(size), 5)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


def dropped(reason: str) -> int:
    return STATS.dropped.get(reason, 0)


@pytest.fixture
async def sfu_side():
    """An aioice Connection (controlled, as for a publisher's offer) with a passive TCP candidate."""
    port = free_port()
    connection = aioice.Connection(ice_controlling=False)
    candidates = await ice_tcp.add_candidates(connection, ["127.0.0.1"], port)
    connection._local_candidates += candidates
    yield connection, port
    ice_tcp.forget(connection)
    await connection.close()
    ice_tcp.close_port(port)


async def test_the_candidate_is_a_passive_tcp_host_candidate_below_udp(sfu_side):
    connection, port = sfu_side
    [c] = [c for c in connection.local_candidates if c.transport == "tcp"]
    assert (c.host, c.port, c.type, c.tcptype, c.component) == ("127.0.0.1", port, "host", "passive", 1)
    assert f"127.0.0.1 {port} typ host tcptype passive" in c.to_sdp()
    udp_host = aioice.candidate.candidate_priority(1, "host")
    assert 0 < c.priority < udp_host  # a path over UDP wins where both work


async def test_a_signed_request_split_over_segments_gets_a_signed_answer(sfu_side):
    connection, port = sfu_side
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = frame(request(connection)) + frame(request(connection))  # two frames, one byte at a time
    for i in range(len(data)):
        writer.write(data[i:i + 1])
        await writer.drain()
    for _ in range(2):
        answer = stun.parse_message(await read_frame(reader))
        assert (answer.message_method, answer.message_class) == (stun.Method.BINDING, stun.Class.RESPONSE)
        assert answer.attributes["XOR-MAPPED-ADDRESS"] == writer.get_extra_info("sockname")[:2]
        assert answer.check_message_integrity(connection.local_password.encode())
    assert len(connection._basement_tcp_streams) == 1
    writer.close()


@pytest.mark.parametrize("first", ["wrong password", "unknown ufrag", "not stun", "empty frame", "rtp"])
async def test_a_stream_that_does_not_prove_itself_first_is_closed_and_counted(sfu_side, first):
    connection, port = sfu_side
    payload = {"wrong password": request(connection, password="x" * 22),
               "unknown ufrag": request(connection, username="zzzz:peer"),
               "not stun": b"GET / HTTP/1.1\r\n\r\n",
               "empty frame": b"",
               "rtp": b"\x80\x60" + bytes(30)}[first]
    reason = "ice_tcp_malformed" if first == "empty frame" else "ice_tcp_refused"
    before = dropped(reason)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(payload))
    assert await closed_by_server(reader)
    assert dropped(reason) == before + 1
    assert not getattr(connection, "_basement_tcp_streams", set())
    writer.close()


async def test_a_silent_stream_is_closed_after_the_hello_timeout(sfu_side, monkeypatch):
    _, port = sfu_side
    monkeypatch.setattr(ice_tcp, "HELLO_TIMEOUT_S", 0.2)
    before = dropped("ice_tcp_refused")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await closed_by_server(reader)
    assert dropped("ice_tcp_refused") == before + 1
    writer.close()


async def test_unproven_streams_per_address_are_limited(sfu_side, monkeypatch):
    connection, port = sfu_side
    monkeypatch.setattr(ice_tcp, "MAX_UNPROVEN_PER_ADDRESS", 3)
    before = dropped("ice_tcp_limit")
    waiting = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await closed_by_server(reader)
    assert dropped("ice_tcp_limit") == before + 1
    # one that proves itself frees its place
    first_reader, first_writer = waiting[0]
    first_writer.write(frame(request(connection)))
    await read_frame(first_reader)
    r2, w2 = await asyncio.open_connection("127.0.0.1", port)
    w2.write(frame(request(connection)))
    assert stun.parse_message(await read_frame(r2)).message_class == stun.Class.RESPONSE
    for _, w in [*waiting, (reader, writer), (r2, w2)]:
        w.close()


async def test_a_stun_message_aioice_cannot_parse_is_a_counted_drop_on_a_proven_stream(sfu_side):
    """aioice's attribute decoders trust the lengths (a 2-byte PRIORITY raises struct.error, not
    ValueError): on a proven stream that is a counted drop, the stream goes on. (`stun_malformed` where
    sfu.transport's parser is installed, as in a server; `ice_tcp_malformed` with aioice's own.)"""
    connection, port = sfu_side
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(request(connection)))
    await read_frame(reader)
    attr = struct.pack("!HH", 0x0024, 2) + b"\x00\x01\x00\x00"
    bad = struct.pack("!HHI", 0x0001, len(attr), 0x2112A442) + bytes(12) + attr
    before = dropped("ice_tcp_malformed") + dropped("stun_malformed")
    writer.write(frame(bad) + frame(request(connection)))
    answer = stun.parse_message(await read_frame(reader))  # the next request is still answered
    assert answer.message_class == stun.Class.RESPONSE
    assert dropped("ice_tcp_malformed") + dropped("stun_malformed") == before + 1
    writer.close()


async def test_streams_per_transport_are_limited(sfu_side, monkeypatch):
    connection, port = sfu_side
    monkeypatch.setattr(ice_tcp, "MAX_STREAMS_PER_CONNECTION", 2)
    before = dropped("ice_tcp_limit")
    open_ = []
    for _ in range(2):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(frame(request(connection)))
        await read_frame(r)
        open_.append(w)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(frame(request(connection)))
    assert await closed_by_server(r)
    assert dropped("ice_tcp_limit") == before + 1
    for x in [*open_, w]:
        x.close()


async def test_a_peer_that_does_not_read_loses_media_not_memory(sfu_side, monkeypatch):
    connection, port = sfu_side
    monkeypatch.setattr(ice_tcp, "MAX_WRITE_BUFFER", 64 * 1024)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
    writer.transport.pause_reading()  # the peer's application stops reading
    writer.write(frame(request(connection)))
    await writer.drain()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if connection._basement_tcp_streams:
            break
    [stream] = connection._basement_tcp_streams
    before = dropped("tcp_send_buffer_full")
    for _ in range(10_000):  # 12 MB offered
        stream.sendto(b"\x80" + bytes(1199), None)
    assert dropped("tcp_send_buffer_full") > before
    assert stream.transport.get_write_buffer_size() <= ice_tcp.MAX_WRITE_BUFFER + 1202
    writer.close()


async def test_closing_the_connection_ends_its_streams_and_its_name(sfu_side):
    connection, port = sfu_side
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(request(connection)))
    await read_frame(reader)
    ice_tcp.forget(connection)
    assert await closed_by_server(reader)
    before = dropped("ice_tcp_refused")
    r2, w2 = await asyncio.open_connection("127.0.0.1", port)
    w2.write(frame(request(connection)))  # its ufrag and password are nobody's now
    assert await closed_by_server(r2)
    assert dropped("ice_tcp_refused") == before + 1
    writer.close()
    w2.close()


class Active(asyncio.Protocol):
    """The peer's active TCP candidate: a framed TCP client as the datagram transport of an aioice
    StunProtocol (what a browser does natively)."""

    def __init__(self, connection: Any, port: int) -> None:
        self.stun = aioice.ice.StunProtocol(connection)
        self.stun.local_candidate = Candidate(foundation="active", component=1, transport="tcp", priority=1,
                                              host="127.0.0.1", port=9, type="host", tcptype="active")
        self.buffer = b""
        self.transport: Any = None
        self.server = ("127.0.0.1", port)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.stun.connection_made(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 2 and len(self.buffer) >= 2 + struct.unpack("!H", self.buffer[:2])[0]:
            size = struct.unpack("!H", self.buffer[:2])[0]
            data, self.buffer = self.buffer[2:2 + size], self.buffer[2 + size:]
            self.stun.datagram_received(data, self.server)

    def connection_lost(self, exc: Any) -> None:
        self.stun.connection_lost(exc)

    def sendto(self, data: bytes, addr: Any) -> None:
        self.transport.write(frame(data))

    def close(self) -> None:
        self.transport.close()


async def test_two_aioice_agents_connect_over_the_stream_and_exchange_data(sfu_side):
    connection, port = sfu_side
    peer = aioice.Connection(ice_controlling=True)
    loop = asyncio.get_running_loop()
    _, active = await loop.create_connection(lambda: Active(peer, port), "127.0.0.1", port)
    peer._protocols.append(active.stun)
    peer._local_candidates_end = True
    peer.remote_username, peer.remote_password = connection.local_username, connection.local_password
    connection.remote_username, connection.remote_password = peer.local_username, peer.local_password
    [tcp] = [c for c in connection.local_candidates if c.transport == "tcp"]
    await peer.add_remote_candidate(tcp)
    await peer.add_remote_candidate(None)
    # (the SFU's side learns the peer's address from its checks: the browser's active candidates, port
    # 9, pair with nothing; it trickles them, so more may come, and the check list waits)
    connection._local_candidates_end = True
    try:
        await asyncio.wait_for(asyncio.gather(connection.connect(), peer.connect()), 10)
        pair = connection._nominated[1]
        assert isinstance(pair.protocol.transport, ice_tcp.IceTcpStream)
        await peer.send(b"\x80 media from the browser")
        assert await asyncio.wait_for(connection.recv(), 5) == b"\x80 media from the browser"
        await connection.send(b"\x16 dtls from the sfu")
        assert await asyncio.wait_for(peer.recv(), 5) == b"\x16 dtls from the sfu"
        # the stream is the path: when it goes, the connection's receiver hears of it
        active.close()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(connection.recv(), 5)
    finally:
        await peer.close()


async def test_random_streams_never_raise_and_never_hold_more_than_a_frame(sfu_side):
    """Seeded garbage, before and after a stream proved itself: every byte sequence ends in frames
    handled or a counted close, nothing escapes into the event loop, and what a stream buffers stays
    below one frame (2 + 65,535 bytes)."""
    import random

    connection, port = sfu_side
    loop = asyncio.get_running_loop()
    errors: list[Any] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    rng = random.Random(18)
    try:
        for case in range(60):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if case % 2:  # half of them first prove themselves, then go wild
                writer.write(frame(request(connection)))
                await read_frame(reader)
            for _ in range(rng.randrange(1, 8)):
                kind = rng.random()
                if kind < 0.4:  # a frame with random content (STUN-, DTLS-, RTP-looking or nothing)
                    first = rng.choice([0, 1, 3, 4, 20, 63, 64, 128, 191, 192, 255])
                    body = bytes([first]) + rng.randbytes(rng.randrange(0, 300))
                    data = frame(body)
                elif kind < 0.7:  # a length that promises more than comes
                    data = struct.pack("!H", rng.randrange(1, 65536)) + rng.randbytes(rng.randrange(0, 200))
                else:  # anything
                    data = rng.randbytes(rng.randrange(1, 3000))
                if writer.is_closing():
                    break
                writer.write(data)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
            await asyncio.sleep(0)
            for stream in ice_tcp._listeners[("127.0.0.1", port)].streams:
                assert len(stream.buffer) < 2 + 65536
            writer.close()
        for _ in range(50):  # let the server side see every close
            await asyncio.sleep(0.01)
            if not ice_tcp._listeners[("127.0.0.1", port)].streams:
                break
        assert not ice_tcp._listeners[("127.0.0.1", port)].streams
        assert not ice_tcp._listeners[("127.0.0.1", port)].unproven
        assert errors == []
    finally:
        loop.set_exception_handler(None)
