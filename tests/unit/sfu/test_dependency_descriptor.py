"""The AV1 dependency descriptor as sfu.dependency_descriptor reads it: Chromium's own descriptors
(an L3T3_KEY stream, captured from Chromium 156 through the SFU), and every way one can be wrong."""

from __future__ import annotations

import pytest

from sfu import dependency_descriptor as dd
from sfu.rtp import RtpError

# Chromium 156, svc=L3T3_KEY: the key frame's descriptor (structure, and active decode targets: the
# encoder started with two of its three spatial layers), then frames of spatial layers 1 and 0
KEY = bytes.fromhex("c00001c0081485214eaaaaa8000600004000100002aa80a8000600004000100002a000a800060000400016d5"
                    "49241b5524906d54923157e001974ca864330e222396eca8655304224390eca8775300ef008601df010d03bf"
                    "021b1f80")
S1_T0 = bytes.fromhex("c50002")
S0_T2_CUSTOM = bytes.fromhex("c300031a20100800")  # custom frame differences and chains
S2_FIRST, S2_MIDDLE, S2_LAST = bytes.fromhex("8a002b"), bytes.fromhex("0a002b"), bytes.fromhex("4a002b")


def test_chromiums_l3t3_key_structure():
    d = dd.parse(KEY, None)
    s = d.structure
    assert s is not None
    assert (s.template_id_offset, s.decode_targets, s.chains, s.spatial_layers) == (0, 9, 3, 3)
    assert s.template_sid == (0,) * 5 + (1,) * 5 + (2,) * 5
    assert s.template_tid == (0, 0, 1, 2, 2) * 3
    assert s.resolutions == ((240, 135), (480, 270), (960, 540))
    assert (d.start, d.end, d.frame_number, d.sid, d.tid) == (True, True, 1, 0, 0)
    assert d.active_targets == 0b000111111  # the lower two spatial layers' six decode targets


def test_frames_are_placed_by_the_known_structure():
    s = dd.parse(KEY, None).structure
    got = [dd.parse(v, s) for v in (S1_T0, S0_T2_CUSTOM, S2_FIRST, S2_MIDDLE, S2_LAST)]
    assert [(d.sid, d.tid, d.start, d.end, d.frame_number) for d in got] == [
        (1, 0, True, True, 2), (0, 2, True, True, 3), (2, 0, True, False, 43), (2, 0, False, False, 43),
        (2, 0, False, True, 43)]
    assert all(d.structure is None and d.active_targets == -1 for d in got)


def test_a_frame_before_any_structure_cannot_be_placed():
    with pytest.raises(RtpError, match="dd_no_structure"):
        dd.parse(S1_T0, None)


def test_a_template_the_structure_lacks_is_refused():
    s = dd.parse(KEY, None).structure
    with pytest.raises(RtpError, match="dd_bad_template"):
        dd.parse(bytes([0xC0 | 15, 0, 9]), s)  # 15 templates: ids 0..14


@pytest.mark.parametrize("cut", range(1, len(KEY) - 2))
def test_every_truncated_key_descriptor_is_refused(cut):
    with pytest.raises(RtpError):
        dd.parse(KEY[:cut], None)


def _bits(*fields: tuple[int, int]) -> bytes:
    value, n = 0, 0
    for v, width in fields:
        value, n = (value << width) | v, n + width
    pad = -n % 8
    return (value << pad).to_bytes((n + pad) // 8, "big")


def test_more_than_64_templates_are_refused():
    head = [(0xC0, 8), (0, 16), (0b10000, 5), (0, 6), (0, 5)]  # mandatory, flags (structure), offset, 1 target
    with pytest.raises(RtpError, match="dd_too_many_templates"):
        dd.parse(_bits(*head, *[(0, 2)] * 64, (3, 2), (0, 64)), None)


def test_more_than_eight_spatial_layers_are_refused():
    head = [(0xC0, 8), (0, 16), (0b10000, 5), (0, 6), (0, 5)]
    with pytest.raises(RtpError, match="dd_too_many_layers"):
        dd.parse(_bits(*head, *[(2, 2)] * 8, (3, 2), (0, 64)), None)


def test_more_than_eight_temporal_layers_are_refused():
    """(found by the fuzzer: a temporal id of 8 or more, which a DownTrack's picture cannot carry)"""
    head = [(0xC0, 8), (0, 16), (0b10000, 5), (0, 6), (0, 5)]
    with pytest.raises(RtpError, match="dd_too_many_layers"):
        dd.parse(_bits(*head, *[(1, 2)] * 8, (3, 2), (0, 64)), None)


def test_a_structure_written_here_reads_back():
    """Two templates (spatial 0 and 1), two decode targets, one chain (ns-coded), custom differences."""
    structure = [(0, 6), (1, 5),  # offset 0, DtCnt 2
                 (2, 2), (3, 2),  # template_layers: S0T0, then S1T0, end
                 (0b1010, 4), (0b0010, 4),  # template_dtis: 2 targets x 2 bits per template
                 (1, 1), (0, 4), (0, 1), (1, 1), (0, 4), (0, 1),  # template_fdiffs: one each, fdiff 1
                 # chain_cnt = ns(3) = 1: w = 2, m = 1, and 1 >= m is v = (1 + m) >> 1 in w - 1 bits,
                 # then (1 + m) & 1
                 (0b10, 2),
                 (0, 0), (0, 0),  # decode_target_protected_by: ns(1) reads nothing
                  (0, 4), (0, 4),  # template_chain_fdiff, one chain per template
                  (1, 1), (319, 16), (179, 16), (639, 16), (359, 16)]  # resolutions
    d = dd.parse(_bits((0xC1, 8), (7, 16), (0b10011, 5), *structure, (1, 2), (3, 4), (0, 2), (0xAB, 8)), None)
    s = d.structure
    assert s is not None and (s.decode_targets, s.chains, s.template_sid, s.template_tid) == (2, 1, (0, 1), (0, 0))
    assert s.resolutions == ((320, 180), (640, 360)) and (d.sid, d.frame_number, d.active_targets) == (1, 7, 3)
