"""DownTrack output, byte for byte: rewrite, continuity across switches and pauses, temporal-layer
renumbering, extension remapping, NACK -> RTX, sender-report translation.

Packets enter through `Ingress.on_rtp` (the real receive path) and leave as the bytes the subscriber
transport would protect. Every DownTrack starts from `rig.START` (first packet out: seq 1000, ts 5000,
RTX seq 301), so expected packets are written with the same builders as the input.
"""

from __future__ import annotations

from aiortc import rtp as artp
from aiortc.jitterbuffer import JitterBuffer

from sfu import rtp
from sfu.downtrack import RTX_MAX_AGE_S
from sfu.metrics import STATS
from tests.support import packets as P
from tests.unit.sfu import rig
from tests.unit.sfu.rig import OUT_RTX_SSRC, OUT_SSRC, RTCP_SSRC

Q, H, F = 0x0000A001, 0x0000A002, 0x0000A003
MEDIA, RTX = 0x11111111, 0x22222222


def vp8(ssrc: int, seq: int, ts: int, pid: int, tl0: int, tid: int = 0, key: bool = False, ext: bytes = b"",
        marker: bool = True, pt: int = 96) -> bytes:
    payload = P.vp8_payload(keyframe=key, picture_id=pid, tl0picidx=tl0, tid=tid, layer_sync=tid > 0)
    return P.rtp(pt, seq, ts, ssrc, payload, marker=marker, ext=ext)


def out_vp8(seq: int, ts: int, pid: int, tl0: int, tid: int = 0, key: bool = False, marker: bool = True) -> bytes:
    """What the subscriber must receive: our SSRC and PT, rewritten numbering, same payload otherwise."""
    return vp8(OUT_SSRC, seq, ts, pid, tl0, tid, key, marker=marker, pt=rig.OUT_PT["VP8"])


def rid_ext(rid: bytes) -> bytes:
    return P.one_byte_ext([(4, b"0"), (10, rid)])


def simulcast():
    ingress, rec, pub = rig.publish("VP8", rids=["q", "h", "f"])
    dt, sub = rig.subscribe(rec)
    return ingress, rec, pub, dt, sub


# --- simulcast switch -----------------------------------------------------------------------------


def test_a_simulcast_switch_waits_for_the_keyframe_and_continues_seq_ts_and_picture_id():
    ingress, rec, pub, dt, sub = simulcast()
    changes = []
    dt.on_layer_change = lambda d, old, new: changes.append((old, new))
    dt.set_target(rec.layers["q"])
    # the first packets of each SSRC carry MID + RID (Chromium): that is how the layers are learnt
    ingress.on_rtp(vp8(Q, 500, 6000, 40, 2, ext=rid_ext(b"q")), 10.0)  # delta: a start waits for a key frame
    ingress.on_rtp(vp8(Q, 501, 9000, 41, 3, key=True), 10.0625)
    ingress.on_rtp(vp8(Q, 502, 12000, 42, 4), 10.125)
    assert changes == [(None, "q")]
    ingress.on_rtp(vp8(H, 7000, 50000, 900, 70, ext=rid_ext(b"h")), 10.1875)  # h delta, not forwarded
    dt.set_target(rec.layers["h"])
    ingress.on_rtp(vp8(Q, 503, 15000, 43, 5), 10.25)  # q goes on until h's key frame
    ingress.on_rtp(vp8(H, 7001, 53000, 901, 77, key=True), 10.5)
    ingress.on_rtp(vp8(Q, 504, 18000, 44, 6), 10.5)  # q is over
    ingress.on_rtp(vp8(H, 7002, 56000, 902, 78), 10.5625)
    assert sub.rtp == [
        out_vp8(1000, 5000, 41, 3, key=True),  # the first run starts at the inherited numbering
        out_vp8(1001, 8000, 42, 4),
        out_vp8(1002, 11000, 43, 5),
        # the switch: seq + 1, ts + the wall-clock gap (0.25 s = 22500 at 90 kHz), PictureID + 1, TL0PICIDX + 1
        out_vp8(1003, 33500, 44, 6, key=True),
        out_vp8(1004, 36500, 45, 7),
    ]
    assert changes == [(None, "q"), ("q", "h")]
    # a target asks its layer for a key frame (PLI for the layer's media SSRC); q had no SSRC yet
    # when it became the target, so only h's PLI went out
    assert pub.rtcp == [P.rtcp_pli(RTCP_SSRC, H)]
    assert (dt.current, dt.target) == (rec.layers["h"], rec.layers["h"])


def test_switching_down_and_back_up_keeps_numbering_continuous():
    ingress, rec, pub, dt, sub = simulcast()
    ingress.on_rtp(vp8(F, 9, 0, 4999, 199, ext=rid_ext(b"f")), 1.0)
    ingress.on_rtp(vp8(Q, 60000, 70000, 30000, 9, ext=rid_ext(b"q")), 1.0)
    dt.set_target(rec.layers["f"])
    ingress.on_rtp(vp8(F, 10, 1000, 5000, 200, key=True), 1.0)
    dt.set_target(rec.layers["q"])
    ingress.on_rtp(vp8(Q, 60001, 73000, 30001, 10, key=True), 1.125)
    dt.set_target(rec.layers["f"])
    ingress.on_rtp(vp8(F, 11, 4000, 5001, 201, key=False), 1.125)  # not a key frame: not forwarded
    ingress.on_rtp(vp8(F, 12, 7000, 5002, 202, key=True), 1.25)
    assert sub.rtp == [
        out_vp8(1000, 5000, 5000, 200, key=True),
        out_vp8(1001, 5000 + 11250, 5001, 201, key=True),  # 0.125 s later
        out_vp8(1002, 5000 + 22500, 5002, 202, key=True),
    ]


def test_picture_id_and_tl0picidx_wrap_across_a_switch():
    ingress, rec, pub, dt, sub = simulcast()
    ingress.on_rtp(vp8(Q, 0, 0, 0x7FFE, 0xFE, ext=rid_ext(b"q")), 2.0)
    dt.set_target(rec.layers["q"])
    ingress.on_rtp(vp8(Q, 1, 0, 0x7FFF, 0xFF, key=True), 2.0)
    ingress.on_rtp(vp8(H, 1, 0, 10, 20, ext=rid_ext(b"h")), 2.0)
    dt.set_target(rec.layers["h"])
    ingress.on_rtp(vp8(H, 2, 3000, 11, 21, key=True), 2.0625)
    ingress.on_rtp(vp8(H, 3, 6000, 12, 22), 2.125)
    assert sub.rtp == [
        out_vp8(1000, 5000, 0x7FFF, 0xFF, key=True),
        out_vp8(1001, 5000 + 5625, 0, 0, key=True),  # 15-bit PictureID and 8-bit TL0PICIDX wrap to 0
        out_vp8(1002, 5000 + 5625 + 3000, 1, 1),
    ]


def test_packets_from_before_the_switch_point_of_the_new_layer_are_not_forwarded():
    ingress, rec, pub, dt, sub = simulcast()
    ingress.on_rtp(vp8(H, 98, 3000, 0, 0, ext=rid_ext(b"h")), 3.0)
    dt.set_target(rec.layers["h"])
    ingress.on_rtp(vp8(H, 100, 9000, 1, 1, key=True, marker=False), 3.0)
    ingress.on_rtp(vp8(H, 99, 6000, 0, 0), 3.0)  # reordered, from the frame before the key frame
    ingress.on_rtp(vp8(H, 101, 9000, 1, 1), 3.0)
    assert sub.rtp == [out_vp8(1000, 5000, 1, 1, key=True, marker=False), out_vp8(1001, 5000, 1, 1)]


# --- pause / resume / mute ------------------------------------------------------------------------


def single_vp8():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media"), (RTX, "rtx")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    return ingress, rec, pub, dt, sub


def test_pause_and_resume_advance_the_timestamp_by_the_wall_clock_gap():
    ingress, rec, pub, dt, sub = single_vp8()
    layer = rec.layers[""]
    ingress.on_rtp(vp8(MEDIA, 10, 90000, 50, 5, key=True), 20.0)
    ingress.on_rtp(vp8(MEDIA, 11, 93000, 51, 6), 20.0625)
    dt.set_target(None, "paused by the subscriber")
    assert (dt.paused, dt.pause_reason) == (True, "paused by the subscriber")
    ingress.on_rtp(vp8(MEDIA, 12, 96000, 52, 7), 20.125)
    ingress.on_rtp(vp8(MEDIA, 13, 99000, 53, 8, key=True), 21.0)
    dt.set_target(layer)
    ingress.on_rtp(vp8(MEDIA, 14, 102000, 54, 9), 22.0)  # resuming video waits for a key frame
    ingress.on_rtp(vp8(MEDIA, 15, 105000, 55, 10, key=True), 22.0625)
    ingress.on_rtp(vp8(MEDIA, 16, 108000, 56, 11), 22.125)
    assert sub.rtp == [
        out_vp8(1000, 5000, 50, 5, key=True),
        out_vp8(1001, 8000, 51, 6),
        # 2.0 s after the last packet sent: ts + 180000, not the publisher's +12000
        out_vp8(1002, 8000 + 180000, 52, 7, key=True),
        out_vp8(1003, 8000 + 180000 + 3000, 53, 8),
    ]


def test_audio_resumes_at_once_after_a_publisher_mute():
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    opus = b"\xfc\xff\xfe"
    ingress.on_rtp(P.rtp(111, 1, 960, MEDIA, opus), 5.0)
    ingress.on_rtp(P.rtp(111, 2, 1920, MEDIA, opus), 5.015625)
    rec.muted = True
    dt.interrupt()
    ingress.on_rtp(P.rtp(111, 3, 2880, MEDIA, opus), 5.03125)  # muted: not forwarded
    rec.muted = False
    ingress.on_rtp(P.rtp(111, 500, 480000, MEDIA, opus), 5.515625)  # the publisher's stream moved on
    ingress.on_rtp(P.rtp(111, 501, 480960, MEDIA, opus), 5.53125)
    assert sub.rtp == [
        P.rtp(111, 1000, 5000, OUT_SSRC, opus),
        P.rtp(111, 1001, 5960, OUT_SSRC, opus),
        P.rtp(111, 1002, 5960 + 24000, OUT_SSRC, opus),  # 0.5 s at 48 kHz
        P.rtp(111, 1003, 5960 + 24960, OUT_SSRC, opus),
    ]


def test_an_inactive_m_line_forwards_nothing():
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec, active=False)
    dt.set_target(rec.layers[""])
    ingress.on_rtp(P.rtp(111, 1, 960, MEDIA, b"\x01"), 1.0)
    assert sub.rtp == [] and dt.packets == 0


# --- temporal layers ------------------------------------------------------------------------------


def test_dropped_temporal_layers_are_renumbered_away():
    ingress, rec, pub, dt, sub = single_vp8()
    dt.max_tid = 0
    # L1T3 pattern (TID 0 2 1 2 0 2 1 2 ...), one packet per frame
    tids = [0, 2, 1, 2, 0, 2, 1, 2, 0]
    for i, tid in enumerate(tids):
        ingress.on_rtp(vp8(MEDIA, 200 + i, 3000 * i, 10 + i, 1 + (i + 3) // 4, tid=tid, key=i == 0), 1.0 + i / 32)
    assert sub.rtp == [
        out_vp8(1000, 5000, 10, 1, key=True),
        out_vp8(1001, 5000 + 12000, 14, 2),  # next seq; PictureID gaps are legal, seq gaps would be NACKed
        out_vp8(1002, 5000 + 24000, 18, 3),
    ]
    assert dt.temporal_drops == 6
    dt.max_tid = 1
    for i, (tid, tl0) in enumerate([(2, 3), (1, 3), (2, 3), (0, 4)], start=len(tids)):
        ingress.on_rtp(vp8(MEDIA, 200 + i, 3000 * i, 10 + i, tl0, tid=tid), 1.0 + i / 32)
    assert sub.rtp[3:] == [out_vp8(1003, 5000 + 30000, 20, 3, tid=1), out_vp8(1004, 5000 + 36000, 22, 4)]
    assert dt.temporal_drops == 8


def test_a_dropped_temporal_layer_frame_of_several_packets_leaves_no_gap():
    ingress, rec, pub, dt, sub = single_vp8()
    dt.max_tid = 0
    ingress.on_rtp(vp8(MEDIA, 1, 0, 1, 1, key=True), 1.0)
    for seq in (2, 3, 4):  # one TID 1 frame in three packets
        ingress.on_rtp(vp8(MEDIA, seq, 3000, 2, 1, tid=1, marker=seq == 4), 1.03125)
    ingress.on_rtp(vp8(MEDIA, 5, 6000, 3, 2), 1.0625)
    assert sub.rtp == [out_vp8(1000, 5000, 1, 1, key=True), out_vp8(1001, 11000, 3, 2)]


# --- header extensions ----------------------------------------------------------------------------


def test_one_byte_extensions_are_remapped_by_uri_and_unknown_ones_blanked():
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    ext = P.one_byte_ext([(1, b"\x85"), (2, b"\x11\x22\x33"), b"\x00", (4, b"0"), (7, b"zz")])
    ingress.on_rtp(P.rtp(111, 1, 960, MEDIA, b"opus", ext=ext), 10.5)
    # audio level 1 -> 3; abs-send-time 2 -> 5 with OUR send time; MID 4 -> 9 with our mid;
    # id 7 is not negotiated downstream: its element becomes padding (RFC 8285 allows zero bytes)
    out_ext = P.one_byte_ext([(3, b"\x85"), (5, rtp.abs_send_time_now(10.5)), b"\x00", (9, b"1"), b"\x00" * 3])
    assert rtp.abs_send_time_now(10.5) == bytes.fromhex("2a0000")
    assert sub.rtp == [P.rtp(111, 1000, 5000, OUT_SSRC, b"opus", ext=out_ext)]


def test_a_mid_of_another_length_is_blanked_not_truncated():
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec, mid="10")
    dt.set_target(rec.layers[""])
    ingress.on_rtp(P.rtp(111, 1, 960, MEDIA, b"opus", ext=P.one_byte_ext([(4, b"0"), (1, b"\x05")])), 1.0)
    assert sub.rtp == [P.rtp(111, 1000, 5000, OUT_SSRC, b"opus", ext=P.one_byte_ext([b"\x00\x00", (3, b"\x05")]))]


def test_rid_and_repaired_rid_never_reach_the_subscriber():
    ingress, rec, pub, dt, sub = simulcast()
    dt.set_target(rec.layers["q"])
    ext = P.one_byte_ext([(4, b"0"), (10, b"q"), (2, b"\x00\x00\x01")])
    ingress.on_rtp(vp8(Q, 1, 0, 1, 1, key=True, ext=ext), 0.25)
    out_ext = P.one_byte_ext([(9, b"1"), b"\x00\x00", (5, rtp.abs_send_time_now(0.25))])
    payload = P.vp8_payload(keyframe=True, picture_id=1, tl0picidx=1, tid=0)
    assert sub.rtp == [P.rtp(96, 1000, 5000, OUT_SSRC, payload, marker=True, ext=out_ext)]


def test_two_byte_extensions_are_remapped_in_place_like_one_byte_ones():
    # (Chromium sends a key frame's AV1 dependency descriptor, over 16 bytes, in this form)
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    ext = P.two_byte_ext([(1, b"\x85"), b"\x00", (4, b"0"), (2, b"\x00\x00\x01"), (30, b"x" * 20)], appbits=3)
    ingress.on_rtp(P.rtp(111, 1, 960, MEDIA, b"opus", ext=ext, csrcs=[0xC5C5]), 1.0)
    # level 1 -> 3, mid 4 -> 9 with the subscriber's mid, abs-send-time 2 -> 5 with our send time, an
    # id the subscriber did not negotiate blanked (padding); the block's size and profile kept
    out_ext = P.two_byte_ext([(3, b"\x85"), b"\x00", (9, b"1"), (5, rtp.abs_send_time_now(1.0)), b"\x00" * 22],
                             appbits=3)
    assert sub.rtp == [P.rtp(111, 1000, 5000, OUT_SSRC, b"opus", ext=out_ext, csrcs=[0xC5C5])]


def test_an_extension_block_of_another_profile_is_emptied():
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    ingress.on_rtp(P.rtp(111, 1, 960, MEDIA, b"opus", ext=P.ext_block(0xABCD, b"\x11\x22\x33\x44")), 1.0)
    assert sub.rtp == [P.rtp(111, 1000, 5000, OUT_SSRC, b"opus", ext=P.ext_block(0xABCD, bytes(4)))]


def test_padding_and_csrcs_are_kept_on_forwarded_packets():
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    ingress.on_rtp(P.rtp(111, 1, 960, MEDIA, b"opus", csrcs=[1, 2], padding=4, marker=True), 1.0)
    assert sub.rtp == [P.rtp(111, 1000, 5000, OUT_SSRC, b"opus", csrcs=[1, 2], padding=4, marker=True)]
    assert (dt.packets, dt.octets, dt.bytes_sent) == (1, 4, 12 + 8 + 4 + 4)


# --- NACK -> retransmission -------------------------------------------------------------------------


def forwarded_three():
    ingress, rec, pub, dt, sub = single_vp8()
    ingress.on_rtp(vp8(MEDIA, 10, 90000, 50, 5, key=True), 1.0)
    ingress.on_rtp(vp8(MEDIA, 11, 93000, 51, 6, marker=False), 1.03125)
    ingress.on_rtp(vp8(MEDIA, 12, 96000, 52, 7), 1.0625)
    return ingress, rec, dt, sub


def test_a_nack_is_answered_with_rfc4588_rtx_from_the_cache():
    ingress, rec, dt, sub = forwarded_three()
    original = out_vp8(1001, 8000, 51, 6, marker=False)
    assert sub.rtp[1] == original
    dt.on_nack([1001], 1.1)
    # RTX PT and SSRC, the RTX stream's own next seq, the same timestamp, OSN in front of the payload
    assert sub.rtp[3] == P.rtx(original, rig.OUT_RTX_PT["VP8"], 301, OUT_RTX_SSRC)
    assert sub.rtp[3][:14] == bytes.fromhex("8061012d00001f40") + OUT_RTX_SSRC.to_bytes(4, "big") + b"\x03\xe9"
    assert (dt.retransmissions, len(sub.rtp)) == (1, 4)


def test_rtx_keeps_the_marker_and_the_extensions_and_drops_padding():
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec, rtx=False)
    dt.slot.rtx_pt = 112  # a negotiated RTX for audio
    dt.set_target(rec.layers[""])
    ingress.on_rtp(P.rtp(111, 1, 960, MEDIA, b"opus", ext=P.one_byte_ext([(1, b"\x85")]), padding=3, marker=True),
                   1.0)
    dt.on_nack([1000], 1.5)
    ext = P.one_byte_ext([(3, b"\x85")])
    assert sub.rtp[1] == P.rtp(112, 301, 5000, OUT_RTX_SSRC, b"\x03\xe8" + b"opus", ext=ext, marker=True)


def test_without_rtx_the_cached_packet_is_resent_as_is():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec, rtx=False)
    dt.set_target(rec.layers[""])
    ingress.on_rtp(vp8(MEDIA, 10, 90000, 50, 5, key=True), 1.0)
    dt.on_nack([1000], 1.5)
    assert sub.rtp == [out_vp8(1000, 5000, 50, 5, key=True)] * 2


def test_a_nack_from_the_wire_resends_each_listed_packet_once_per_rtt():
    ingress, rec, dt, sub = forwarded_three()
    nack = P.rtcp_nack(0xABC, OUT_SSRC, P.nack_fci([1000, 1002, 7]))
    assert nack == bytes.fromhex("81cd0004" "00000abc") + OUT_SSRC.to_bytes(4, "big") + bytes.fromhex("03e80002"
                                                                                                      "00070000")
    (packet,) = artp.RtcpPacket.parse(nack)
    dt.on_nack(packet.lost, 1.5)
    assert sub.rtp[3:] == [P.rtx(sub.rtp[0], 97, 301, OUT_RTX_SSRC), P.rtx(sub.rtp[2], 97, 302, OUT_RTX_SSRC)]
    dt.on_nack(packet.lost, 1.55)  # again within the RTT (100 ms until an RR measures one): suppressed
    assert (len(sub.rtp), dt.rtx_suppressed) == (5, 2)
    dt.on_nack(packet.lost, 1.6)
    assert sub.rtp[5:] == [P.rtx(sub.rtp[0], 97, 303, OUT_RTX_SSRC), P.rtx(sub.rtp[2], 97, 304, OUT_RTX_SSRC)]
    assert dt.retransmissions == 4


def test_a_packet_forwarded_too_long_ago_is_not_resent_nor_the_rest_of_its_loss_run():
    # after an outage a subscriber NACKs everything it missed: what cannot be repaired from the start
    # of a loss run only leaves incomplete stale frames in its jitter buffer
    ingress, rec, dt, sub = forwarded_three()  # forwarded at 1.0, 1.03125 and 1.0625
    before = STATS.rtx_suppressed_stale
    late = 1.0 + RTX_MAX_AGE_S + 0.04  # 1000 and 1001 are stale, 1002 is not
    dt.on_nack([1000, 1001, 1002], late)  # one run: its start is stale, so none of it
    assert len(sub.rtp) == 3
    assert (dt.retransmissions, dt.rtx_suppressed, STATS.rtx_suppressed_stale - before) == (0, 3, 3)
    dt.on_nack([1000, 1002], late)  # two runs, judged apart
    assert len(sub.rtp) == 4 and sub.rtp[3] == P.rtx(sub.rtp[2], 97, 301, OUT_RTX_SSRC)
    # the age allowed grows to three round trips on a long path
    dt.rtt = 0.5
    dt.on_nack([1000], 1.0 + 1.4)
    assert dt.retransmissions == 2 and sub.rtp[4] == P.rtx(sub.rtp[0], 97, 302, OUT_RTX_SSRC)
    assert STATS.rtx_suppressed_stale - before == 4


def test_a_nack_across_the_sequence_wrap_resends_both_sides():
    # numbering 65534, 65535, 0, 1: libwebrtc NACKs 65535 and 0 as PID 65535 with BLP bit 0 set
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media"), (RTX, "rtx")])
    dt, sub = rig.subscribe(rec, start=(65533, 5000, 0.0, 100, 7, 300, False))
    dt.set_target(rec.layers[""])
    for i in range(4):
        ingress.on_rtp(vp8(MEDIA, 10 + i, 3000 * i, 50 + i, 5, key=i == 0), 1.0 + i / 32)
    assert [int.from_bytes(p[2:4], "big") for p in sub.rtp] == [65534, 65535, 0, 1]
    nack = P.rtcp_nack(0xABC, OUT_SSRC, [(65535, 0x0001)])
    (packet,) = artp.RtcpPacket.parse(nack)
    dt.on_nack(packet.lost, 1.5)
    assert sub.rtp[4:] == [P.rtx(sub.rtp[1], 97, 301, OUT_RTX_SSRC), P.rtx(sub.rtp[2], 97, 302, OUT_RTX_SSRC)]


def test_nack_for_packets_never_sent_or_evicted_resends_nothing():
    ingress, rec, dt, sub = forwarded_three()
    dt.on_nack([999, 1003, 1000 + 1024], 1.5)  # before the first, after the last, the slot of 1000 + 1024
    assert (len(sub.rtp), dt.retransmissions) == (3, 0)


def test_each_packet_is_kept_once_in_its_layers_ring_whatever_the_fan_out():
    # a DownTrack keeps only where each packet it sent came from; the packet is in the layer's ring
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media"), (RTX, "rtx")])
    subs = [rig.subscribe(rec, mid=str(m)) for m in (1, 2, 3)]
    for dt, _ in subs:
        dt.set_target(rec.layers[""])
    for i in range(3):
        ingress.on_rtp(vp8(MEDIA, 10 + i, 3000 * i, 50 + i, 5, key=i == 0), 1.0 + i / 32)
    assert rec.layers[""].ring.stores == 3
    for dt, sub in subs:
        dt.on_nack([1001], 1.5)
        assert sub.rtp[3:] == [P.rtx(sub.rtp[1], 97, 301, OUT_RTX_SSRC)] and dt.retransmissions == 1


def test_after_a_layer_switch_only_the_new_run_is_resent_from_its_layers_ring():
    """The new layer's run starts at its key frame: the old layer's packets are not needed to decode
    anything after it, so they are not resent (behind a link that just narrowed, their
    retransmissions delayed the new layer's key frame by a second and more)."""
    ingress, rec, pub, dt, sub = simulcast()
    dt.set_target(rec.layers["q"])
    ingress.on_rtp(vp8(Q, 500, 9000, 41, 3, key=True, ext=rid_ext(b"q")), 10.0)
    ingress.on_rtp(vp8(Q, 501, 12000, 42, 4), 10.03125)
    ingress.on_rtp(vp8(H, 7000, 50000, 900, 70, ext=rid_ext(b"h")), 10.04)  # h is learnt, not sent
    dt.set_target(rec.layers["h"])
    ingress.on_rtp(vp8(H, 7001, 53000, 901, 71, key=True), 10.0625)
    ingress.on_rtp(vp8(Q, 502, 15000, 43, 5), 10.07)  # q goes on; nobody is sent it now
    ingress.on_rtp(vp8(H, 7002, 56000, 902, 72), 10.09375)
    assert [rtp.parse(p).seq for p in sub.rtp] == [1000, 1001, 1002, 1003]
    # only what was sent is kept: q's third packet went to nobody
    assert (rec.layers["q"].ring.stores, rec.layers["h"].ring.stores) == (2, 2)
    dt.on_nack([1001, 1002, 1003], 10.2)
    # 1001 (q's) is answered with an empty packet (just its number, on the RTX stream) carrying the
    # timestamp of the new run's key frame, so a receiver waiting for it (aiortc's jitter buffer) stops
    key_ts = rtp.parse(sub.rtp[2]).ts
    empty = rtp.HEADER.pack(0x80, 97, 301, key_ts, OUT_RTX_SSRC) + (1001).to_bytes(2, "big")
    assert sub.rtp[4:] == [empty] + [P.rtx(sub.rtp[i], 97, 300 + i, OUT_RTX_SSRC) for i in (2, 3)]
    assert (dt.run_first_seq, dt.rtx_suppressed, dt.retransmissions) == (1002, 1, 2)


def test_a_hole_between_frames_of_the_previous_run_is_answered_at_the_next_frames_timestamp():
    """aiortc groups packets into frames by timestamp, and an empty frame makes its VP8 decoder drain
    and fail ("End of file") for good. A lost packet of the previous run, between two of its frames,
    answered at the new run's timestamp (as it was) was such a frame: after its publisher's ICE
    restart a subscriber decoded nothing for 30 s. At the timestamp of the packet after it, the
    answer adds nothing to that packet's frame."""
    ingress, rec, pub, dt, sub = simulcast()
    dt.set_target(rec.layers["q"])
    ingress.on_rtp(vp8(Q, 500, 9000, 41, 3, key=True, ext=rid_ext(b"q")), 10.0)
    for k in range(1, 4):  # three more single-packet frames of q
        ingress.on_rtp(vp8(Q, 500 + k, 9000 + 3000 * k, 41 + k, 3 + k), 10.0 + k / 30)
    ingress.on_rtp(vp8(H, 7000, 50000, 900, 70, ext=rid_ext(b"h")), 10.14)
    dt.set_target(rec.layers["h"])
    ingress.on_rtp(vp8(H, 7001, 53000, 901, 71, key=True), 10.15)  # the new run: 1004
    assert [rtp.parse(p).seq for p in sub.rtp] == [1000, 1001, 1002, 1003, 1004]
    sent = list(sub.rtp)
    dt.on_nack([1001, 1002], 10.2)  # the subscriber missed q's 2nd and 3rd frames
    (answer_1001, answer_1002) = [artp.RtpPacket.parse(p) for p in sub.rtp[5:]]
    assert [int.from_bytes(a.payload[:2], "big") for a in (answer_1001, answer_1002)] == [1001, 1002]
    assert answer_1001.timestamp == answer_1002.timestamp == rtp.parse(sent[3]).ts  # 1003's, not the new run's
    # what aiortc's jitter buffer makes of what the subscriber has: no empty frame
    buffer = JitterBuffer(capacity=128, is_video=True)
    frames = []
    arrived = [artp.RtpPacket.parse(sent[i]) for i in (0, 3, 4)] + [
        artp.RtpPacket(payload_type=96, sequence_number=seq, timestamp=a.timestamp, ssrc=OUT_SSRC)
        for seq, a in ((1001, answer_1001), (1002, answer_1002))]
    arrived.append(artp.RtpPacket.parse(P.rtp(96, 1005, rtp.parse(sent[4]).ts + 3000, OUT_SSRC, b"next")))
    for packet in arrived:
        packet._data = packet.payload  # (what aiortc's receiver hands its jitter buffer)
        _, frame = buffer.add(packet)
        if frame is not None:
            frames.append(frame)
    assert frames and all(frame.data for frame in frames), [(f.timestamp, len(f.data)) for f in frames]


def test_a_packet_whose_source_has_left_the_layers_ring_is_not_resent():
    # The ring holds the layer's last 1024 packets. This subscriber is sent every other one (the
    # other frames are a temporal layer it does not get), so its first packets are no longer there
    # while later ones are. Each is answered from the ring, or counted as a miss.
    ingress, rec, pub, dt, sub = single_vp8()
    dt.max_tid = 0
    for i in range(1100):
        ingress.on_rtp(vp8(MEDIA, 10 + i, 3000 * i, 50 + i, (i // 2) & 0xFF, tid=i % 2, key=i == 0), 1.0 + i / 2000)
    assert len(sub.rtp) == 550
    misses = STATS.nack_misses
    dt.on_nack([1030, 1500], 1.6)  # sent from the layer's packets 60 (left the ring) and 1000
    assert (STATS.nack_misses - misses, dt.retransmissions) == (1, 1)
    assert sub.rtp[550:] == [P.rtx(sub.rtp[500], 97, 301, OUT_RTX_SSRC)]


def test_nacks_for_the_previous_track_on_a_recycled_m_line_are_answered_with_padding():
    # The m-line carried another track up to seq 7917 / ts 123456. The subscriber (aiortc) missed the
    # last of those packets (they reached it after it had made the m-line inactive), so when this
    # track continues at 7918 it NACKs 7915-7917. They were never this DownTrack's: unanswered,
    # aiortc holds every later frame for 512 packets. Empty packets with those numbers let it move
    # on: as RTX (the subscriber's SRTP already saw those numbers on the media SSRC: a replay there),
    # at the timestamp of this track's first frame (aiortc would make an empty frame of another one)
    for rtx in (True, False):
        ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media"), (RTX, "rtx")])
        dt, sub = rig.subscribe(rec, rtx=rtx, start=(7917, 123456, 0.5, 100, 7, 300, True))
        dt.set_target(rec.layers[""])
        ingress.on_rtp(vp8(MEDIA, 10, 90000, 50, 5, key=True), 1.0)
        ingress.on_rtp(vp8(MEDIA, 11, 93000, 51, 6), 1.03125)
        assert [rtp.parse(p).seq for p in sub.rtp] == [7918, 7919]
        first_ts = rtp.parse(sub.rtp[0]).ts  # this track's first frame: the empty packets join it
        nack = P.rtcp_nack(0xABC, OUT_SSRC, P.nack_fci([7915, 7916, 7917, 7918]))
        (packet,) = artp.RtcpPacket.parse(nack)
        dt.on_nack(packet.lost, 1.1)
        if rtx:
            empty = [P.rtp(97, 300 + i, first_ts, OUT_RTX_SSRC, seq.to_bytes(2, "big"))
                     for i, seq in enumerate((7915, 7916, 7917), 1)]
            # and the one that was ours is resent from the cache as usual, the RTX numbering going on
            assert sub.rtp[2:] == [*empty, P.rtx(sub.rtp[0], 97, 304, OUT_RTX_SSRC)]
        else:  # without RTX: padding-only packets on the media SSRC, then the cached packet as is
            empty = [P.rtp(rig.OUT_PT["VP8"], seq, first_ts, OUT_SSRC, b"", padding=4) for seq in (7915, 7916, 7917)]
            assert sub.rtp[2:] == [*empty, sub.rtp[0]]
        assert dt.retransmissions == 1


def test_the_retransmission_budget_caps_resent_bytes_a_run_at_a_time():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media"), (RTX, "rtx")])
    dt, sub = rig.subscribe(rec, rtx_budget=1.0)
    dt.set_target(rec.layers[""])
    for i in range(4):
        ingress.on_rtp(vp8(MEDIA, 10 + i, 3000 * i, 50 + i, 5, key=i == 0), 1.0 + i / 32)
    # 36 + 3 x 29 bytes forwarded; the RTX packets are 38 + 3 x 31: three would fit in 123, the four
    # of one run not, so none of it goes (half a run repaired leaves a receiver waiting for the rest:
    # aiortc's jitter buffer asks once, then holds every later frame until it overflows)
    assert [len(p) for p in sub.rtp] == [36, 29, 29, 29]
    dt.on_nack([1000, 1001, 1002, 1003], 1.5)
    assert (len(sub.rtp) - 4, dt.retransmissions, dt.rtx_suppressed) == (0, 0, 4)
    # two runs: the first fits (38 + 31), the second no longer (31 + 31 > 123 - 69)
    dt.on_nack([1000, 1001], 1.6)
    assert (len(sub.rtp) - 4, dt.retransmissions) == (2, 2)
    dt.on_nack([1000, 1002, 1003], 1.6)  # (1000 was just resent: free; 1002-1003 cost 62 of 54 left)
    assert (len(sub.rtp) - 4, dt.retransmissions, dt.rtx_suppressed) == (2, 2, 4 + 1 + 2)


# --- sender reports -------------------------------------------------------------------------------


def test_a_publisher_sr_is_translated_into_the_subscribers_timeline():
    ingress, rec, dt, sub = forwarded_three()
    ntp = 0xE8A1B2C3_D4E5F607
    sr = P.rtcp_sr(MEDIA, ntp, 96000 + 1500, packets=999, octets=99999)
    ingress.on_rtcp(artp.RtcpPacket.parse(sr))
    octets = sum(len(p) - 12 for p in sub.rtp)  # payload bytes (no CSRCs, extensions or padding here)
    assert octets == 24 + 17 + 17
    # NTP as the publisher sent it; RTP time shifted by our offset (5000 - 90000); our counts; CNAME
    assert sub.rtcp == [P.rtcp_sr(OUT_SSRC, ntp, 5000 - 90000 + 96000 + 1500, 3, octets)
                        + P.rtcp_sdes_cname(OUT_SSRC, rig.CNAME.encode())]


def test_the_sr_offset_follows_a_layer_switch_and_only_the_forwarded_layer_is_reported():
    ingress, rec, pub, dt, sub = simulcast()
    dt.set_target(rec.layers["q"])
    ingress.on_rtp(vp8(Q, 1, 1000, 1, 1, key=True, ext=rid_ext(b"q")), 1.0)  # forwarded (with MID + RID)
    ingress.on_rtp(vp8(H, 1, 700000, 9, 9, ext=rid_ext(b"h")), 1.0)
    ingress.on_rtcp(artp.RtcpPacket.parse(P.rtcp_sr(H, 1 << 32, 700000, 1, 1)))  # h is not forwarded
    assert sub.rtcp == []
    dt.set_target(rec.layers["h"])
    ingress.on_rtp(vp8(H, 2, 703000, 10, 10, key=True), 1.5)
    ingress.on_rtcp(artp.RtcpPacket.parse(P.rtcp_sr(Q, 2 << 32, 1000, 1, 1)))  # q is no longer forwarded
    assert sub.rtcp == []
    ingress.on_rtcp(artp.RtcpPacket.parse(P.rtcp_sr(H, 3 << 32, 703000 + 90000, 2, 2)))
    # h's 703000 went out as 5000 + 45000 (0.5 s after q's packet): SR time 793000 -> 140000
    assert sub.rtcp == [P.rtcp_sr(OUT_SSRC, 3 << 32, 140000, 2, 2 * 24)
                        + P.rtcp_sdes_cname(OUT_SSRC, rig.CNAME.encode())]


def test_no_sr_before_the_first_packet():
    ingress, rec, pub, dt, sub = single_vp8()
    ingress.on_rtcp(artp.RtcpPacket.parse(P.rtcp_sr(MEDIA, 1 << 32, 0, 0, 0)))
    assert sub.rtcp == []


def test_an_rr_for_our_sr_gives_loss_and_rtt():
    ingress, rec, dt, sub = forwarded_three()
    ntp = 0x00010002_00030004
    ingress.on_rtcp(artp.RtcpPacket.parse(P.rtcp_sr(MEDIA, ntp, 0, 0, 0)))
    rr = P.rtcp_rr(0xABC, [P.report_block(OUT_SSRC, 64, 1, 1002, 3, lsr=0x00020003, dlsr=0)])
    (packet,) = artp.RtcpPacket.parse(rr)
    dt.on_report(packet.reports[0])
    assert dt.fraction_lost == 0.25
    assert 0.0 <= dt.rtt < 1.0  # measured from when the SR was sent (wall clock)


def test_a_padding_only_probe_is_renumbered_away_and_not_nacked_upstream():
    # Chromium probes with padding-only packets on the media SSRC when RTX is not in use: they consume
    # publisher sequence numbers but are not forwarded. A gap in the subscriber's numbering is a
    # packet it NACKs forever (aiortc's jitter buffer then holds video back for 512 packets).
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    ingress.on_rtp(vp8(MEDIA, 100, 3000, 10, 1, key=True), 1.0)
    ingress.on_rtp(P.rtp(96, 101, 3000, MEDIA, b"", padding=200), 1.01)
    ingress.on_rtp(P.rtp(96, 102, 3000, MEDIA, b"", padding=200), 1.02)
    ingress.on_rtp(vp8(MEDIA, 103, 6000, 11, 1), 1.05)
    assert [rtp.parse(p).seq for p in sub.rtp] == [1000, 1001]  # no hole where the probes were
    assert ingress.dropped == {"padding": 2}
    layer = rec.layers[""]
    assert layer.rx.missing() == []  # the probes arrived: nothing to NACK upstream
    assert not any(isinstance(p, artp.RtcpRtpfbPacket) for c in pub.rtcp for p in artp.RtcpPacket.parse(c))


def test_a_retransmitted_key_frame_does_not_start_a_switch():
    # Chromium probes by resending recent packets over RTX. A resent key frame packet of the target
    # layer arrives after the packets that followed it were passed over (they were not the current
    # layer yet): switching on it would leave a hole the subscriber NACKs forever.
    ingress, rec, pub, dt, sub = simulcast()
    dt.set_target(rec.layers["h"])
    ingress.on_rtp(vp8(H, 7000, 50000, 900, 70, key=True, ext=rid_ext(b"h")), 1.0)
    ingress.on_rtp(vp8(H, 7001, 53000, 901, 71), 1.03)
    ingress.on_rtp(vp8(Q, 500, 6000, 40, 2, key=True, ext=rid_ext(b"q")), 1.04)  # q key frame, h is current
    ingress.on_rtp(vp8(Q, 501, 9000, 41, 3), 1.05)
    dt.set_target(rec.layers["q"])
    ingress.on_rtp(vp8(Q, 500, 6000, 40, 2, key=True), 1.06)  # q's key frame again, late (a probe)
    ingress.on_rtp(vp8(Q, 502, 12000, 42, 4), 1.07)
    assert dt.current is rec.layers["h"]  # still h: no switch on the late copy
    ingress.on_rtp(vp8(Q, 503, 15000, 43, 5, key=True), 1.08)  # a fresh key frame switches
    ingress.on_rtp(vp8(Q, 504, 18000, 44, 6), 1.09)
    assert dt.current is rec.layers["q"]
    seqs = [rtp.parse(p).seq for p in sub.rtp]
    assert seqs == list(range(1000, 1000 + len(seqs)))  # no hole anywhere


def test_a_long_run_forwards_every_packet_past_half_the_sequence_space():
    """16-bit sequence numbers compare only within half their space: a run whose start stayed where it
    began made every packet from 32,768 on look older than the start, and the track went silent for
    the next 32,768 packets (audio after 11 minutes, for 11 minutes). The start now trails the stream
    (a packet from before a young run's start is still refused: the tests above)."""
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    for i in range(70000):
        ingress.on_rtp(P.rtp(111, (100 + i) & 0xFFFF, (960 * i) & 0xFFFFFFFF, MEDIA, b"opus"), 1.0 + i / 50)
    assert len(sub.rtp) == 70000
    assert [rtp.parse(p).seq for p in sub.rtp[-3:]] == [(1000 + 69997) & 0xFFFF, (1000 + 69998) & 0xFFFF,
                                                        (1000 + 69999) & 0xFFFF]
