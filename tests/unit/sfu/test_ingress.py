"""Ingress.on_rtp on hand-built packets: learning SSRCs, RTX unwrap, counted drops, key frames."""

from __future__ import annotations

import pytest

from sfu import h264
from tests.support import packets as P
from tests.unit.sfu import rig
from tests.unit.sfu.rig import OUT_SSRC

MEDIA, RTX = 0x11111111, 0x22222222
Q, H, F = 0x0000A001, 0x0000A002, 0x0000A003
Q_RTX = 0x0000B001


def key(ssrc: int, seq: int, ts: int = 0, ext: bytes = b"", width: int = 640, height: int = 360) -> bytes:
    return P.rtp(96, seq, ts, ssrc, P.vp8_payload(keyframe=True, width=width, height=height, picture_id=seq,
                                                  tl0picidx=0, tid=0), ext=ext)


def delta(ssrc: int, seq: int, ts: int = 0, ext: bytes = b"", pt: int = 96) -> bytes:
    return P.rtp(pt, seq, ts, ssrc, P.vp8_payload(picture_id=seq, tl0picidx=0, tid=0), ext=ext)


def mid_rid(rid: bytes, repaired: bool = False) -> bytes:
    return P.one_byte_ext([(4, b"0"), (11 if repaired else 10, rid)])


def test_simulcast_layers_are_learnt_from_mid_and_rid():
    ingress, rec, pub = rig.publish("VP8", rids=["q", "h", "f"])
    for ssrc, rid in ((Q, b"q"), (H, b"h"), (F, b"f")):
        ingress.on_rtp(delta(ssrc, 1, ext=mid_rid(rid)), 1.0)
    ingress.on_rtp(P.rtp(97, 1, 0, Q_RTX, b"\x00\x01" + b"x" * 10, ext=mid_rid(b"q", repaired=True)), 1.0)
    assert {rid: (layer.ssrc, layer.rtx_ssrc) for rid, layer in rec.layers.items()} == \
        {"q": (Q, Q_RTX), "h": (H, None), "f": (F, None)}
    assert (rec.simulcast, [layer.index for layer in rec.layers.values()]) == (True, [0, 1, 2])
    assert ingress.dropped == {}


def test_a_rid_not_in_the_offer_is_a_counted_drop():
    ingress, rec, pub = rig.publish("VP8", rids=["q", "h"])
    ingress.on_rtp(delta(F, 1, ext=mid_rid(b"f")), 1.0)
    ingress.on_rtp(delta(F, 2), 1.0)
    assert ingress.dropped == {"unknown_rid": 1, "unknown_ssrc": 1}
    assert sorted(rec.layers) == ["h", "q"]


def test_rtx_is_unwrapped_to_the_original_packet():
    # RFC 4588: the publisher resends seq 11 on its RTX SSRC; the subscriber gets it as the media
    # stream's packet 11 would have gone out (our numbering), not as RTX
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media"), (RTX, "rtx")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    ingress.on_rtp(key(MEDIA, 10, 3000), 1.0)
    ingress.on_rtp(delta(MEDIA, 12, 9000), 1.0625)
    lost = delta(MEDIA, 11, 6000)
    copy = P.rtx(lost, 97, 556, RTX)
    assert copy == P.rtp(97, 556, 6000, RTX, b"\x00\x0b" + lost[12:])
    ingress.on_rtp(P.rtp(97, 555, 6000, RTX, b"\x00\x0b" + lost[12:], padding=3), 1.125)  # padded
    assert sub.rtp[2] == P.rtp(96, 1001, 8000, OUT_SSRC, P.vp8_payload(picture_id=11, tl0picidx=0, tid=0))
    # the same packet again is a copy of one we have (how publishers probe): not forwarded, not counted
    ingress.on_rtp(copy, 1.1875)
    assert len(sub.rtp) == 3
    assert rec.layers[""].rx.received == 3 and rec.layers[""].rx.missing() == []


@pytest.mark.parametrize("name, packets, reason", [
    ("not RTP", [b"\x00" * 20], "bad_version"),
    ("short", [b"\x80\x60\x00"], "truncated_header"),
    ("bad padding", [bytes([0xA0]) + delta(MEDIA, 1)[1:-1] + b"\xff"], "bad_padding"),
    ("padding-only probe", [P.rtp(96, 1, 0, MEDIA, b"", padding=200)], "padding"),
    ("RTX padding probe", [key(MEDIA, 1), P.rtp(97, 1, 0, RTX, b"\x00\x01", padding=100)], "padding"),
    ("unknown SSRC, PT shared by nothing", [P.rtp(100, 1, 0, 0x999, b"x")], "unknown_ssrc"),
    ("a second media SSRC without RID", [key(MEDIA, 1), delta(0x999, 1, ext=P.one_byte_ext([(4, b"0")]))],
     "unknown_ssrc"),
    ("truncated VP8 descriptor", [P.rtp(96, 1, 0, MEDIA, b"\x90\x80")], "vp8_truncated_descriptor"),
    ("empty VP8 payload with padding", [P.rtp(96, 1, 0, MEDIA, b"", padding=1)], "padding"),
    ("extension element overrunning its block",
     [P.rtp(96, 1, 0, 0x999, b"x", ext=P.ext_block(P.ONE_BYTE_PROFILE, b"\x4f\x30"))], "bad_extension_length"),
    ("sequence jump", [key(MEDIA, 1), delta(MEDIA, 20000)], "seq_jump"),
])
def test_every_defect_is_a_counted_drop(name, packets, reason):
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media"), (RTX, "rtx")])
    for p in packets:
        ingress.on_rtp(p, 1.0)
    assert ingress.dropped == {reason: 1}, name


def test_rtx_before_any_media_and_rtx_without_apt_are_dropped():
    ingress, rec, pub = rig.publish("VP8", rids=["q", "h"])
    ingress.on_rtp(P.rtp(97, 1, 0, Q_RTX, b"\x00\x05abc", ext=mid_rid(b"q", repaired=True)), 1.0)
    assert ingress.dropped == {"rtx_before_media": 1}
    ingress.on_rtp(delta(Q, 1, ext=mid_rid(b"q")), 1.0)
    rec.ingress.slots["0"].codecs[97].parameters["apt"] = "x"
    ingress.on_rtp(P.rtp(97, 2, 0, Q_RTX, b"\x00\x05abc"), 1.0)
    assert ingress.dropped == {"rtx_before_media": 1, "rtx_unknown_apt": 1}


def test_a_confirmed_sequence_restart_continues_the_subscribers_numbering():
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    ingress.on_rtp(P.rtp(111, 100, 960, MEDIA, b"a"), 1.0)
    ingress.on_rtp(P.rtp(111, 40000, 1920, MEDIA, b"b"), 1.015625)  # a jump: dropped
    ingress.on_rtp(P.rtp(111, 40001, 2880, MEDIA, b"c"), 1.03125)  # continues it: a restart
    assert ingress.dropped == {"seq_jump": 1}
    assert sub.rtp == [P.rtp(111, 1000, 5000, OUT_SSRC, b"a"), P.rtp(111, 1001, 5000 + 1500, OUT_SSRC, b"c")]


def test_vp8_keyframes_are_counted_with_their_dimensions():
    ingress, rec, pub = rig.publish("VP8", rids=["q", "h"])
    ingress.on_rtp(key(Q, 1, ext=mid_rid(b"q"), width=320, height=180), 1.0)
    ingress.on_rtp(delta(Q, 2), 1.0)
    ingress.on_rtp(key(H, 1, ext=mid_rid(b"h"), width=1280, height=720), 2.5)
    q, h = rec.layers["q"], rec.layers["h"]
    assert (q.keyframes, q.width, q.height, q.packets) == (1, 320, 180, 2)
    assert (h.keyframes, h.width, h.height, h.last_keyframe_at) == (1, 1280, 720, 2.5)


def test_vp8_scaling_bits_are_not_part_of_the_dimensions():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    payload = P.vp8_descriptor(picture_id=1) + P.vp8_keyframe_header(1280, 720, hscale=2, vscale=1)
    ingress.on_rtp(P.rtp(96, 1, 0, MEDIA, payload), 1.0)
    layer = rec.layers[""]
    assert (layer.keyframes, layer.width, layer.height) == (1, 1280, 720)


def test_h264_keyframes_are_counted_with_the_dimensions_of_their_sps():
    # libx264's SPS for 960x540 (34 macroblock rows, 4 rows cropped); libwebrtc sends it with every
    # IDR picture, in a STAP-A before the slice
    sps = bytes.fromhex("6742c01fda03c045fb84000003000400000300f23c60ca80")
    ingress, rec, pub = rig.publish("H264", ssrcs=[(MEDIA, "media")])
    ingress.on_rtp(P.rtp(102, 1, 0, MEDIA, P.stap_a(sps, P.PPS, P.IDR), marker=True), 1.0)
    ingress.on_rtp(P.rtp(102, 2, 3000, MEDIA, P.NON_IDR, marker=True), 1.1)
    layer = rec.layers[""]
    assert (layer.keyframes, layer.width, layer.height) == (1, 960, 540)
    # an IDR without an SPS in the packet leaves the size as it was
    ingress.on_rtp(P.rtp(102, 3, 6000, MEDIA, P.IDR, marker=True), 1.2)
    assert (layer.keyframes, layer.width, layer.height) == (2, 960, 540)


def test_an_h264_sps_is_read_when_it_changes_and_at_most_every_half_second(monkeypatch):
    """Whether a packet is a key frame is the publisher's to say: a flood of them must not make the
    server parse an SPS per packet."""
    sps_960 = bytes.fromhex("6742c01fda03c045fb84000003000400000300f23c60ca80")
    sps_240 = bytes.fromhex("6742c00cda0f13f9a10000030001000003003c8f142aa0")
    parsed = []
    real = h264.sps_dimensions
    monkeypatch.setattr(h264, "sps_dimensions", lambda sps: parsed.append(sps) or real(sps))
    ingress, rec, pub = rig.publish("H264", ssrcs=[(MEDIA, "media")])
    layer = rec.layers[""]
    for seq, (sps, at) in enumerate([(sps_960, 1.0), (sps_960, 1.1), (sps_960, 2.0),  # the same: read once
                                     (sps_240, 2.2),  # another, 1.2 s later: read
                                     (sps_960, 2.3),  # another, 0.1 s later: not yet
                                     (sps_960, 2.8)], start=1):  # 0.6 s later: read
        ingress.on_rtp(P.rtp(102, seq, seq * 3000, MEDIA, P.stap_a(sps, P.PPS, P.IDR), marker=True), at)
        if at == 2.3:
            assert (layer.width, layer.height) == (240, 134)
    assert parsed == [sps_960, sps_240, sps_960]
    assert (layer.keyframes, layer.width, layer.height) == (6, 960, 540)


@pytest.mark.parametrize("payload, keyframe", [
    (P.stap_a(P.SPS, P.PPS, P.IDR), True),
    (P.fu_a(P.IDR, start=True, end=False), True),
    (P.IDR, True),
    (P.NON_IDR, False),
    (P.fu_a(P.IDR, start=False, end=True), False),
])
def test_h264_keyframes_start_a_downtrack(payload, keyframe):
    ingress, rec, pub = rig.publish("H264", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    ingress.on_rtp(P.rtp(102, 7, 90000, MEDIA, payload, marker=True), 1.0)
    assert rec.layers[""].keyframes == int(keyframe)
    assert sub.rtp == ([P.rtp(102, 1000, 5000, OUT_SSRC, payload, marker=True)] if keyframe else [])


def test_audio_levels_reach_the_active_speaker_callback():
    levels = []
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")],
                                    on_audio_level=lambda who, level, at: levels.append((who, level, at)))
    ingress.on_rtp(P.rtp(111, 1, 0, MEDIA, b"a", ext=P.one_byte_ext([(1, b"\x9e")])), 3.0)
    ingress.on_rtp(P.rtp(111, 2, 0, MEDIA, b"a", ext=P.one_byte_ext([(4, b"0")])), 3.5)  # no level element
    ingress.on_rtp(P.rtp(111, 3, 0, MEDIA, b"a"), 4.0)
    assert levels == [("PA_pub", 30, 3.0)]


def test_a_muted_track_forwards_nothing_but_keeps_its_statistics():
    ingress, rec, pub = rig.publish("opus", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    rec.muted = True
    ingress.on_rtp(P.rtp(111, 1, 0, MEDIA, b"a"), 1.0)
    assert (sub.rtp, rec.layers[""].packets, rec.layers[""].bytes) == ([], 1, 13)
