"""Fuzz sfu/rtp.py, sfu/h264.py and sfu/dependency_descriptor.py: RTP header validation, RFC 8285 header
extensions, VP8, VP9 and H.264 payload peeks, the H.264 SPS picture size, the AV1 dependency
descriptor (every extension value, read without a structure and with Chromium's L3T3_KEY one).

Input: one RTP datagram (as SRTP hands it over, decrypted).
Contract: `parse`, `extensions`, `vp8_descriptor` and `vp9_descriptor` raise only `RtpError`; `h264.is_keyframe`,
`h264.keyframe_dimensions`, `is_rtcp` and `audio_level` (on a non-empty value) never raise; a size read
from an SPS is positive and at most 16,384 a side; every offset in an `RtpView` lies
inside the datagram and the header comes before the payload; extension values lie inside the
extension block; a VP8 or VP9 descriptor is no longer than its payload, and its picture numbering
lies inside it; a dependency descriptor raises only `RtpError`, and what it reads is in range (1 to
64 templates, spatial and temporal ids under 8, sizes of 1 to 65,536).
"""

from __future__ import annotations

from _harness import Finding, instrumented, main

with instrumented():
    from sfu import dependency_descriptor, h264, rtp

# Chromium 156's L3T3_KEY structure (tests/unit/sfu/test_dependency_descriptor.py)
CHROMIUM = dependency_descriptor.parse(bytes.fromhex(
    "c00001c0081485214eaaaaa8000600004000100002aa80a8000600004000100002a000a800060000400016d549241b5524906d549"
    "23157e001974ca864330e222396eca8655304224390eca8775300ef008601df010d03bf021b1f80"), None).structure


def check_dependency_descriptor(value: bytes) -> None:
    for known in (None, CHROMIUM):
        try:
            d = dependency_descriptor.parse(value, known)
        except rtp.RtpError:
            continue
        s = d.structure
        if s is not None and not (1 <= len(s.template_sid) == len(s.template_tid) <= 64 and
                                  all(0 < w <= 65536 and 0 < h <= 65536 for w, h in s.resolutions)):
            raise Finding(f"dependency structure out of range: {s}")
        if not (0 <= d.sid < 8 and 0 <= d.tid < 8 and 0 <= d.frame_number < 65536):
            raise Finding(f"dependency descriptor out of range: {d}")


def test_one(data: bytes) -> None:
    rtp.is_rtcp(data)
    try:
        view = rtp.parse(data)
    except rtp.RtpError:
        return
    n = len(data)
    if not 12 <= view.payload_start <= view.payload_end <= n:
        raise Finding(f"payload [{view.payload_start}, {view.payload_end}) outside a {n}-byte packet")
    if view.ext_start and not 16 <= view.ext_start <= view.ext_end <= view.payload_start:
        raise Finding(f"extension block [{view.ext_start}, {view.ext_end}) misplaced")
    try:
        exts = rtp.extensions(data, view)
    except rtp.RtpError:
        exts = {}
    total = sum(len(v) for v in exts.values())
    if total > view.ext_end - view.ext_start:
        raise Finding(f"extension values ({total} bytes) larger than the block")
    for xid, value in exts.items():
        if not 0 <= xid < 256 or (view.one_byte and xid > 14):
            raise Finding(f"extension id {xid} impossible in this form")
        if value:
            rtp.audio_level(value)
        check_dependency_descriptor(value)
    payload = memoryview(data)[view.payload_start : view.payload_end]
    for codec, parse in (("VP8", rtp.vp8_descriptor), ("VP9", rtp.vp9_descriptor)):
        try:
            desc = parse(payload)
        except rtp.RtpError:
            continue
        if desc.size > len(payload):
            raise Finding(f"{codec} descriptor of {desc.size} bytes in a {len(payload)}-byte payload")
        if (desc.picture_id_pos and not desc.picture_id_pos < desc.size) or (
                desc.tl0picidx_pos and not desc.tl0picidx_pos < desc.size):
            raise Finding(f"{codec} picture numbering outside the descriptor")
        if not (0 <= desc.sid < 8 and 0 <= desc.tid < 8):
            raise Finding(f"{codec} layer ids out of range: {desc}")
    h264.is_keyframe(payload)
    h264.is_keyframe(data[view.payload_start : view.payload_end])
    size = h264.keyframe_dimensions(payload)
    if size is not None and not (0 < size[0] <= 16384 and 0 < size[1] <= 16384):
        raise Finding(f"H.264 SPS read as {size}")


if __name__ == "__main__":
    main(test_one)
