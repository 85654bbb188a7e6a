"""Transport-wide feedback to publishers (sfu.transport_arrivals and its C twin in
sfu/native/transport_arrivals.c, fed by the native IngressCore): every number a publisher sends is
reported once, with its arrival time, in feedback a parser reads back to the same arrivals; both
twins hold and report the same; what is held is bounded; and a publisher that negotiated it gets
this feedback and no REMB, one that did not gets REMB as before."""

from __future__ import annotations

import random

import pytest

from sfu import _native, datapath, twcc
from sfu import transport_arrivals as ta
from sfu.transport_arrivals import MAX_GAP, MAX_PER_FEEDBACK, RING, TransportArrivals, feedback
from tests.support import packets as P
from tests.unit.sfu import rig

TWINS = [TransportArrivals, _native.TransportArrivals]
MEDIA = 0x11111111


@pytest.mark.parametrize("cls", TWINS)
def test_each_number_is_reported_once_with_its_arrival(cls):
    arrivals = cls()
    assert arrivals.take() is None
    for seq, at in ((65534, 1.0), (65535, 1.001), (1, 1.003), (0, 1.004)):  # a wrap, a reordering
        arrivals.add(seq, at)
    assert arrivals.take() == (65534, [1_000_000, 1_001_000, 1_004_000, 1_003_000])
    assert arrivals.take() is None
    arrivals.add(65535, 1.01)  # reported already: late
    arrivals.add(3, 1.02)
    assert (arrivals.late, arrivals.take()) == (1, (65538, [None, 1_020_000]))  # 2 did not arrive
    with pytest.raises(ValueError):
        arrivals.add(70000, 1.0)
    with pytest.raises(ValueError):
        arrivals.add(5, float("nan"))


@pytest.mark.parametrize("cls", TWINS)
def test_what_is_held_is_bounded(cls):
    arrivals = cls()
    for n in range(RING + 100):  # more than the ring holds before a report
        arrivals.add(n & 0xFFFF, n / 1000)
    first, times = arrivals.take(RING + 1000)
    assert (first, len(times), times[0]) == (100, RING, 100_000)  # the oldest 100 are no longer held
    arrivals.add((RING + 100 + MAX_GAP + 5) & 0xFFFF, 20.0)  # far ahead: a restart, not 1,000 losses
    assert arrivals.take() == (RING + 100 + MAX_GAP + 5, [20_000_000])
    assert arrivals.take(5) is None and arrivals.take(0) is None


def test_the_twins_hold_and_report_the_same():
    rng = random.Random(7)
    for trial in range(30):
        py, c = TransportArrivals(), _native.TransportArrivals()
        seq, at = rng.randrange(0x10000), rng.uniform(0, 1e4)
        for _ in range(3000):
            r = rng.random()
            if r < 0.05:
                limit = rng.choice([1, 7, MAX_PER_FEEDBACK, 5000])
                assert py.take(limit) == c.take(limit), trial
                continue
            seq = (seq + (rng.choice([-3, -1, 0, 2, 40, 1500, 30000]) if r < 0.12 else 1)) & 0xFFFF
            at += rng.expovariate(500)
            py.add(seq, at)
            c.add(seq, at)
            assert (py.base, py.high, py.late) == (c.base, c.high, c.late), trial
        assert py.take(100_000) == c.take(100_000)


@pytest.mark.parametrize("cls", TWINS)
def test_the_feedback_reads_back_as_the_arrivals(cls):
    rng = random.Random(3)
    arrivals = cls()
    sent: dict[int, int] = {}
    at = 500.0
    for n in range(1000):  # ~10 % lost, arrivals 0.1-30 ms apart (one- and two-byte deltas)
        at += rng.choice([0.0001, 0.002, 0.03])
        if rng.random() > 0.1:
            arrivals.add((60000 + n) & 0xFFFF, at)
            sent[n] = int(at * 1e6)
    packets, count = feedback(arrivals, 0xFEED, MEDIA, 250)
    assert len(packets) == 3 and count == (250 + 3) & 0xFF  # 400 per packet, the count wraps
    assert all(len(p) <= 1000 for p in packets)
    got: dict[int, int] = {}
    for k, packet in enumerate(packets):
        fb = twcc.parse(packet)
        assert (fb.sender_ssrc, fb.media_ssrc, fb.feedback_count) == (0xFEED, MEDIA, (250 + k) & 0xFF)
        got.update({(seq - 60000) & 0xFFFF: arrival for seq, arrival in fb.received})
    assert set(got) == set(sent)
    # each arrival as reported, to the 250 µs a delta resolves (rounding does not accumulate)
    assert max(abs(got[n] - sent[n]) for n in sent) <= 125
    assert feedback(arrivals, 0xFEED, MEDIA, 0) == ([], 0)  # all reported


# --- the Ingress ---------------------------------------------------------------------------------------


def _packets(ingress, numbers: list[int], at: float, ext_id: int = rig.TCC_ID) -> None:
    for k, number in enumerate(numbers):
        ext = P.one_byte_ext([(ext_id, number.to_bytes(2, "big"))])
        ingress.on_rtp(P.rtp(96, 100 + k, 3000, MEDIA, P.vp8_payload(keyframe=k == 0), ext=ext), at + k * 0.001)


def test_a_publisher_that_negotiated_it_gets_transport_feedback_and_no_remb():
    ingress, _, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")], ext=rig.TCC_EXT)
    assert type(ingress.arrivals) is (_native.TransportArrivals if datapath.current() == "native"
                                      else TransportArrivals)
    _packets(ingress, [10, 11, 13, 14], 100.0)  # 12 lost
    assert ingress.send_transport_feedback() == 1
    fb = twcc.parse(pub.rtcp[-1])
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq) == (rig.RTCP_SSRC, MEDIA, 10)
    assert (fb.count, [seq for seq, _ in fb.received]) == (5, [10, 11, 13, 14])  # 12: not received
    assert ingress.send_transport_feedback() == 0  # nothing new
    ingress.rtcp_round()
    assert b"REMB" not in pub.rtcp[-1]  # the receiver report alone
    if datapath.current() == "native":
        assert ingress.fast_packets >= 3  # (the key frame took the Python method; the rest were C)


def test_a_publisher_without_it_gets_remb_and_no_transport_feedback():
    ingress, _, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    assert ingress.arrivals is None
    _packets(ingress, [10, 11], 100.0)
    assert ingress.send_transport_feedback() == 0
    ingress.rtcp_round()
    assert b"REMB" in pub.rtcp[-1]


def test_padding_and_unknown_ssrcs_are_numbers_that_arrived_too():
    # the publisher's estimator counts every packet it numbered, its probes (padding) included
    ingress, _, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")], ext=rig.TCC_EXT)
    _packets(ingress, [1], 100.0)
    ext = P.one_byte_ext([(rig.TCC_ID, (2).to_bytes(2, "big"))])
    ingress.on_rtp(P.rtp(96, 101, 3000, MEDIA, b"", ext=ext, padding=200), 100.002)  # a padding probe
    ext = P.one_byte_ext([(rig.TCC_ID, (3).to_bytes(2, "big"))])
    ingress.on_rtp(P.rtp(96, 1, 3000, 0x999, b"\x10x", ext=ext), 100.003)  # an SSRC nobody announced
    ingress.send_transport_feedback()
    fb = twcc.parse(pub.rtcp[-1])
    assert (fb.count, [seq for seq, _ in fb.received]) == (3, [1, 2, 3])


def test_the_feedback_interval_is_libwebrtc_s():
    assert ta.FEEDBACK_INTERVAL_S == 0.1


def test_a_publisher_that_negotiated_it_but_numbers_nothing_still_gets_remb():
    # aiortc's offer can carry the extension (the lists it builds offers from are the SFU's) while its
    # sender never writes a number: without REMB it would get no feedback at all
    ingress, _, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")], ext=rig.TCC_EXT)
    for k in range(3):
        ingress.on_rtp(P.rtp(96, 100 + k, 3000, MEDIA, P.vp8_payload(keyframe=k == 0)), 100.0 + k * 0.001)
    assert not ingress.numbering() and ingress.send_transport_feedback() == 0
    ingress.rtcp_round()
    assert b"REMB" in pub.rtcp[-1]
    _packets(ingress, [7], 100.01)  # the first number: from now on it estimates itself
    assert ingress.numbering()
    ingress.rtcp_round()
    assert b"REMB" not in pub.rtcp[-1]
