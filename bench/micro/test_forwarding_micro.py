"""Micro-benchmarks of the per-packet forwarding path (`make bench`).

Timings are per *batch* of BATCH packets (pytest-benchmark reports per call); divide by BATCH for
µs per packet. Packets are 1200-byte VP8 with MID + abs-send-time extensions, like the load test's.
"""

from __future__ import annotations

import socket

import pytest
from aiortc import rtp as artp

from bench.micro.conftest import PACKET_SIZE, FakeTransport, srtp_pair, vp8_packet
from sfu import datapath, rtp

BATCH = 500
ROUNDS = 20  # ROUNDS * BATCH stays below half the 16-bit sequence space: no packet is ever "old"


def _run_batches(benchmark, fn, make_batch) -> None:
    benchmark.pedantic(fn, setup=lambda: ((make_batch(),), {}), rounds=ROUNDS, iterations=1)


def test_parse_and_vp8_descriptor(benchmark):
    """Ingress view of a packet: header/extension validation plus the VP8 payload descriptor."""
    packets = [vp8_packet(i, i * 3000, i & 0x7FFF, True, False) for i in range(BATCH)]

    def run(batch):
        for p in batch:
            v = rtp.parse(p)
            rtp.vp8_descriptor(memoryview(p)[v.payload_start : v.payload_end])

    _run_batches(benchmark, run, lambda: packets)


def test_header_rewrite_downtrack_forward(benchmark, rig_factory):
    """DownTrack.forward alone: seq/ts/SSRC/PT, extension ids, MID, abs-send-time; cache; no crypto."""
    rig = rig_factory(1)
    dt = rig.rec.downtracks[0]
    layer = rig.layer

    def run(batch):
        for p in batch:
            v = rtp.parse(p)
            desc = rtp.vp8_descriptor(memoryview(p)[v.payload_start : v.payload_end])
            dt.forward(p, v, layer, False, desc, 1.0)

    _run_batches(benchmark, run, lambda: rig.batch(BATCH))
    assert rig.transports[0].sent >= ROUNDS * BATCH


def test_srtp_protect(benchmark):
    """pylibsrtp protect, AES_CM_128_HMAC_SHA1_80, one 1200-byte packet per call."""
    tx, _ = srtp_pair()
    packet = vp8_packet(1, 1, 1, True, False, PACKET_SIZE)
    benchmark(tx.protect, packet)


_DEFAULT_AES = datapath._native.aes()
AES = [name for name in ("aes-ni-256", "aes-ni", "openssl") if datapath._native.set_aes(name) == name]
datapath._native.set_aes(_DEFAULT_AES)


@pytest.mark.parametrize("aes", AES)
@pytest.mark.parametrize("profile", [7, 1], ids=["gcm128", "cm80"])
def test_native_srtp_protect(benchmark, aes, profile):
    """sfu._native SRTP protect of one 1200-byte packet per call (AEAD_AES_128_GCM or
    AES_CM_128_HMAC_SHA1_80), AES on aes_gcm.c (AES-NI / PCLMULQDQ, and the 256-bit VAES /
    VPCLMULQDQ path) or on OpenSSL's EVP: what each subscriber copy pays for its crypto, plus one
    Python call."""
    _native = datapath._native
    default = _native.aes()
    _native.set_aes(aes)
    try:
        tx = _native.SrtpSession(profile, bytes(range(28 if profile == 7 else 30)), False)
    finally:
        _native.set_aes(default)
    packet = vp8_packet(1, 1, 1, True, False, PACKET_SIZE)
    benchmark.extra_info["aes"] = aes
    assert len(benchmark(tx.protect, packet)) == len(packet) + (16 if profile == 7 else 10)


@pytest.mark.parametrize("fanout", [1, 10, 50])
def test_fanout_through_ingress(benchmark, rig_factory, fanout):
    """Ingress.on_rtp → K DownTracks (each SRTP-protects): the SFU's whole per-packet path minus UDP."""
    rig = rig_factory(fanout, protect=True)
    benchmark.extra_info["fanout"] = fanout
    benchmark.extra_info["batch"] = BATCH // 10

    def run(batch):
        on_rtp = rig.ingress.on_rtp
        for p in batch:
            on_rtp(p, 1.0)

    benchmark.pedantic(run, setup=lambda: ((rig.batch(BATCH // 10),), {}), rounds=ROUNDS, iterations=1)
    assert all(t.sent >= ROUNDS * BATCH // 10 for t in rig.transports)


@pytest.mark.parametrize("fanout", [0, 1, 50])
@pytest.mark.parametrize("path", ["python", "native"])
def test_forward_per_copy_with_srtp_and_udp(benchmark, rig_factory, path, fanout):
    """The whole per-packet path on each data path: Ingress.on_rtp → K DownTracks → SRTP
    (AES_CM_128_HMAC_SHA1_80) → one UDP datagram each to a socket on 127.0.0.1. µs per copy =
    (time per batch / batch − the fanout-0 figure, which is the ingress cost) / fanout; `basement
    bench` measures the same inside a real server."""
    _per_copy(benchmark, rig_factory(fanout, path=path, udp=True), path, fanout)


def _per_copy(benchmark, rig, path: str, fanout: int) -> int:
    """Time `rig`'s Ingress.on_rtp over batches of packets; the batch size (packets per round)."""
    batch = max(1, BATCH // max(1, fanout))
    benchmark.extra_info.update(fanout=fanout, batch=batch, path=path)

    def run(packets):
        on_rtp = rig.ingress.on_rtp
        for p in packets:
            on_rtp(p, 1.0)

    benchmark.pedantic(run, setup=lambda: ((rig.batch(batch),), {}), rounds=ROUNDS, iterations=1)
    sent = sum(dt.packets for dt in rig.rec.downtracks)
    assert sent >= ROUNDS * batch * fanout  # every copy reached the kernel
    return batch


@pytest.mark.parametrize("path", ["python", "native"])
def test_forward_per_copy_with_transport_cc(benchmark, rig_factory, path):
    """The fan-out-50 case of the test above with every copy stamped with a transport-wide sequence
    number and remembered for feedback (what a browser subscriber's transport does): the stamping's
    cost per copy is the difference between the two."""
    rig = rig_factory(50, path=path, udp=True, transport_cc=True)
    batch = _per_copy(benchmark, rig, path, 50)
    stamped = [t.egress.transport_seq_next if t.egress is not None else t.sequence.next for t in rig.transports]
    assert min(stamped) >= ROUNDS * batch  # every copy numbered


@pytest.mark.parametrize("uplink", ["remb", "transport-cc"])
@pytest.mark.parametrize("path", ["python", "native"])
def test_ingress_per_packet(benchmark, rig_factory, path, uplink):
    """What the Ingress costs per published packet with no subscriber, for a publisher whose uplink
    is estimated by the SFU (abs-send-time into the REMB estimator) or by the publisher itself from
    transport-wide feedback (each number's arrival noted: sfu.transport_arrivals)."""
    rig = rig_factory(0, path=path, uplink_cc=uplink == "transport-cc")
    benchmark.extra_info["uplink"] = uplink
    _per_copy(benchmark, rig, path, 0)
    if uplink == "transport-cc":
        assert rig.ingress.arrivals.high >= rig.seq - 1  # every number noted


@pytest.mark.parametrize("gso", [True, False], ids=["gso", "plain"])
def test_forward_per_copy_of_a_received_frame(benchmark, rig_factory, gso):
    """The native path as the server runs it: a video frame of FRAME SRTP packets arrives in one
    recvmmsg batch of a MediaSocket, and each of FANOUT subscribers gets its FRAME copies in one
    flush: one segmented send per subscriber (udp_gso on) or FRAME datagrams in one sendmmsg (off).
    µs per copy = time per call / (FRAME × FANOUT), unprotect and ingress included."""
    frame, fanout = 6, 50
    _native = datapath._native
    rig = rig_factory(fanout, path="native", udp=True, udp_gso=gso)
    benchmark.extra_info.update(fanout=fanout, frame=frame, gso=gso)
    key = bytes(range(28))
    tx, rx = _native.SrtpSession(7, key, False), _native.SrtpSession(7, key, True)
    own = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    own.bind(("127.0.0.1", 0))
    own.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    on_rtp = rig.ingress.on_rtp
    reader = _native.MediaSocket(own.fileno(), lambda data, addr: None)
    reader.attach(rx, lambda plain: on_rtp(plain, 1.0), lambda plain: None, print)

    def setup():
        for p in rig.batch(frame):
            sender.sendto(tx.protect(p), own.getsockname())
        return (), {}

    try:
        benchmark.pedantic(lambda: reader.drain(), setup=setup, rounds=ROUNDS, iterations=1)
        assert all(dt.packets >= ROUNDS * frame for dt in rig.rec.downtracks)  # every copy, every round
        segmented = sum(t.egress.gso_sends for t in rig.transports)
        assert segmented == (ROUNDS * fanout if gso else 0)
    finally:
        reader.close()
        own.close()
        sender.close()


def test_nack_cache_lookup(benchmark, rig_factory):
    """A subscriber NACKs the 8 packets just forwarded: cache lookup + resend (no RTX negotiated).

    Each round first forwards 8 fresh packets (not timed), so the per-packet RTT interval never
    suppresses a resend; a budget of 2x what was forwarded leaves room for every one of them."""
    rig = rig_factory(1)
    dt = rig.rec.downtracks[0]
    dt.rtx_budget = 2.0
    for p in rig.batch(200):
        rig.ingress.on_rtp(p, 1.0)
    before = dt.retransmissions

    def fresh_loss():
        for p in rig.batch(8):
            rig.ingress.on_rtp(p, 1.0)
        return ([(dt.last_seq - k) & 0xFFFF for k in range(8)],), {}

    benchmark.pedantic(lambda lost: dt.on_nack(lost, 1.0), setup=fresh_loss, rounds=ROUNDS, iterations=1)
    assert dt.retransmissions - before == 8 * ROUNDS


def test_rtcp_build_rr(benchmark):
    def build():
        block = artp.RtcpReceiverInfo(ssrc=1, fraction_lost=3, packets_lost=10, highest_sequence=70000, jitter=5,
                                      lsr=123, dlsr=456)
        return bytes(artp.RtcpRrPacket(ssrc=9, reports=[block]))

    assert len(benchmark(build)) == 32


def test_rtcp_build_remb(benchmark):
    def build():
        return bytes(artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_APP, ssrc=9, media_ssrc=0,
                                          fci=artp.pack_remb_fci(2_500_000, [0x1111, 0x2222, 0x3333])))

    assert benchmark(build)


def test_rtcp_build_sr_translation(benchmark, rig_factory):
    """DownTrack.on_publisher_sr: translate a publisher SR and build SR + SDES for the subscriber."""
    rig = rig_factory(1)
    dt = rig.rec.downtracks[0]
    dt.slot.cname = "bench-cname"
    rig.ingress.on_rtp(rig.batch(1)[0], 1.0)
    benchmark(dt.on_publisher_sr, rig.layer, 0x1234567890ABCDEF, 123456)


def test_fake_transport_is_cheap(benchmark):
    """Reference: the fake transport's own cost, to subtract from the fan-out figures."""
    t = FakeTransport(protect=False)
    benchmark(t.send_rtp, b"x" * PACKET_SIZE)
