"""An AV1 SVC track through Ingress and DownTrack, byte for byte, on both data paths: the layers come
from the dependency descriptor (Chromium's, as captured), a subscriber gets the spatial layers up to
its own with the marker on the last one, the descriptor goes with every packet it forwards (a key
frame's, over 16 bytes, in the two-byte extension form), and the key frame's structure gives the
stream's sizes."""

from __future__ import annotations

from sfu import rtp
from sfu.dependency_descriptor import URI_DD
from sfu.metrics import STATS
from tests.support import packets as P
from tests.unit.sfu import rig
from tests.unit.sfu.test_dependency_descriptor import KEY

MEDIA = 0x11111111
DD_IN, DD_OUT = 13, 6  # Chromium's id, and the subscriber's
EXT_IN = {**rig.VIDEO_EXT, DD_IN: URI_DD}
EXT_OUT = {**rig.OUT_EXT, URI_DD: DD_OUT}
# Chromium's mandatory-only descriptors of L3T3_KEY's temporal layer 0 frames in spatial layers 0..2
# (templates 1, 6 and 11 with offset 0), one packet each
TEMPLATE = {0: 1, 1: 6, 2: 11}


def av1_picture(seq: int, frame: int, key: bool) -> list[bytes]:
    """One temporal unit: a frame per spatial layer, each one packet; the key one's first frame has
    the structure (two-byte form) and the aggregation header's N bit. The marker ends the unit."""
    out = []
    for sid in range(3):
        if key and sid == 0:
            value = bytes([0xC0]) + (frame & 0xFFFF).to_bytes(2, "big") + KEY[3:]
            ext = P.two_byte_ext([(4, b"0"), (DD_IN, value)])
        else:
            value = bytes([0xC0 | TEMPLATE[sid]]) + ((frame + sid) & 0xFFFF).to_bytes(2, "big")
            ext = P.one_byte_ext([(4, b"0"), (DD_IN, value)])
        aggregation = 0x18 if key and sid == 0 else 0x10  # W = 1, N on the key frame
        out.append(P.rtp(45, seq + sid, frame * 1000, MEDIA, bytes([aggregation]) + bytes([sid]) * 6,
                         marker=sid == 2, ext=ext))
    return out


def av1():
    ingress, rec, pub = rig.publish("AV1", ssrcs=[(MEDIA, "media")], ext=EXT_IN)
    dt, sub = rig.subscribe(rec, ext_ids=EXT_OUT)
    dt.set_target(rec.layers[""])
    return ingress, rec, pub, dt, sub


def forwarded(packets: list[bytes]) -> list[tuple[int, bool, int, bytes]]:
    """(seq, marker, spatial layer, the dependency descriptor under the subscriber's id)."""
    out = []
    for p in packets:
        view = rtp.parse(p)
        out.append((view.seq, view.marker, p[view.payload_start + 1], rtp.extension(p, view, DD_OUT)))
    return out


def test_an_av1_subscriber_gets_the_spatial_layers_up_to_its_own_with_their_descriptors():
    ingress, rec, pub, dt, sub = av1()
    dt.set_spatial(1)
    sent = av1_picture(10, 100, key=True) + av1_picture(13, 103, key=False)
    for i, p in enumerate(sent):
        ingress.on_rtp(p, 1.0 + i / 100)
    dds = [rtp.extension(p, rtp.parse(p), DD_IN) for p in sent]
    assert forwarded(sub.rtp) == [(1000, False, 0, dds[0]), (1001, True, 1, dds[1]),
                                  (1002, False, 0, dds[3]), (1003, True, 1, dds[4])]
    assert not rtp.parse(sub.rtp[0]).one_byte and rtp.parse(sub.rtp[1]).one_byte  # each in its own form
    assert (dt.max_sid, dt.spatial_drops) == (1, 2)
    stream = rec.layers[""]
    assert (stream.width, stream.height, stream.spatial_sizes) == (960, 540, ((240, 135), (480, 270), (960, 540)))
    assert stream.keyframes == 1


def test_an_av1_downswitch_is_at_the_next_picture_and_an_upswitch_waits_for_a_key_one():
    ingress, rec, pub, dt, sub = av1()
    for p in av1_picture(10, 100, key=True):
        ingress.on_rtp(p, 1.0)
    plis = len(pub.rtcp)
    dt.set_spatial(0)
    for p in av1_picture(13, 103, key=False):
        ingress.on_rtp(p, 1.04)
    assert len(pub.rtcp) == plis  # down: nothing asked for
    dt.set_spatial(2)
    assert dt.waiting_for_keyframe and pub.rtcp[-1] == P.rtcp_pli(rig.RTCP_SSRC, MEDIA)
    for p in av1_picture(16, 106, key=False) + av1_picture(19, 109, key=True):
        ingress.on_rtp(p, 1.08)
    assert [(seq, marker, sid) for seq, marker, sid, _ in forwarded(sub.rtp)] == [
        (1000, False, 0), (1001, False, 1), (1002, True, 2),  # everything
        (1003, True, 0),  # down at once: layer 0 ends the picture
        (1004, True, 0),  # up asked for: still layer 0 until the key picture
        (1005, False, 0), (1006, False, 1), (1007, True, 2)]


def test_a_nacked_av1_packet_comes_back_with_the_marker_it_was_sent_with():
    """A subscriber capped at layer 1 gets its picture's end marked on the layer-1 packet, which the
    publisher sent without one: a NACK for it is answered with the packet as sent, marker and all."""
    ingress, rec, pub, dt, sub = av1()
    dt.set_spatial(1)
    for p in av1_picture(10, 100, key=True):
        ingress.on_rtp(p, 1.0)
    assert [(seq, marker) for seq, marker, _, _ in forwarded(sub.rtp)] == [(1000, False), (1001, True)]
    dt.on_nack([1001, 1000], 1.2)
    header = [rtp.parse(p).payload_start for p in sub.rtp[:2]]  # (fixed header and extensions)
    assert sub.rtp[2:] == [P.rtx(sub.rtp[1], rig.OUT_RTX_PT["AV1"], 301, rig.OUT_RTX_SSRC, header[1]),
                           P.rtx(sub.rtp[0], rig.OUT_RTX_PT["AV1"], 302, rig.OUT_RTX_SSRC, header[0])]


def test_an_av1_packet_whose_descriptor_cannot_be_read_is_dropped_and_counted():
    ingress, rec, pub, dt, sub = av1()
    before = dict(STATS.dropped)
    ingress.on_rtp(P.rtp(45, 10, 0, MEDIA, b"\x10" + b"\x00" * 6, ext=P.one_byte_ext([(DD_IN, b"\xc5\x00\x02")])),
                   1.0)  # no structure known yet
    ingress.on_rtp(P.rtp(45, 11, 0, MEDIA, b"\x18" + b"\x00" * 6, ext=P.one_byte_ext([(DD_IN, KEY[:9])])), 1.0)
    grew = {k: v - before.get(k, 0) for k, v in STATS.dropped.items() if v != before.get(k, 0)}
    assert grew == {"dd_no_structure": 1, "dd_truncated": 1} and sub.rtp == []


def test_av1_without_a_descriptor_is_one_layer_whose_key_frames_the_aggregation_header_marks():
    ingress, rec, pub = rig.publish("AV1", ssrcs=[(MEDIA, "media")])  # the DD not negotiated
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    mid = P.one_byte_ext([(4, b"0")])
    # a delta frame (waits), then a key frame in two packets (N, then Z: a continuation), a delta
    for seq, aggregation in ((10, 0x10), (11, 0x58), (12, 0x90), (13, 0x10)):
        ingress.on_rtp(P.rtp(45, seq, seq * 3000, MEDIA, bytes([aggregation]) + b"\x00" * 6, ext=mid), 1.0 + seq / 30)
    assert [rtp.parse(p).seq for p in sub.rtp] == [1000, 1001, 1002]
    assert rec.layers[""].keyframes == 1
