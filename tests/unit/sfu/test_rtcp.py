"""RTCP as the SFU speaks it: the bytes of the RR / REMB / NACK / PLI an Ingress sends its publisher
for a given packet history, and SR / RR / NACK / PLI / FIR / REMB from a subscriber round-tripped
through aiortc's parser (the parse boundary `PeerTransport` uses) into our handling."""

from __future__ import annotations

import time

from aiortc import rtp as artp

from sfu import rtp
from sfu.peer import Peer
from sfu.transport import Remb
from tests.support import packets as P
from tests.unit.sfu import rig
from tests.unit.sfu.rig import OUT_SSRC, RTCP_SSRC

MEDIA, RTX = 0x11111111, 0x22222222
Q, H, F = 0x0000A001, 0x0000A002, 0x0000A003


def now_base() -> float:
    """A whole second close to the monotonic clock (the Ingress's RTCP round reads it), so that
    arrival k/16 s later times 90 kHz is exact and constant transit gives exactly zero jitter."""
    return float(int(time.monotonic()))


def delta(ssrc: int, seq: int, ts: int, ext: bytes = b"") -> bytes:
    return P.rtp(96, seq, ts, ssrc, P.vp8_payload(picture_id=seq, tl0picidx=0, tid=0), ext=ext)


def feed(ingress, ssrc: int, seqs, base: float, ext_first: bytes = b"") -> None:
    for i, seq in enumerate(seqs):
        # one frame every 1/16 s: ts advances 5625 at 90 kHz, so transit (and jitter) stay constant
        ingress.on_rtp(delta(ssrc, seq, 5625 * seq, ext_first if i == 0 else b""), base + seq / 16)


# --- builders agree with aiortc's serialisation ------------------------------------------------------


def test_hand_built_rtcp_matches_aiortc_both_ways():
    block = artp.RtcpReceiverInfo(ssrc=5, fraction_lost=51, packets_lost=-2, highest_sequence=70000, jitter=9,
                                  lsr=0x12345678, dlsr=655)
    rr = P.rtcp_rr(4, [P.report_block(5, 51, -2, 70000, 9, 0x12345678, 655)])
    assert rr == bytes(artp.RtcpRrPacket(ssrc=4, reports=[block]))
    assert rr[:4] == bytes.fromhex("81c90007") and rr[12:16] == bytes.fromhex("33fffffe")
    sr = P.rtcp_sr(4, 0x0102030405060708, 0xAABBCCDD, 10, 1000)
    assert sr == bytes(artp.RtcpSrPacket(ssrc=4, sender_info=artp.RtcpSenderInfo(
        ntp_timestamp=0x0102030405060708, rtp_timestamp=0xAABBCCDD, packet_count=10, octet_count=1000)))
    (parsed,) = artp.RtcpPacket.parse(sr)
    assert (parsed.ssrc, parsed.sender_info.ntp_timestamp, parsed.sender_info.rtp_timestamp) == \
        (4, 0x0102030405060708, 0xAABBCCDD)
    assert P.rtcp_pli(1, 2) == bytes(artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_PLI, ssrc=1, media_ssrc=2)) == \
        bytes.fromhex("81ce0002" "00000001" "00000002")
    sdes = P.rtcp_sdes_cname(7, b"abc")
    assert sdes == bytes(artp.RtcpSdesPacket(chunks=[artp.RtcpSourceInfo(ssrc=7, items=[(1, b"abc")])]))
    assert sdes == bytes.fromhex("81ca0003" "00000007" "0103616263" "000000")


def test_nack_fci_bitmasks():
    # RFC 4585 6.2.1: PID, then bit i of BLP = PID + i + 1
    assert P.nack_fci([102, 103, 104]) == [(102, 0b11)]
    assert P.nack_fci(range(1000, 1021)) == [(1000, 0xFFFF), (1017, 0b111)]
    assert P.nack_fci([5, 21, 22]) == [(5, 0x8000), (22, 0)]
    for lost in ([102, 103, 104], list(range(1000, 1021)), [5, 21, 22], [1, 40, 41, 60]):
        wire = P.rtcp_nack(1, 2, P.nack_fci(lost))
        assert wire == bytes(artp.RtcpRtpfbPacket(fmt=artp.RTCP_RTPFB_NACK, ssrc=1, media_ssrc=2, lost=lost))
        assert artp.RtcpPacket.parse(wire)[0].lost == lost


def test_remb_mantissa_and_exponent():
    assert P.remb_fci(4_000_000, [MEDIA]) == b"REMB" + bytes.fromhex("0113d090") + MEDIA.to_bytes(4, "big")
    assert P.remb_fci(4_000_000, [1, 2]) == artp.pack_remb_fci(4_000_000, [1, 2])
    assert artp.unpack_remb_fci(P.remb_fci(1_234_567, [9])) == (1_234_560, [9])  # 18-bit mantissa: lossy
    assert artp.unpack_remb_fci(P.remb_fci(262_143, [])) == (262_143, [])


# --- what the Ingress sends its publisher -----------------------------------------------------------


def test_a_gap_is_nacked_at_once_with_the_missing_bitmask():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    t0 = now_base()
    feed(ingress, MEDIA, [100, 101], t0)
    assert pub.rtcp == []
    ingress.on_rtp(delta(MEDIA, 105, 0), t0 + 1)
    assert pub.rtcp == [bytes.fromhex("81cd0003" "0000feed" "11111111" "0066" "0003")]  # 102 + 103, 104
    assert pub.rtcp == [P.rtcp_nack(RTCP_SSRC, MEDIA, [(102, 0b11)])]


def test_a_long_gap_takes_two_fci_and_gaps_within_20ms_wait_for_the_round():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    t0 = now_base()
    ingress.on_rtp(delta(MEDIA, 1000 - 1, 0), t0)
    ingress.on_rtp(delta(MEDIA, 1021, 0), t0 + 0.5)  # 1000..1020 missing
    assert pub.rtcp == [P.rtcp_nack(RTCP_SSRC, MEDIA, [(1000, 0xFFFF), (1017, 0b111)])]
    ingress.on_rtp(delta(MEDIA, 1023, 0), t0 + 0.51)  # 1022 missing too, but 10 ms after the last NACK
    ingress.on_rtp(delta(MEDIA, 1010, 0), t0 + 0.52)  # a late one fills its hole
    assert len(pub.rtcp) == 1
    ingress.rtcp_round()
    # RR (+ REMB) first, then the re-NACK of everything still missing
    assert pub.rtcp[2] == P.rtcp_nack(RTCP_SSRC, MEDIA, [(1000, 0xFDFF), (1017, 0b1_0111)])


def test_a_nack_across_the_wrap_lists_every_missing_number():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    t0 = now_base()
    ingress.on_rtp(delta(MEDIA, 65533, 0), t0)
    ingress.on_rtp(delta(MEDIA, 2, 0), t0 + 0.5)  # 65534, 65535, 0, 1 missing
    (packet,) = artp.RtcpPacket.parse(pub.rtcp[0])
    assert sorted(s & 0xFFFF for s in packet.lost) == [0, 1, 65534, 65535]


def test_receiver_report_and_remb_bytes_for_a_clean_stream():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    feed(ingress, MEDIA, list(range(100, 110)), now_base())
    ingress.rtcp_round()
    # RR: fraction 0, cumulative 0, highest 109, jitter 0, no SR yet (LSR = DLSR = 0); then REMB
    # over the video SSRCs at the 4 Mbps ceiling (no loss: the publisher's own congestion control rules)
    assert pub.rtcp == [P.rtcp_rr(RTCP_SSRC, [P.report_block(MEDIA, 0, 0, 109, 0)])
                        + P.rtcp_remb(RTCP_SSRC, 4_000_000, [MEDIA])]
    assert pub.rtcp[0][32:] == bytes.fromhex("8fce0005" "0000feed" "00000000" "52454d42" "0113d090" "11111111")


def test_receiver_report_with_loss_has_no_remb_without_an_estimate_and_renacks():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    base = now_base() - 6
    feed(ingress, MEDIA, [100, 101, 102, 105, 106, 107, 108, 109], base)
    assert pub.rtcp == [P.rtcp_nack(RTCP_SSRC, MEDIA, [(103, 0b1)])]
    ingress.rtcp_round()
    # 2 of 10 lost: fraction 2 * 256 // 10 = 51; above 2 % the (absent) estimate applies: no REMB
    assert pub.rtcp[1:] == [P.rtcp_rr(RTCP_SSRC, [P.report_block(MEDIA, 51, 2, 109, 0)]),
                            P.rtcp_nack(RTCP_SSRC, MEDIA, [(103, 0b1)])]
    # the next interval starts from here: no new loss, fraction 0, cumulative loss stays 2
    feed(ingress, MEDIA, [110, 111], base)
    ingress.rtcp_round()
    assert pub.rtcp[3:] == [P.rtcp_rr(RTCP_SSRC, [P.report_block(MEDIA, 0, 2, 111, 0)])
                            + P.rtcp_remb(RTCP_SSRC, 4_000_000, [MEDIA]), P.rtcp_nack(RTCP_SSRC, MEDIA, [(103, 0b1)])]


def test_the_rr_carries_lsr_and_dlsr_of_the_publishers_last_sr():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    feed(ingress, MEDIA, [7, 8], now_base())
    ingress.on_rtcp(artp.RtcpPacket.parse(P.rtcp_sr(MEDIA, 0xAAAA_BBBB_CCCC_DDDD, 1, 2, 3)))
    ingress.rtcp_round()
    block = pub.rtcp[0][8:32]
    assert block[:20] == P.report_block(MEDIA, 0, 0, 8, 0, lsr=0xBBBBCCCC)[:20]
    assert int.from_bytes(block[20:24], "big") < 65536  # DLSR, 1/65536 s since the SR arrived


def test_a_simulcast_publisher_gets_one_report_block_per_layer_and_one_remb_over_all():
    ingress, rec, pub = rig.publish("VP8", rids=["q", "h", "f"])
    t0 = now_base()
    for ssrc, rid in ((Q, b"q"), (H, b"h"), (F, b"f")):
        feed(ingress, ssrc, [10, 11], t0, ext_first=P.one_byte_ext([(4, b"0"), (10, rid)]))
    ingress.rtcp_round()
    assert pub.rtcp == [P.rtcp_rr(RTCP_SSRC, [P.report_block(s, 0, 0, 11, 0) for s in (Q, H, F)])
                        + P.rtcp_remb(RTCP_SSRC, 4_000_000, [Q, H, F])]


def test_a_pli_per_layer_at_most_every_300ms():
    ingress, rec, pub = rig.publish("VP8", rids=["q", "h"])
    assert rec.request_keyframe() is False  # no SSRC known yet: nobody to ask
    feed(ingress, MEDIA, [1], now_base(), ext_first=P.one_byte_ext([(4, b"0"), (10, b"h")]))
    assert rec.request_keyframe() is True
    assert rec.request_keyframe() is False
    assert pub.rtcp == [P.rtcp_pli(RTCP_SSRC, MEDIA)]


def test_no_report_block_before_any_packet_and_nothing_after_close():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    ingress.rtcp_round()
    assert pub.rtcp == [P.rtcp_remb(RTCP_SSRC, 4_000_000, [MEDIA])]  # the SSRC is known from a=ssrc
    pub.rtcp.clear()
    feed(ingress, MEDIA, [1], now_base())
    pub.closed = True
    ingress.rtcp_round()
    assert pub.rtcp == []


# --- what a subscriber sends us, through aiortc's parser and the Peer's routing -----------------------


def subscriber():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media"), (RTX, "rtx")])
    ingress.on_rtp(delta(MEDIA, 1, 0), now_base())  # the publisher's SSRC is known
    dt, sub = rig.subscribe(rec, active=False)  # not negotiated yet: setting the target sends no PLI
    dt.set_target(rec.layers[""])
    dt.slot.active = True
    peer = Peer("PA_sub", "sub", None, lambda msg: None)
    peer.slots_by_ssrc[OUT_SSRC] = dt.slot
    return ingress, pub, dt, sub, peer


def test_subscriber_pli_becomes_a_pli_for_the_forwarded_layer():
    ingress, pub, dt, sub, peer = subscriber()
    peer._subscriber_rtcp(artp.RtcpPacket.parse(P.rtcp_pli(0xABC, OUT_SSRC)))
    assert pub.rtcp == [P.rtcp_pli(RTCP_SSRC, MEDIA)]


def test_subscriber_pli_for_another_ssrc_is_ignored():
    ingress, pub, dt, sub, peer = subscriber()
    peer._subscriber_rtcp(artp.RtcpPacket.parse(P.rtcp_pli(0xABC, OUT_SSRC + 5)))
    assert pub.rtcp == []


def test_subscriber_fir_becomes_a_pli_for_the_forwarded_layer():
    # RFC 5104 4.3.1.2: a FIR's common-header media SSRC is 0; the target SSRC is in the FCI
    ingress, pub, dt, sub, peer = subscriber()
    fir = P.rtcp_fir(0xABC, OUT_SSRC, seq_nr=1)
    assert fir == bytes.fromhex("84ce0004" "00000abc" "00000000") + OUT_SSRC.to_bytes(4, "big") + b"\x01\x00\x00\x00"
    peer._subscriber_rtcp(artp.RtcpPacket.parse(fir))
    assert pub.rtcp == [P.rtcp_pli(RTCP_SSRC, MEDIA)]


def test_subscriber_nack_in_a_compound_with_an_rr_is_served():
    ingress, pub, dt, sub, peer = subscriber()
    ingress.on_rtp(P.rtp(96, 2, 0, MEDIA, P.vp8_payload(keyframe=True, picture_id=2, tl0picidx=0, tid=0)),
                   now_base() + 0.5)
    compound = (P.rtcp_rr(0xABC, [P.report_block(OUT_SSRC, 128, 1, 1000, 0)])
                + P.rtcp_nack(0xABC, OUT_SSRC, P.nack_fci([1000])))
    peer._subscriber_rtcp(artp.RtcpPacket.parse(compound))
    assert sub.rtp[1:] == [P.rtx(sub.rtp[0], rig.OUT_RTX_PT["VP8"], 301, rig.OUT_RTX_SSRC)]
    assert dt.fraction_lost == 0.5


def test_a_remb_applies_to_the_downtracks_it_names_or_to_all_when_it_names_none_of_ours():
    class Room:
        calls: list = []

        def on_estimate(self, subscriber, bitrate, downtracks, scope):
            self.calls.append((bitrate, downtracks, scope))

    room = Room()
    peer = Peer("PA_sub", "sub", room, lambda msg: None)
    ingress, rec, _ = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    dts = []
    for i in range(3):
        dt, _ = rig.subscribe(rec, mid=str(i + 1))
        dt.slot.ssrc = OUT_SSRC + i
        peer.slots_by_ssrc[dt.slot.ssrc] = dt.slot
        dts.append(dt)
    # a browser's REMB names every SSRC it receives: one estimate for all of them
    peer._subscriber_rtcp([Remb(ssrc=0xABC, bitrate=2_000_000, ssrcs=[OUT_SSRC + 2, OUT_SSRC, OUT_SSRC + 1])])
    # aiortc sends one per m-line, naming that m-line's SSRC
    peer._subscriber_rtcp([Remb(ssrc=0xABC, bitrate=300_000, ssrcs=[OUT_SSRC + 1])])
    # naming nothing we send: taken for the whole downlink (the router applies it to every DownTrack)
    peer._subscriber_rtcp([Remb(ssrc=0xABC, bitrate=1_000_000, ssrcs=[0xDEAD])])
    scope = (OUT_SSRC, OUT_SSRC + 1, OUT_SSRC + 2)
    assert room.calls == [(2_000_000, [dts[2], dts[0], dts[1]], scope), (300_000, [dts[1]], (OUT_SSRC + 1,)),
                          (1_000_000, [], (0xDEAD,))]


def test_vp8_payload_under_rtx_survives_a_parse_of_the_retransmission():
    ingress, pub, dt, sub, peer = subscriber()
    ingress.on_rtp(P.rtp(96, 2, 0, MEDIA, P.vp8_payload(keyframe=True, picture_id=2, tl0picidx=0, tid=0)),
                   now_base() + 0.5)
    dt.on_nack([1000], 2.0)
    v = rtp.parse(sub.rtp[1])
    assert (v.pt, v.seq, v.ssrc) == (rig.OUT_RTX_PT["VP8"], 301, rig.OUT_RTX_SSRC)
    assert sub.rtp[1][v.payload_start:v.payload_start + 2] == (1000).to_bytes(2, "big")
    assert sub.rtp[1][v.payload_start + 2:] == sub.rtp[0][12:]
