"""A VP9 track through Ingress and DownTrack, byte for byte, on both data paths: key pictures start a
subscriber, a simulcast switch keeps the VP9 picture id and TL0PICIDX continuous (as for VP8),
temporal layers above the subscriber's are renumbered away, and the size comes from the key
picture's scalability structure."""

from __future__ import annotations

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
