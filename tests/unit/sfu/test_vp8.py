"""VP8 payload descriptor (RFC 7741 4.2) and key frame detection (RFC 7741 4.3, RFC 6386 9.1)."""

from __future__ import annotations

import pytest

from sfu import rtp
from tests.support import packets as P

DELTA = P.vp8_interframe_header()  # P bit = 1
KEY = P.vp8_keyframe_header(640, 360)  # P bit = 0


def fields(d: rtp.Vp8Descriptor) -> tuple:
    return (d.start, d.keyframe, d.picture_id, d.picture_id_pos, d.picture_id_bits, d.tl0picidx, d.tl0picidx_pos,
            d.tid, d.layer_sync, d.size)


def test_builder_bytes_follow_rfc7741():
    # X|R|N|S|R|PID, then I|L|T|K|RSV, M + 15-bit PictureID, TL0PICIDX, TID|Y|KEYIDX
    assert P.vp8_descriptor(picture_id=0x1234, tl0picidx=0xAB, tid=2, layer_sync=True, keyidx=5) == \
        bytes.fromhex("90" "f0" "9234" "ab" "a5")
    assert P.vp8_descriptor(start=False, pid=3, non_ref=True) == b"\x23"
    assert P.vp8_descriptor(picture_id=0x55, picture_id_bits=7) == bytes.fromhex("908055")
    assert KEY == bytes.fromhex("100000" "9d012a" "8002" "6801")  # 640 = 0x280, 360 = 0x168, little endian
    assert DELTA == bytes.fromhex("110000")


def test_minimal_descriptor_without_x():
    assert fields(rtp.vp8_descriptor(b"\x10" + KEY)) == (True, True, -1, 0, 0, -1, 0, 0, False, 1)
    assert fields(rtp.vp8_descriptor(b"\x10" + DELTA)) == (True, False, -1, 0, 0, -1, 0, 0, False, 1)


def test_fifteen_bit_picture_id():
    d = rtp.vp8_descriptor(P.vp8_descriptor(picture_id=0x7FFF) + DELTA)
    assert fields(d) == (True, False, 0x7FFF, 2, 15, -1, 0, 0, False, 4)


def test_seven_bit_picture_id():
    d = rtp.vp8_descriptor(P.vp8_descriptor(picture_id=0x7F, picture_id_bits=7) + KEY)
    assert fields(d) == (True, True, 0x7F, 2, 7, -1, 0, 0, False, 3)


def test_picture_id_tl0picidx_and_temporal_layer():
    # Chromium's VP8 with temporal layers: I, L and T
    d = rtp.vp8_descriptor(P.vp8_descriptor(picture_id=300, tl0picidx=17, tid=1, layer_sync=True) + DELTA)
    assert fields(d) == (True, False, 300, 2, 15, 17, 4, 1, True, 6)


def test_tl0picidx_without_picture_id():
    d = rtp.vp8_descriptor(P.vp8_descriptor(tl0picidx=255) + DELTA)
    assert fields(d) == (True, False, -1, 0, 0, 255, 2, 0, False, 3)


def test_keyidx_alone_takes_a_byte_but_no_temporal_layer():
    # K without T: the TID/Y bits of that byte are not meaningful (RFC 7741 4.2)
    d = rtp.vp8_descriptor(bytes([0x90, 0x10, 0xE7]) + KEY)
    assert fields(d) == (True, True, -1, 0, 0, -1, 0, 0, False, 3)


def test_temporal_layer_three_without_sync():
    d = rtp.vp8_descriptor(P.vp8_descriptor(picture_id=1, tid=3) + DELTA)
    assert (d.tid, d.layer_sync, d.size) == (3, False, 5)


def test_key_frame_needs_the_start_of_partition_zero():
    # S=1 PID=0 and P=0: key frame
    assert rtp.vp8_descriptor(P.vp8_descriptor(picture_id=9) + KEY).keyframe is True
    # S=0: a continuation packet; its first byte is not a frame tag
    d = rtp.vp8_descriptor(P.vp8_descriptor(start=False, picture_id=9) + b"\x00\x00\x00")
    assert (d.start, d.keyframe) == (False, False)
    # S=1 but partition 1: not the start of the frame
    d = rtp.vp8_descriptor(P.vp8_descriptor(pid=1, picture_id=9) + b"\x00\x00\x00")
    assert (d.start, d.keyframe) == (False, False)
    # start of an inter frame
    d = rtp.vp8_descriptor(P.vp8_descriptor(picture_id=9) + DELTA)
    assert (d.start, d.keyframe) == (True, False)


def test_descriptor_without_a_frame_is_not_a_key_frame():
    d = rtp.vp8_descriptor(P.vp8_descriptor(picture_id=9))
    assert (d.start, d.keyframe, d.size) == (True, False, 4)


def test_descriptor_works_on_memoryview():
    payload = P.vp8_descriptor(picture_id=0x1234, tl0picidx=7, tid=0) + KEY
    d = rtp.vp8_descriptor(memoryview(b"\xff" * 5 + payload)[5:])
    assert fields(d) == (True, True, 0x1234, 2, 15, 7, 4, 0, False, 6)


@pytest.mark.parametrize("payload, reason", [
    (b"", "vp8_empty_payload"),
    (b"\x90", "vp8_truncated_descriptor"),  # X set, no extension byte
    (b"\x90\x80", "vp8_truncated_descriptor"),  # I set, no PictureID
    (b"\x90\x80\x81", "vp8_truncated_descriptor"),  # M set: 15 bits, only one byte
    (b"\x90\x40", "vp8_truncated_descriptor"),  # L set, no TL0PICIDX
    (b"\x90\xc0\x05", "vp8_truncated_descriptor"),  # I (7 bit) + L, no TL0PICIDX
    (b"\x90\x20", "vp8_truncated_descriptor"),  # T set, no TID byte
    (b"\x90\x10", "vp8_truncated_descriptor"),  # K set, no KEYIDX byte
    (b"\x90\xe0\x81\x02\x03", "vp8_truncated_descriptor"),  # I+L+T: the TID byte is missing
])
def test_truncated_descriptors(payload, reason):
    with pytest.raises(rtp.RtpError) as info:
        rtp.vp8_descriptor(payload)
    assert info.value.reason == reason


def test_frame_dimensions_and_scaling_bits_in_the_header_builder():
    # the upper 2 bits of each 16-bit field are the scaling mode, not part of the size
    assert P.vp8_keyframe_header(1280, 720, hscale=1, vscale=3)[6:] == bytes.fromhex("0045" "d0c2")
