"""The VP9 payload descriptor (RFC 9628 §4.2) as sfu.rtp and its C twin read it: picture numbering
where a DownTrack rewrites it, layer indices, key pictures, the scalability structure's sizes, and a
precise RtpError for every way a descriptor can be cut short or overlong."""

from __future__ import annotations

import pytest

from sfu import _native, rtp
from tests.support import packets as P
from tests.support.parsers import VP9

PARSERS = {"python": rtp.vp9_descriptor, "native": _native.vp9_descriptor}


@pytest.fixture
def parse(data_path: str):
    """sfu.rtp's parser on the Python data path, its C twin on the native one."""
    return PARSERS[data_path]


def fields(d) -> dict:
    return {f: getattr(d, f) for f in VP9}


def test_a_key_picture_of_chromiums_non_flexible_mode(parse) -> None:
    """What Chromium sends first with one spatial layer and three temporal ones (L1T3): picture id,
    layer indices, TL0PICIDX, and a scalability structure with the size and the picture group."""
    desc = P.vp9_descriptor(picture_id=0x1234, tid=0, switch_up=False, tl0picidx=200, sizes=((1280, 720),),
                            group=((0, False, (4,)), (2, True, (1,)), (1, True, (2,)), (2, True, (1,))))
    d = parse(desc + b"\x82\x49\x83")
    assert fields(d) == {"start": True, "keyframe": True, "picture_id": 0x1234, "picture_id_pos": 1,
                         "picture_id_bits": 15, "tl0picidx": 200, "tl0picidx_pos": 4, "tid": 0, "layer_sync": False,
                         "size": len(desc), "sid": 0, "end": True, "flexible": False, "inter_layer": False,
                         "width": 1280, "height": 720, "ss_pos": 5}


def test_a_predicted_upper_layer_frame_is_neither_a_start_nor_a_key(parse) -> None:
    d = parse(P.vp9_descriptor(picture_id=5, picture_id_bits=7, predicted=True, tid=2, switch_up=True, sid=1,
                               inter_layer=True, tl0picidx=9, begin=True, end=False) + b"\x00")
    assert (d.start, d.keyframe, d.picture_id, d.picture_id_bits, d.tid, d.layer_sync, d.sid, d.inter_layer,
            d.end, d.tl0picidx, d.tl0picidx_pos) == (False, False, 5, 7, 2, True, 1, True, False, 9, 3)
    # the spatial base of a predicted picture starts it, but is no key picture
    d = parse(P.vp9_descriptor(picture_id=6, predicted=True, tid=0, tl0picidx=10) + b"\x00")
    assert (d.start, d.keyframe) == (True, False)


def test_the_largest_spatial_layer_gives_the_size_and_each_layer_has_its_own(parse) -> None:
    """L3T3_KEY's key picture: three sizes; the track's size is its top layer's."""
    desc = P.vp9_descriptor(picture_id=1, tid=0, tl0picidx=0, sizes=((320, 180), (640, 360), (1280, 720)))
    d = parse(desc)
    assert (d.width, d.height, d.size) == (1280, 720, len(desc))
    assert rtp.vp9_spatial_sizes(desc, d) == ((320, 180), (640, 360), (1280, 720))
    # a structure without sizes (Y = 0), and none at all
    bare = P.vp9_descriptor(picture_id=1, tid=0, tl0picidx=0, group=((0, False, ()),), layers=3)
    assert rtp.vp9_spatial_sizes(bare, parse(bare)) == ()
    plain = P.vp9_descriptor(picture_id=2, predicted=True, tid=0, tl0picidx=1)
    assert rtp.vp9_spatial_sizes(plain, parse(plain)) == ()


def test_flexible_mode_has_references_and_no_tl0picidx(parse) -> None:
    desc = P.vp9_descriptor(picture_id=77, predicted=True, tid=1, sid=0, references=(1, 3, 5))
    d = parse(desc + b"\x01")
    assert (d.flexible, d.tl0picidx, d.tl0picidx_pos, d.size, d.keyframe) == (True, -1, 0, len(desc), False)


def test_a_descriptor_without_optional_fields(parse) -> None:
    d = parse(bytes([0x0C]) + b"\x00")  # B, E: a whole picture, no numbering at all
    assert (d.start, d.keyframe, d.picture_id, d.picture_id_pos, d.tl0picidx, d.size) == (True, True, -1, 0, -1, 1)


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "vp9_empty_payload"),
    (bytes([0x80]), "vp9_truncated_descriptor"),  # I without a picture id
    (bytes([0x80, 0x81]), "vp9_truncated_descriptor"),  # M without the second byte
    (bytes([0x28]), "vp9_truncated_descriptor"),  # L without layer indices
    (bytes([0x28, 0x00]), "vp9_truncated_descriptor"),  # non-flexible L without TL0PICIDX
    (bytes([0x58]), "vp9_truncated_descriptor"),  # F and P without a reference
    (bytes([0x58, 0x03, 0x05]), "vp9_truncated_descriptor"),  # a reference that says another follows
    (bytes([0x58, 0x03, 0x05, 0x07, 0x08]), "vp9_too_many_references"),  # a fourth one
    (bytes([0x0A]), "vp9_truncated_descriptor"),  # V without the structure
    (bytes([0x0A, 0x30, 0x01, 0x00, 0x00]), "vp9_truncated_descriptor"),  # two layers' sizes, one half there
    (bytes([0x0A, 0x08]), "vp9_truncated_descriptor"),  # G without its count
    (bytes([0x0A, 0x08, 0x02, 0x04]), "vp9_truncated_descriptor"),  # two pictures, one present
    (bytes([0x0A, 0x08, 0x01, 0x0C, 0x01]), "vp9_truncated_descriptor"),  # R = 3 diffs, one present
])
def test_every_cut_is_a_precise_error(parse, payload: bytes, reason: str) -> None:
    with pytest.raises(rtp.RtpError) as e:
        parse(payload)
    assert e.value.reason == reason
