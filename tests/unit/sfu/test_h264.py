"""H.264 key frame detection over RFC 6184 packetizations: single NAL, STAP-A, FU-A."""

from __future__ import annotations

import pytest

from sfu import h264
from tests.support import packets as P


def test_builder_bytes_follow_rfc6184():
    assert P.stap_a(P.SPS, P.PPS) == bytes([0x78, 0, 14]) + P.SPS + bytes([0, 4]) + P.PPS
    assert P.fu_a(P.IDR, start=True, end=False)[:2] == bytes([0x7C, 0x85])  # NRI 3, type 28 | S, type 5
    assert P.fu_a(P.NON_IDR, start=False, end=True)[:2] == bytes([0x5C, 0x41])  # NRI 2 | E, type 1


@pytest.mark.parametrize("name, payload, key", [
    ("single NAL IDR slice", P.IDR, True),
    ("single NAL SPS", P.SPS, True),
    ("single NAL PPS", P.PPS, False),
    ("single NAL non-IDR slice", P.NON_IDR, False),
    ("single NAL SEI", P.SEI, False),
    ("access unit delimiter", P.nal(9, nri=0, body=b"\xf0"), False),
    ("IDR with NRI 0 and the F bit set", bytes([0x85]) + P.IDR[1:], True),
    ("STAP-A SPS+PPS+IDR (libwebrtc's key frame)", P.stap_a(P.SPS, P.PPS, P.IDR), True),
    ("STAP-A SPS+PPS", P.stap_a(P.SPS, P.PPS), True),
    ("STAP-A PPS+IDR: the IDR is the third entry", P.stap_a(P.SEI, P.PPS, P.IDR), True),
    ("STAP-A SEI+non-IDR", P.stap_a(P.SEI, P.NON_IDR), False),
    ("STAP-A PPS only", P.stap_a(P.PPS), False),
    ("FU-A start of an IDR", P.fu_a(P.IDR, start=True, end=False), True),
    ("FU-A middle of an IDR", P.fu_a(P.IDR, start=False, end=False), False),
    ("FU-A end of an IDR", P.fu_a(P.IDR, start=False, end=True), False),
    ("FU-A start of a non-IDR slice", P.fu_a(P.NON_IDR, start=True, end=False), False),
    ("FU-A indicator only", bytes([0x7C]), False),
    ("empty payload", b"", False),
    ("STAP-A header only", bytes([0x78]), False),
])
def test_keyframe_detection(name, payload, key):
    assert h264.is_keyframe(payload) is key, name
    assert h264.is_keyframe(memoryview(payload)) is key, name


@pytest.mark.parametrize("name, payload", [
    ("size 0 ends the walk before an IDR", bytes([0x78, 0, 0]) + bytes([0, 1, 0x65])),
    ("size pointing past the end", bytes([0x78, 0x40, 0x00, 0x06])),
    ("a size with no NAL header after it", bytes([0x78, 0, 1])),
    ("an IDR whose size overruns is past the first entry", bytes([0x78, 0, 4]) + P.NON_IDR[:4] + bytes([0, 9])),
])
def test_malformed_stap_a_is_not_a_keyframe_and_does_not_raise(name, payload):
    assert h264.is_keyframe(payload) is False, name


def test_stap_a_with_the_idr_header_as_its_last_byte():
    # the walk needs only the NAL header of each entry, not its body
    assert h264.is_keyframe(bytes([0x78, 0, 2]) + P.SEI[:2] + bytes([0, 5, 0x65])) is True


# --- SPS: the picture size (sfu.h264) -----------------------------------------------------------

def _libx264_sps(width: int, height: int, pix_fmt: str = "yuv420p", params: str = "") -> bytes:
    """The SPS NAL unit a real encoder writes for this picture size."""
    import fractions

    import av

    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", **({"x264-params": params} if params else {})}
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    stream = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(bytes(p) for p in ctx.encode(None))
    return next(n.rstrip(b"\x00") for n in stream.split(b"\x00\x00\x01") if n and n[0] & 0x1F == 7)


@pytest.mark.parametrize("width, height, pix_fmt, params", [
    (240, 134, "yuv420p", ""),  # Chromium's q of a 960x540 camera (135 rows cannot be coded in 4:2:0)
    (480, 270, "yuv420p", ""),  # cropped: 17 macroblock rows, 2 rows off
    (960, 540, "yuv420p", ""),
    (1920, 1080, "yuv420p", ""),
    (320, 240, "yuv420p", ""),  # whole macroblocks, no cropping
    (640, 360, "yuv420p", "cqm=jvt"),  # High profile with scaling matrices
    (640, 360, "yuv422p", ""),  # High 4:2:2: crop units of 2x1
    (241, 135, "yuv444p", ""),  # High 4:4:4: crop units of 1x1, so odd sizes
    (640, 480, "yuv420p", "interlaced=1"),  # field macroblocks: map units are macroblock pairs
])
def test_sps_dimensions_of_real_encoder_output(width, height, pix_fmt, params):
    sps = _libx264_sps(width, height, pix_fmt, params)
    assert h264.sps_dimensions(sps) == (width, height)
    assert h264.keyframe_dimensions(sps) == (width, height)
    assert h264.keyframe_dimensions(P.stap_a(sps, P.PPS, P.IDR)) == (width, height)
    assert h264.keyframe_dimensions(memoryview(P.stap_a(P.SEI, sps))) == (width, height)
    assert h264.keyframe_dimensions(P.fu_a(sps, start=True, end=True)) == (width, height)


def test_chromium_openh264_sps_vectors():
    # fixed bytes, so a change in libx264 cannot hide a regression: the 960x540 and 240x134 layers
    assert h264.sps_dimensions(bytes.fromhex("6742c01fda03c045fb84000003000400000300f23c60ca80")) == (960, 540)
    assert h264.sps_dimensions(bytes.fromhex("6742c00cda0f13f9a10000030001000003003c8f142aa0")) == (240, 134)


@pytest.mark.parametrize("payload", [
    P.PPS, P.IDR, P.NON_IDR, P.stap_a(P.PPS, P.IDR), P.fu_a(P.IDR, start=True, end=False), b"", b"\x67",
    P.fu_a(bytes.fromhex("6742c01fda03c045fb84"), start=False, end=True),  # not the first fragment
])
def test_no_dimensions_without_an_sps(payload):
    assert h264.keyframe_dimensions(payload) is None


def test_a_truncated_or_corrupt_sps_gives_none_never_an_exception():
    sps = bytes.fromhex("6764001eacb405017fcb08000003000800000301e478b175")  # High, scaling matrices
    for n in range(len(sps)):
        assert h264.sps_dimensions(sps[:n]) in (None, (640, 360))
    for i in range(1, len(sps)):
        for bit in range(8):
            corrupt = bytearray(sps)
            corrupt[i] ^= 1 << bit
            size = h264.sps_dimensions(bytes(corrupt))
            assert size is None or (0 < size[0] <= 16384 and 0 < size[1] <= 16384)
    assert h264.sps_dimensions(bytes([0x67]) + b"\x00" * 40) is None  # an Exp-Golomb code over 32 bits
    # baseline, every field 0 (each Exp-Golomb code a single 1 bit): one macroblock, 16x16
    assert h264.sps_dimensions(bytes([0x67, 66, 0, 30]) + b"\xff" * 4) == (16, 16)
    assert h264.sps_dimensions(_sps_bits("1" * 12 + "010" + "1" * 3)) == (16 - 2 * 1, 16)  # crop_left 1
    assert h264.sps_dimensions(_sps_bits("1" * 12 + "0001001" + "1" * 3)) is None  # crop_left 8: all of it
    # a STAP-A entry whose size runs past the packet is not read
    assert h264.keyframe_dimensions(bytes([0x78, 0, 40]) + sps) is None


def _sps_bits(fields: str) -> bytes:
    """A baseline SPS whose fields after level_idc are these bits: sps_id, log2_max_frame_num,
    poc_type, log2_max_poc_lsb, max_num_ref_frames, gaps flag, width, height, frame_mbs_only,
    direct_8x8, frame_cropping_flag (12 bits of '1' = all 0, progressive, cropping on), then crop
    left, right, top, bottom (Exp-Golomb)."""
    bits = fields + "1" + "0" * (-(len(fields) + 1) % 8)  # rbsp_stop_one_bit, byte alignment
    return bytes([0x67, 66, 0, 30]) + int(bits, 2).to_bytes(len(bits) // 8, "big")
