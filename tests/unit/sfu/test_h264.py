"""H.264 key frame detection over RFC 6184 packetizations: single NAL, STAP-A, FU-A."""

from __future__ import annotations

import pytest

from sfu import rtp
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
    assert rtp.h264_is_keyframe(payload) is key, name
    assert rtp.h264_is_keyframe(memoryview(payload)) is key, name


@pytest.mark.parametrize("name, payload", [
    ("size 0 ends the walk before an IDR", bytes([0x78, 0, 0]) + bytes([0, 1, 0x65])),
    ("size pointing past the end", bytes([0x78, 0x40, 0x00, 0x06])),
    ("a size with no NAL header after it", bytes([0x78, 0, 1])),
    ("an IDR whose size overruns is past the first entry", bytes([0x78, 0, 4]) + P.NON_IDR[:4] + bytes([0, 9])),
])
def test_malformed_stap_a_is_not_a_keyframe_and_does_not_raise(name, payload):
    assert rtp.h264_is_keyframe(payload) is False, name


def test_stap_a_with_the_idr_header_as_its_last_byte():
    # the walk needs only the NAL header of each entry, not its body
    assert rtp.h264_is_keyframe(bytes([0x78, 0, 2]) + P.SEI[:2] + bytes([0, 5, 0x65])) is True
