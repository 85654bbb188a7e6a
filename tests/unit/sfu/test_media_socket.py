"""sfu.media_socket: the native data path's own UDP sockets. `_native.MediaSocket` (C, recvmmsg) and its
twin `PyMediaSocket` get the same datagrams over real loopback sockets and must deliver the same
things in the same order; `MediaSocketTransport` must be a transport aioice can run ICE over."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import aioice
import aioice.ice
import pytest
from sfu._native import Egress, MediaSocket, SrtpError, SrtpSession

from sfu import _native, media_socket, transport
from sfu.media_socket import BATCH, ROUNDS, MediaSocketTransport, PyMediaSocket
from sfu.metrics import STATS, MediaCollector
from tests.unit.sfu.native.test_srtp import GCM128, key_for, rtp, sr

READERS = {"native": MediaSocket, "python": PyMediaSocket}
SO_NO_CHECK = 11  # asm-generic/socket.h: send UDP without a checksum (Python's socket module lacks it)


@pytest.fixture(autouse=True)
def data_path() -> Iterator[None]:
    """The reader type is the parameter here, not the process-wide data path."""
    yield


@pytest.fixture(params=sorted(READERS))
def reader_type(request: pytest.FixtureRequest) -> Any:
    return READERS[request.param]


class Rig:
    def __init__(self, reader_type: Any, family: int = socket.AF_INET) -> None:
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.rx = socket.socket(family, socket.SOCK_DGRAM)
        self.rx.bind((host, 0))
        self.rx.setblocking(False)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.tx = socket.socket(family, socket.SOCK_DGRAM)
        self.tx.bind((host, 0))
        self.events: list[tuple] = []
        self.reader = reader_type(self.rx.fileno(), lambda data, addr: self.events.append(("other", data, addr)))
        self.key = key_for(GCM128)
        self.sender = SrtpSession(GCM128, self.key, False)

    def attach(self) -> None:
        self.reader.attach(SrtpSession(GCM128, self.key, True), lambda d: self.events.append(("rtp", d)),
                           lambda d: self.events.append(("rtcp", d)), lambda r: self.events.append(("drop", r)))

    def send(self, *datagrams: bytes) -> None:
        for d in datagrams:
            self.tx.sendto(d, self.rx.getsockname())

    @property
    def source(self) -> tuple[str, int]:
        return self.tx.getsockname()[:2]

    def close(self) -> None:
        self.reader.close()
        self.rx.close()
        self.tx.close()


@pytest.fixture
def rig(reader_type: Any) -> Iterator[Rig]:
    r = Rig(reader_type)
    yield r
    r.close()


STUN = bytes([0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42]) + bytes(12)  # a binding request header
DTLS = bytes([22, 0xFE, 0xFD]) + bytes(30)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_before_attach_everything_goes_to_on_other_with_its_source(reader_type: Any, family: int) -> None:
    r = Rig(reader_type, family)
    try:
        media = r.sender.protect(rtp(1, 0x1234, b"x" * 50))
        r.send(STUN, DTLS, media)
        assert r.reader.drain() == 3
        assert r.events == [("other", STUN, r.source), ("other", DTLS, r.source), ("other", media, r.source)]
        assert (r.reader.received, r.reader.other, r.reader.unprotected) == (3, 3, 0)
        assert not r.reader.attached
    finally:
        r.close()


def test_attached_media_is_unprotected_in_order_and_the_rest_still_goes_up(rig: Rig) -> None:
    rig.attach()
    packets = [rtp(seq, 0x1234, bytes([seq]) * 100) for seq in range(10, 15)]
    report = sr(0x1234)
    rig.send(rig.sender.protect(packets[0]), STUN, *(rig.sender.protect(p) for p in packets[1:]),
             rig.sender.protect_rtcp(report), DTLS)
    assert rig.reader.drain() == 8
    assert rig.events == ([("rtp", packets[0]), ("other", STUN, rig.source)] + [("rtp", p) for p in packets[1:]]
                          + [("rtcp", report), ("other", DTLS, rig.source)])
    assert (rig.reader.unprotected, rig.reader.other, rig.reader.refused) == (6, 2, 0)
    assert rig.reader.attached


def test_forged_replayed_and_short_packets_are_counted_drops(rig: Rig) -> None:
    rig.attach()
    good = rig.sender.protect(rtp(1, 0x99, b"a" * 40))
    forged = bytearray(good)
    forged[-1] ^= 1
    rig.send(bytes(forged), good, good, bytes([0x80, 0x60, 0, 1]), bytes([0x80]))
    assert rig.reader.drain() == 5
    assert rig.events == [("drop", "srtp_refused"), ("rtp", rtp(1, 0x99, b"a" * 40))] + [("drop", "srtp_refused")] * 3
    assert rig.reader.refused == 4


def test_an_empty_datagram_goes_up_not_to_the_session(rig: Rig) -> None:
    rig.attach()
    rig.send(b"")
    assert rig.reader.drain() == 1
    assert rig.events == [("other", b"", rig.source)]


def test_a_followed_stream_is_counted_from_its_clear_headers_and_only_its_probes_go_on(rig: Rig) -> None:
    # what the bench's light subscribers do: count everything an SFU sends without decrypting it,
    # and decrypt only the probes (P bit) whose payload they check
    rig.attach()
    assert rig.reader.follow(0x1234, 65533, 16) is True  # 16: the GCM tag SRTP appends

    def srtp(seq: int, probe: bool = False) -> bytes:
        return rig.sender.protect(rtp(seq, 0x1234, bytes(100), padding=8 if probe else 0))

    # (the probe comes before the wrap: the receive session sees only probes, so it infers the
    # rollover counter from them alone)
    packets = [srtp(65534, probe=True), srtp(65535), srtp(1), srtp(5), srtp(0), srtp(4)]
    repeat = packets[5]  # the same datagram again: late (never decrypted, so no replay drop either)
    far = rtp(200, 0x1234, bytes(40)) + bytes(16)  # looks like SRTP: only its header is read
    other = rig.sender.protect(rtp(9, 0x99, b"x" * 10))  # a stream nobody follows: unprotected, delivered
    rig.send(*packets, repeat, far, other)
    assert rig.reader.drain() == 9
    assert rig.events == [("rtp", rtp(65534, 0x1234, bytes(100), padding=8)), ("rtp", rtp(9, 0x99, b"x" * 10))]
    nbytes = sum(len(p) - 16 for p in [*packets, repeat, far])
    # max_ext: 65533 + 1 + 1 + 2 + 4 + 195; gaps: 65535 -> 1, 1 -> 5, 5 -> 200; late: 0, 4 and 4 again
    assert rig.reader.followed(0x1234) == (65533 + 203, 8, nbytes, 3, 3)
    # skipped by the gaps under 64 and not arrived since: 0 and 4 came late, 2 and 3 did not
    assert rig.reader.take_missing(0x1234) == [2, 3]
    assert rig.reader.take_missing(0x1234) == [] and rig.reader.take_missing(0x77) == []
    assert rig.reader.followed(0x99) is None
    assert (rig.reader.counted, rig.reader.unprotected, rig.reader.received) == (8, 2, 9)


def test_at_most_sixteen_streams_are_followed_and_a_follow_starts_over(rig: Rig) -> None:
    assert all(rig.reader.follow(ssrc, 0, 10) for ssrc in range(16))
    assert rig.reader.follow(99, 0, 10) is False
    rig.send(rtp(3, 5, b"a" * 20) + bytes(10))
    rig.reader.drain()
    assert rig.reader.followed(5) == (3, 1, 32, 1, 0) and rig.reader.take_missing(5) == [1, 2]
    assert rig.reader.follow(5, 7, 10) is True  # again: from max_ext 7, nothing counted
    assert rig.reader.followed(5) == (7, 0, 0, 0, 0) and rig.events == []
    with pytest.raises(ValueError):
        rig.reader.follow(6, -1, 10)
    with pytest.raises(ValueError):
        rig.reader.follow(6, 0, 17)


def test_detach_sends_media_up_again(rig: Rig) -> None:
    rig.attach()
    rig.reader.detach()
    media = rig.sender.protect(rtp(3, 0x5, b"z" * 20))
    rig.send(media)
    rig.reader.drain()
    assert rig.events == [("other", media, rig.source)]


def test_a_drain_reads_at_most_batch_times_rounds_and_loses_nothing(rig: Rig) -> None:
    total = BATCH * ROUNDS + 40
    rig.send(*(b"d" + i.to_bytes(2, "big") for i in range(total)))
    assert rig.reader.drain() == BATCH * ROUNDS  # a busy socket leaves the event loop its turn
    assert rig.reader.drain() == 40
    assert rig.reader.drain() == 0
    assert [e[1] for e in rig.events] == [b"d" + i.to_bytes(2, "big") for i in range(total)]


def test_a_large_datagram_arrives_whole(rig: Rig) -> None:
    big = bytes(range(256)) * 200  # 51,200 bytes
    rig.send(big)
    rig.reader.drain()
    assert rig.events == [("other", big, rig.source)]
    assert rig.reader.dropped == 0


def test_a_raising_callback_loses_no_datagram_and_its_error_surfaces(rig: Rig) -> None:
    seen: list[bytes] = []

    def on_other(data: bytes, addr: Any) -> None:
        seen.append(data)
        if data in (b"1", b"3"):
            raise RuntimeError(f"handler failed on {data!r}")

    rig.reader = type(rig.reader)(rig.rx.fileno(), on_other)
    rig.send(b"0", b"1", b"2", b"3", b"4")
    with pytest.raises(RuntimeError, match="handler failed on b'1'"):
        rig.reader.drain()
    assert seen == [b"0", b"1", b"2", b"3", b"4"]
    rig.send(b"5")
    assert rig.reader.drain() == 1


def test_closing_from_a_callback_stops_delivery(rig: Rig) -> None:
    def on_other(data: bytes, addr: Any) -> None:
        rig.events.append(data)
        if data == b"stop":
            rig.reader.close()

    rig.reader = type(rig.reader)(rig.rx.fileno(), on_other)
    rig.send(b"a", b"stop", b"b", b"c")
    rig.reader.drain()
    assert rig.events == [b"a", b"stop"]
    assert rig.reader.fd == -1 and rig.reader.drain() == 0


def test_a_drain_from_inside_a_callback_reads_nothing(rig: Rig) -> None:
    inner: list[int] = []

    def on_other(data: bytes, addr: Any) -> None:
        inner.append(rig.reader.drain())
        rig.events.append(data)

    rig.reader = type(rig.reader)(rig.rx.fileno(), on_other)
    rig.send(b"a", b"b")
    assert rig.reader.drain() == 2
    assert inner == [0, 0] and rig.events == [b"a", b"b"]


class Forwarder:
    """An Egress to a receiving socket of its own: what a subscriber transport's send side does."""

    def __init__(self, key: bytes) -> None:
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setblocking(False)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.bind(("127.0.0.1", 0))
        self.egress = Egress(self.tx.fileno(), self.rx.getsockname(), GCM128, key)
        self.receiver = SrtpSession(GCM128, key, True)
        self.received: list[bytes] = []

    def waiting(self) -> int:
        """Read what has arrived at the receiver by now (into `received`); how many datagrams."""
        n = 0
        while True:
            try:
                data = self.rx.recv(2048)
            except BlockingIOError:
                return n
            self.received.append(self.receiver.unprotect(data))
            n += 1

    def close(self) -> None:
        self.egress.close()
        self.rx.close()
        self.tx.close()


def test_the_sends_of_a_received_batch_leave_together_when_it_is_delivered() -> None:
    """What the packets of one recvmmsg batch send leaves in one sendmmsg per socket after the batch,
    even when a handler raises; a send outside a batch leaves at once."""
    rig = Rig(MediaSocket)
    out = Forwarder(key_for(GCM128, seed=2))
    queued_meanwhile: list[int] = []

    def on_rtp(plain: bytes) -> None:
        queued_meanwhile.append(out.waiting())
        out.egress.send_rtp(plain)
        if plain[-1] == 3:
            raise RuntimeError("a handler failed")

    try:
        rig.reader.attach(SrtpSession(GCM128, rig.key, True), on_rtp, lambda d: None, lambda r: None)
        packets = [rtp(seq, 0x1234, bytes([seq]) * 100) for seq in range(1, 6)]
        rig.send(*(rig.sender.protect(p) for p in packets))
        with pytest.raises(RuntimeError, match="a handler failed"):
            rig.reader.drain()
        assert queued_meanwhile == [0] * 5  # nothing left while the batch was being delivered
        assert out.waiting() == 5 and out.received == packets  # all of it, in order, right after
        assert (out.egress.sent, out.egress.flushes) == (5, 1)
        out.egress.send_rtp(rtp(6, 0x1234, b"alone"))  # not inside a batch: sent now
        assert out.waiting() == 1 and (out.egress.sent, out.egress.flushes) == (6, 2)
    finally:
        out.close()
        rig.close()


def _one_batch(rig: Rig, out: Forwarder, payloads: list[bytes], first: int = 1) -> list[bytes]:
    """Deliver `payloads` as RTP (from seq `first` on) in one received batch whose handler forwards
    each through `out`."""
    rig.reader.attach(SrtpSession(GCM128, rig.key, True), out.egress.send_rtp, lambda d: None, lambda r: None)
    packets = [rtp(seq, 0x1234, p) for seq, p in enumerate(payloads, first)]
    rig.send(*(rig.sender.protect(p) for p in packets))
    assert rig.reader.drain() == len(packets)
    return packets


@pytest.mark.parametrize("gso", [True, False])
def test_a_batchs_runs_of_equal_lengths_leave_as_segmented_sends_and_arrive_as_datagrams(gso: bool) -> None:
    """A video frame's packets (equal lengths, a shorter last) leave in one UDP_SEGMENT send, the
    audio packet between frames in its own; the receiver gets every datagram, in order, intact."""
    sends_before = _native.gso_state()[2]
    _native.set_gso(gso)
    rig = Rig(MediaSocket)
    out = Forwarder(key_for(GCM128, seed=3))
    try:
        frame = [bytes([i]) * 1100 for i in range(4)] + [b"\x09" * 300]
        packets = _one_batch(rig, out, [*frame, b"\x0a" * 80, *frame])
        assert out.waiting() == 11 and out.received == packets
        assert (out.egress.sent, out.egress.flushes, out.egress.failures) == (11, 1, 0)
        assert (out.egress.gso, out.egress.gso_sends) == ((1, 2) if gso else (0, 0))
        assert _native.gso_state()[2] - sends_before == out.egress.gso_sends
    finally:
        _native.set_gso(True)
        out.close()
        rig.close()


def test_a_kernel_that_refuses_segmented_sends_gets_plain_ones_and_nothing_is_lost() -> None:
    """The kernel refuses UDP_SEGMENT on a socket that sends without checksums (SO_NO_CHECK): the
    Egress sends that batch's datagrams one by one, asks no more, and the refusal is counted."""
    refused_before = _native.gso_state()[1]
    rig = Rig(MediaSocket)
    out = Forwarder(key_for(GCM128, seed=4))
    try:
        out.tx.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)  # the Egress sends on a dup of it
        packets = _one_batch(rig, out, [b"\x01" * 1000] * 3)
        assert out.waiting() == 3 and out.received == packets
        assert (out.egress.sent, out.egress.failures, out.egress.gso, out.egress.gso_sends) == (3, 0, 0, 0)
        assert _native.gso_state()[1] == refused_before + 1
        packets = _one_batch(rig, out, [b"\x02" * 1000] * 3, first=4)  # no second attempt
        assert out.waiting() == 3 and out.received[3:] == packets
        assert _native.gso_state()[1] == refused_before + 1
    finally:
        out.close()
        rig.close()


def test_arguments_are_checked(reader_type: Any) -> None:
    with pytest.raises(ValueError, match="fd"):
        reader_type(-1, print)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(TypeError, match="callable"):
            reader_type(sock.fileno(), None)
        r = reader_type(sock.fileno(), print)
        with pytest.raises(TypeError, match="SrtpSession"):
            r.attach(object(), print, print, print)
        with pytest.raises(TypeError, match="callable"):
            r.attach(SrtpSession(GCM128, key_for(GCM128), True), print, None, print)
        assert not r.attached
        r.close()


# ---- the transport, under aioice ----------------------------------------------------------------


@pytest.fixture
def own_sockets(reader_type: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """aioice's host candidates bound through sfu.transport's loop, on sockets of ours."""
    monkeypatch.setattr(transport, "_socket_type", reader_type)
    monkeypatch.setattr(aioice.ice, "asyncio", transport._AsyncioWithPortRange("asyncio"))
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    return reader_type


async def test_ice_dtls_and_srtp_over_our_socket(own_sockets: Any) -> None:
    ours = aioice.Connection(ice_controlling=True)
    await ours.gather_candidates()
    # the peer on the event loop's own transport
    aioice.ice.asyncio = asyncio
    peer = aioice.Connection(ice_controlling=False)
    await peer.gather_candidates()
    try:
        [protocol] = ours._protocols
        assert isinstance(protocol.transport, MediaSocketTransport)
        assert isinstance(protocol.transport.reader, own_sockets)
        for a, b in ((ours, peer), (peer, ours)):
            for c in b.local_candidates:
                await a.add_remote_candidate(c)
            await a.add_remote_candidate(None)
            a.remote_username, a.remote_password = b.local_username, b.local_password
        await asyncio.wait_for(asyncio.gather(ours.connect(), peer.connect()), 10)

        await peer.send(DTLS)  # not media: aioice's path, as from the event loop
        assert await asyncio.wait_for(ours.recv(), 5) == DTLS
        await ours.send(DTLS[::-1])
        assert await asyncio.wait_for(peer.recv(), 5) == DTLS[::-1]

        key = key_for(GCM128)
        got: list[bytes] = []
        protocol.transport.reader.attach(SrtpSession(GCM128, key, True), got.append, got.append, print)
        packet = rtp(7, 0xABC, b"m" * 300)
        await peer.send(SrtpSession(GCM128, key, False).protect(packet))
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == [packet]
        assert protocol.transport.reader.other >= 2  # the checks and the DTLS record went up
    finally:
        await asyncio.wait_for(ours.close(), 5)  # the transport reports connection_lost
        await peer.close()
    assert protocol.transport.is_closing() and protocol.transport.reader.fd == -1


async def test_a_port_range_binds_our_socket_inside_it(own_sockets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ice = transport._ice()
    monkeypatch.setattr(transport, "_default_ice", __import__("dataclasses").replace(ice, port_range=(port, port)))
    loop = transport._LoopWithPortRange(asyncio.get_running_loop())
    tr, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    try:
        assert isinstance(tr, MediaSocketTransport) and tr.get_extra_info("sockname")[1] == port
        with pytest.raises(OSError, match=f"no free UDP port in {port}-{port}"):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    finally:
        tr.close()


async def test_send_errors_reach_the_protocol_not_the_caller(own_sockets: Any) -> None:
    errors: list[Exception] = []

    class Protocol(asyncio.DatagramProtocol):
        def error_received(self, exc: Exception) -> None:
            errors.append(exc)

    tr, _ = media_socket.open_endpoint(asyncio.get_running_loop(), Protocol, "127.0.0.1", 0, own_sockets)
    try:
        tr.sendto(b"x", ("::1", 9))  # an IPv6 address from an IPv4 socket
        assert len(errors) == 1 and isinstance(errors[0], OSError)
    finally:
        tr.close()
    tr.sendto(b"x", ("127.0.0.1", 9))  # after close: nothing, no exception


async def test_ipv4_datagrams_leave_with_dont_fragment_whatever_the_learnt_path_mtu(own_sockets: Any) -> None:
    loop = asyncio.get_running_loop()
    tr, _ = media_socket.open_endpoint(loop, asyncio.DatagramProtocol, "127.0.0.1", 0, own_sockets)
    try:  # PROBE: DF set, so the kernel draws no IP ID per datagram; the learnt path MTU not applied
        sock = tr.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_IP, media_socket.IP_MTU_DISCOVER) == media_socket.IP_PMTUDISC_PROBE
    finally:
        tr.close()
    tr, _ = media_socket.open_endpoint(loop, asyncio.DatagramProtocol, "::1", 0, own_sockets)
    tr.close()  # IPv6 (no IPv4 option on it): opens all the same


async def test_socket_counters_are_exported_and_survive_close(own_sockets: Any) -> None:
    before = STATS.socket_counts()
    tr, _ = media_socket.open_endpoint(asyncio.get_running_loop(), asyncio.DatagramProtocol, "127.0.0.1", 0,
                                       own_sockets)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for i in range(5):
            tx.sendto(bytes([i]), tr.get_extra_info("sockname"))
    tr.reader.drain()
    counted = STATS.socket_counts()
    assert (counted[0] - before[0], counted[1] - before[1]) == (5, 1)
    tr.close()
    assert STATS.socket_counts() == counted and tr not in STATS.sockets  # folded into the totals once
    tr.close()
    assert STATS.socket_counts() == counted
    names = {m.name for m in MediaCollector(STATS).collect()}
    assert {"basement_datagrams_received", "basement_socket_reads", "basement_socket_read_errors"} <= names


def test_srtp_error_is_what_the_reader_refuses() -> None:
    assert issubclass(SrtpError, ValueError)  # PyMediaSocket catches ValueError, as C refuses SrtpError


def test_a_retargeted_egress_keeps_its_srtp_state() -> None:
    """After an ICE restart the nominated pair may be another socket and address: the Egress moves
    there, and the receiver's one session takes every packet and report, before and after (a new
    Egress would start the SRTCP index over, and the receiver would refuse its reports as replays)."""
    key = key_for(GCM128, seed=3)
    out = Forwarder(key)
    rx2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx2.bind(("127.0.0.1", 0))
    rx2.setblocking(False)
    tx2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx2.bind(("127.0.0.1", 0))
    report = sr(0x1234, 0)

    def arrived(sock: socket.socket) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(sock.recv(2048))
            except BlockingIOError:
                return got

    try:
        for seq in range(1, 4):
            assert out.egress.send_rtp(rtp(seq, 0x1234, b"before"))
        assert out.egress.send_rtcp(report)
        first = arrived(out.rx)
        assert [out.receiver.unprotect(d)[2:4] for d in first[:3]] == [n.to_bytes(2, "big") for n in (1, 2, 3)]
        assert out.receiver.unprotect_rtcp(first[3]) == report
        out.egress.retarget(tx2.fileno(), rx2.getsockname())
        tx2.close()  # (the Egress holds a dup() of it)
        for seq in range(4, 7):
            assert out.egress.send_rtp(rtp(seq, 0x1234, b"after"))
        assert out.egress.send_rtcp(report)
        assert arrived(out.rx) == []  # nothing to the old address any more
        got = arrived(rx2)
        assert len(got) == 4
        # the same receiver session takes them: RTP continues, the SRTCP index follows on (no replay)
        assert [out.receiver.unprotect(d)[2:4] for d in got[:3]] == [n.to_bytes(2, "big") for n in (4, 5, 6)]
        assert out.receiver.unprotect_rtcp(got[3]) == report
        with pytest.raises(ValueError, match="address"):
            out.egress.retarget(rx2.fileno(), "nowhere")
    finally:
        out.close()
        rx2.close()
