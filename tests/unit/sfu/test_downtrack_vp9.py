"""A VP9 track through Ingress and DownTrack, byte for byte, on both data paths: key pictures start a
subscriber, a simulcast switch keeps the VP9 picture id and TL0PICIDX continuous (as for VP8),
temporal layers above the subscriber's are renumbered away, and the size comes from the key
picture's scalability structure."""

from __future__ import annotations

from sfu import rtp
from sfu.layers import LayerSelector, spatial_layers
from tests.support import packets as P
from tests.unit.sfu import rig
from tests.unit.sfu.rig import OUT_SSRC

Q, H = 0x0000A001, 0x0000A002
MEDIA = 0x11111111


def vp9(ssrc: int, seq: int, ts: int, pid: int, tl0: int, tid: int = 0, key: bool = False, ext: bytes = b"",
        pt: int = 98, size: tuple[int, int] | None = None) -> bytes:
    desc = P.vp9_descriptor(picture_id=pid, predicted=not key, tid=tid, switch_up=tid > 0, tl0picidx=tl0,
                            sizes=(size,) if size else ())
    return P.rtp(pt, seq, ts, ssrc, desc + b"\x80\x49\x83\x42\x00", marker=True, ext=ext)


def out_vp9(seq: int, ts: int, pid: int, tl0: int, tid: int = 0, key: bool = False,
            size: tuple[int, int] | None = None) -> bytes:
    return vp9(OUT_SSRC, seq, ts, pid, tl0, tid, key, pt=rig.OUT_PT["VP9"], size=size)


def rid_ext(rid: bytes) -> bytes:
    return P.one_byte_ext([(4, b"0"), (10, rid)])


def test_a_vp9_subscriber_starts_on_a_key_picture_and_a_switch_continues_its_picture_numbering():
    ingress, rec, pub = rig.publish("VP9", rids=["q", "h"])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers["q"])
    ingress.on_rtp(vp9(Q, 500, 6000, 40, 2, ext=rid_ext(b"q")), 10.0)  # predicted: a start waits
    ingress.on_rtp(vp9(Q, 501, 9000, 41, 3, key=True, size=(320, 180)), 10.0625)
    ingress.on_rtp(vp9(Q, 502, 12000, 42, 4), 10.125)
    ingress.on_rtp(vp9(H, 7000, 50000, 900, 70, ext=rid_ext(b"h")), 10.1875)
    dt.set_target(rec.layers["h"])
    ingress.on_rtp(vp9(H, 7001, 53000, 901, 77, key=True, size=(640, 360)), 10.5)
    ingress.on_rtp(vp9(Q, 503, 15000, 43, 5), 10.5)  # q is over
    ingress.on_rtp(vp9(H, 7002, 56000, 902, 78), 10.5625)
    assert sub.rtp == [
        out_vp9(1000, 5000, 41, 3, key=True, size=(320, 180)),
        out_vp9(1001, 8000, 42, 4),
        # the switch: seq + 1, ts + the wall-clock gap (0.375 s), picture id + 1, TL0PICIDX + 1
        out_vp9(1002, 8000 + 33750, 43, 5, key=True, size=(640, 360)),
        out_vp9(1003, 8000 + 33750 + 3000, 44, 6),
    ]
    assert {rid: (x.width, x.height) for rid, x in rec.layers.items()} == {"q": (320, 180), "h": (640, 360)}
    assert [x.keyframes for x in rec.layers.values()] == [1, 1]


def test_vp9_temporal_layers_above_the_subscribers_are_renumbered_away():
    ingress, rec, pub = rig.publish("VP9", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    dt.max_tid = 0
    tids = [0, 2, 1, 2, 0]  # L1T3
    for i, tid in enumerate(tids):
        ingress.on_rtp(vp9(MEDIA, 200 + i, 3000 * i, 10 + i, 1 + (i + 3) // 4, tid=tid, key=i == 0), 1.0 + i / 32)
    assert sub.rtp == [out_vp9(1000, 5000, 10, 1, key=True), out_vp9(1001, 5000 + 12000, 14, 2)]
    assert dt.temporal_drops == 3


def test_a_nack_of_a_vp9_packet_is_resent_as_it_was_sent():
    """The retransmission is rebuilt from the layer's ring with the same picture numbering offsets."""
    ingress, rec, pub = rig.publish("VP9", rids=["q", "h"])
    dt, sub = rig.subscribe(rec)
    ingress.on_rtp(vp9(Q, 1, 0, 100, 9, ext=rid_ext(b"q")), 1.0)
    dt.set_target(rec.layers["q"])
    ingress.on_rtp(vp9(Q, 2, 3000, 101, 10, key=True), 1.0)
    ingress.on_rtp(vp9(H, 1, 0, 5000, 60, ext=rid_ext(b"h")), 1.0)
    dt.set_target(rec.layers["h"])
    ingress.on_rtp(vp9(H, 2, 3000, 5001, 61, key=True), 1.03125)
    ingress.on_rtp(vp9(H, 3, 6000, 5002, 62), 1.0625)
    sent = [out_vp9(1000, 5000, 101, 10, key=True), out_vp9(1001, 5000 + 2812, 102, 11, key=True),
            out_vp9(1002, 5000 + 2812 + 3000, 103, 12)]
    assert sub.rtp == sent
    dt.on_nack([1001, 1002], 1.2)
    assert sub.rtp[3:] == [P.rtx(sent[i], rig.OUT_RTX_PT["VP9"], 300 + i, rig.OUT_RTX_SSRC) for i in (1, 2)]


# --- VP9 SVC: one stream, spatial layers as frames of each picture ----------------------------------


SIZES = ((320, 180), (640, 360), (1280, 720))


def svc_picture(seq: int, pid: int, tl0: int, key: bool, layers: int = 3, ts: int | None = None,
                sizes: tuple[tuple[int, int], ...] = SIZES) -> list[bytes]:
    """One picture of Chromium's L3T1_KEY: a frame per spatial layer, each one packet; the key picture's
    upper frames predict from the layer below (D), the others only from their own layer's past (P).
    The RTP marker ends the picture (its top layer's frame)."""
    out = []
    for sid in range(layers):
        desc = P.vp9_descriptor(picture_id=pid, predicted=not key, tid=0, sid=sid, inter_layer=key and sid > 0,
                                tl0picidx=tl0, sizes=sizes[:layers] if key and sid == 0 else ())
        out.append(P.rtp(98, seq + sid, pid * 3000 if ts is None else ts, MEDIA, desc + bytes([sid]) * 6,
                         marker=sid == layers - 1))
    return out


def forwarded(packets: list[bytes]) -> list[tuple[int, int, bool, int]]:
    """(seq, picture id, marker, spatial id) of what a subscriber got."""
    out = []
    for p in packets:
        view = rtp.parse(p)
        d = rtp.vp9_descriptor(p[view.payload_start : view.payload_end])
        out.append((view.seq, d.picture_id, view.marker, d.sid))
    return out


def svc():
    ingress, rec, pub = rig.publish("VP9", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_target(rec.layers[""])
    return ingress, rec, pub, dt, sub


def test_an_svc_subscriber_gets_the_spatial_layers_up_to_its_own_with_the_picture_ended_there():
    ingress, rec, pub, dt, sub = svc()
    dt.set_spatial(1)
    for i in range(3):
        for p in svc_picture(10 + 3 * i, 40 + i, 5, key=i == 0):
            ingress.on_rtp(p, 1.0 + i / 30)
    assert forwarded(sub.rtp) == [(1000, 40, False, 0), (1001, 40, True, 1), (1002, 41, False, 0),
                                  (1003, 41, True, 1), (1004, 42, False, 0), (1005, 42, True, 1)]
    assert (dt.max_sid, dt.spatial_drops) == (1, 3)
    assert (rec.layers[""].width, rec.layers[""].height) == (1280, 720)  # the stream's top layer


def test_an_svc_downswitch_is_at_the_next_picture_and_asks_for_nothing():
    ingress, rec, pub, dt, sub = svc()
    for p in svc_picture(10, 40, 5, key=True):
        ingress.on_rtp(p, 1.0)
    plis = len(pub.rtcp)
    dt.set_spatial(0)
    for p in svc_picture(13, 41, 5, key=False):
        ingress.on_rtp(p, 1.04)
    assert forwarded(sub.rtp) == [(1000, 40, False, 0), (1001, 40, False, 1), (1002, 40, True, 2),
                                  (1003, 41, True, 0)]
    assert len(pub.rtcp) == plis  # no key picture asked for
    assert not dt.waiting_for_keyframe


def test_an_svc_upswitch_waits_for_a_key_picture_and_asks_for_one():
    ingress, rec, pub, dt, sub = svc()
    dt.set_spatial(0)
    for p in svc_picture(10, 40, 5, key=True):
        ingress.on_rtp(p, 1.0)
    dt.set_spatial(2)
    assert dt.waiting_for_keyframe and pub.rtcp[-1] == P.rtcp_pli(rig.RTCP_SSRC, MEDIA)
    for p in svc_picture(13, 41, 5, key=False):  # predicted: its upper frames would miss references
        ingress.on_rtp(p, 1.04)
    for p in svc_picture(16, 42, 6, key=True):
        ingress.on_rtp(p, 1.08)
    assert forwarded(sub.rtp) == [(1000, 40, True, 0), (1001, 41, True, 0), (1002, 42, False, 0),
                                  (1003, 42, False, 1), (1004, 42, True, 2)]
    assert dt.max_sid == 2 and not dt.waiting_for_keyframe


def test_a_nacked_svc_packet_comes_back_with_the_marker_it_was_sent_with():
    ingress, rec, pub, dt, sub = svc()
    dt.set_spatial(0)
    for p in svc_picture(10, 40, 5, key=True) + svc_picture(13, 41, 5, key=False):
        ingress.on_rtp(p, 1.0)
    assert forwarded(sub.rtp) == [(1000, 40, True, 0), (1001, 41, True, 0)]
    dt.on_nack([1000], 1.2)
    assert sub.rtp[2:] == [P.rtx(sub.rtp[0], rig.OUT_RTX_PT["VP9"], 301, rig.OUT_RTX_SSRC)]


def test_a_nack_after_a_spatial_upswitch_gets_the_marker_the_packet_was_sent_with():
    """Capped at layer 0, a picture's layer-0 packet ends the subscriber's picture (marker); after an
    upswitch the same packet, NACKed, still does: the marker is the one sent, not the one the
    layer forwarded now would give it."""
    ingress, rec, pub, dt, sub = svc()
    dt.set_spatial(0)
    for p in svc_picture(10, 40, 5, key=True):
        ingress.on_rtp(p, 1.0)
    dt.set_spatial(2)
    for p in svc_picture(13, 41, 6, key=True):
        ingress.on_rtp(p, 1.04)
    assert dt.max_sid == 2 and forwarded(sub.rtp)[0] == (1000, 40, True, 0)
    dt.on_nack([1000], 1.2)
    assert sub.rtp[-1] == P.rtx(sub.rtp[0], rig.OUT_RTX_PT["VP9"], 301, rig.OUT_RTX_SSRC)


def test_a_vp8_track_ignores_a_spatial_cap():
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(MEDIA, "media")])
    dt, sub = rig.subscribe(rec)
    dt.set_spatial(0)
    assert dt.target_sid == dt.max_sid == 7


def test_the_selector_caps_an_svc_subscriber_at_the_spatial_layer_it_asks_for_by_name_or_size():
    """The key picture's scalability structure names three spatial layers; each one's rate is measured
    from the packets; a subscriber asking for low, medium, high or a rendered size gets that spatial
    layer (its cap), like a simulcast layer."""
    ingress, rec, pub, dt, sub = svc()
    for i in range(40):  # 1.3 s of pictures: every spatial layer has a measured rate
        for p in svc_picture(10 + 3 * i, 40 + i, 5, key=i == 0):
            ingress.on_rtp(p, 1.0 + i / 30)
    stream = rec.layers[""]
    assert stream.spatial_sizes == ((320, 180), (640, 360), (1280, 720))
    assert all(stream.spatial_bitrates[:3]) and not any(stream.spatial_bitrates[3:])
    selector = LayerSelector()
    selector.tracks = lambda: [rec]  # (what start() sets; the test evaluates on its own clock)
    for request, sid in (("low", 0), ("high", 2), ("medium", 1), ((640, 360), 1), ((200, 100), 0)):
        if isinstance(request, str):
            dt.request_layer, dt.request_width, dt.request_height = request, None, None
        else:
            dt.request_layer, (dt.request_width, dt.request_height) = None, request
        selector.evaluate(1.0 + 40 / 30)
        assert (dt.target, dt.target_sid) == (stream, sid), request
    assert [x.index for x in spatial_layers(rec)] == [0, 1, 2]


def test_svc_dynacast_asks_the_publisher_for_the_spatial_layers_anyone_wants():
    """Like simulcast dynacast, per spatial layer: the publisher hears how many it must encode (the
    lowest ones), all of them again as soon as a subscriber asks for the top one, and none when
    nobody subscribes. Requests are judged against the stream with all its layers: after dynacast
    the stream has fewer, and the layer asked for must still be asked for."""
    ingress, rec, pub = rig.publish("VP9", ssrcs=[(MEDIA, "media")])
    sent: list = []
    selector = LayerSelector(notify=lambda who, msg: sent.append((who, msg)))
    selector.tracks = lambda: [rec]
    low, _ = rig.subscribe(rec)
    for p in svc_picture(10, 40, 5, key=True):
        ingress.on_rtp(p, 1.0)
    selector.evaluate(1.05)  # nobody asked for anything yet: everything the publisher can
    assert sent == [("PA_pub", {"type": "dynacast", "track": rec.id, "active": [""], "spatial": 8})]
    low.request_layer = "low"
    selector.evaluate(1.1)
    assert sent[1:] == [("PA_pub", {"type": "dynacast", "track": rec.id, "active": [""], "spatial": 1})]
    # the publisher now encodes one spatial layer: its key picture says so
    for p in svc_picture(13, 41, 6, key=True, layers=1):
        ingress.on_rtp(p, 1.2)
    assert rec.layers[""].spatial_sizes == ()
    selector.evaluate(1.3)
    assert len(sent) == 2  # nothing new to say
    high, _ = rig.subscribe(rec)
    high.request_layer = "high"
    selector.evaluate(1.4)
    assert sent[-1][1]["spatial"] == 8  # the top layer seen: all it can, though the stream has only one now
    # all three again, smaller (the encoder adapted): a size request is judged against these now
    for p in svc_picture(16, 42, 7, key=True, sizes=((160, 90), (320, 180), (640, 360))):
        ingress.on_rtp(p, 1.45)
    high.request_layer, high.request_width, high.request_height = None, 300, 170
    selector.evaluate(1.46)
    assert sent[-1][1]["spatial"] == 2  # 320x180 covers the tile (of the old sizes, 320x180 was the lowest)
    rec.downtracks.clear()
    selector.evaluate(1.5)
    assert sent[-1][1] == {"type": "dynacast", "track": rec.id, "active": [], "spatial": 0}


def test_a_spatial_switch_is_told_to_the_subscriber_once_it_has_happened():
    ingress, rec, pub, dt, sub = svc()
    told = []
    selector = LayerSelector(notify=lambda who, msg: told.append((who, msg)) if who == "PA_sub" else None)
    selector.tracks = lambda: [rec]
    for p in svc_picture(10, 40, 5, key=True):
        ingress.on_rtp(p, 1.0)
    selector.evaluate(1.1)  # the first layer forwarded is no change
    dt.request_layer = "low"
    selector.evaluate(1.2)
    assert (dt.target_sid, dt.max_sid, told) == (0, 7, [])  # decided (all until now); the next picture switches
    for p in svc_picture(13, 41, 5, key=False):
        ingress.on_rtp(p, 1.25)
    selector.evaluate(1.3)
    assert told == [("PA_sub", {"type": "layer_changed", "track": rec.id, "layer": "", "spatial": 0,
                                "reason": "requested"})]
    selector.evaluate(1.4)
    assert len(told) == 1
