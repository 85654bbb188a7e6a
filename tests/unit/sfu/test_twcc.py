"""Transport-wide feedback (sfu.twcc): what libwebrtc sends parses to the right arrivals, what we
build parses back, and malformed feedback is refused with a reason."""

from __future__ import annotations

import struct

import pytest

from sfu import twcc


def _rtcp(body: bytes, fmt: int = 15, pt: int = 205) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!BBH", 0x80 | fmt, pt, (len(body) + 4) // 4 - 1) + body


def test_a_feedback_in_libwebrtc_layout_parses_to_its_arrivals():
    # base 100, 5 statuses, reference 2 (128 ms), fb count 7; a 2-bit vector chunk:
    # received small, lost, received large, received small, received small
    chunk = 0xC000 | (1 << 12) | (0 << 10) | (2 << 8) | (1 << 6) | (1 << 4)
    deltas = bytes([4]) + struct.pack("!h", -8) + bytes([255, 0])
    body = struct.pack("!IIHHI", 1, 0x1234, 100, 5, (2 << 8) | 7) + struct.pack("!H", chunk) + deltas
    fb = twcc.parse(_rtcp(body))
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.count, fb.feedback_count) == (1, 0x1234, 100, 5, 7)
    assert fb.reference_us == 128_000
    assert fb.received == [(100, 129_000), (102, 127_000), (103, 190_750), (104, 190_750)]
    assert fb.lost == 1


def test_run_and_one_bit_chunks_and_sequence_wrap():
    # a run of 3 received-small from 65534 (wrapping), then a 1-bit vector: lost, received
    body = (struct.pack("!IIHHI", 9, 9, 65534, 5, 0) + struct.pack("!HH", (1 << 13) | 3, 0x8000 | (0b01 << 12))
            + bytes([1, 2, 3, 4]))
    fb = twcc.parse(_rtcp(body))
    assert [s for s, _ in fb.received] == [65534, 65535, 0, 2]
    assert [a for _, a in fb.received] == [250, 750, 1500, 2500]


@pytest.mark.parametrize("arrivals", [
    [1000, None, 1500, 80_000, 70_000, None, None, None, None, None, None, None, None, 90_000],
    [None] * 20 + [5_000],
    [i * 1000 for i in range(300)],
    [64_000 * 3 + 250],
])
def test_what_we_build_parses_back(arrivals):
    packet = twcc.build(5, 6, 65530, 64_000 * 3, 2, arrivals)
    fb = twcc.parse(packet)
    expect = [((65530 + k) & 0xFFFF, a) for k, a in enumerate(arrivals) if a is not None]
    assert [s for s, _ in fb.received] == [s for s, _ in expect]
    for (_, got), (_, want) in zip(fb.received, expect, strict=True):
        assert abs(got - want) <= 125  # rounding to 250 µs, not accumulating
    assert fb.count == len(arrivals)


@pytest.mark.parametrize("data, reason", [
    (b"\x8f\xcd\x00\x04" + bytes(12), "at least 20"),
    (_rtcp(struct.pack("!IIHHI", 1, 1, 0, 0, 0)), "no packets"),
    (_rtcp(struct.pack("!IIHHI", 1, 1, 0, 5000, 0) + struct.pack("!H", 5000)), "at most"),
    (_rtcp(struct.pack("!IIHHI", 1, 1, 0, 100, 0) + struct.pack("!HH", 1, 1)), "chunks end"),
    (_rtcp(struct.pack("!IIHHI", 1, 1, 0, 3, 0) + struct.pack("!H", (3 << 13) | 3)), "reserved"),
    (_rtcp(struct.pack("!IIHHI", 1, 1, 0, 3, 0) + struct.pack("!H", 0)), "length 0"),
    (_rtcp(struct.pack("!IIHHI", 1, 1, 0, 1, 0) + struct.pack("!H", 0xF000)), "reserved"),
    (_rtcp(struct.pack("!IIHHI", 1, 1, 0, 4, 0) + struct.pack("!H", (2 << 13) | 4) + bytes(2)), "deltas end"),
    (_rtcp(struct.pack("!IIHHI", 1, 1, 0, 1, 0) + struct.pack("!H", (1 << 13) | 1) + bytes(9)), "after the last"),
    (_rtcp(struct.pack("!IIHHI", 1, 1, 0, 1, 0) + struct.pack("!H", 0x2001), fmt=1), "not a transport-wide"),
    (_rtcp(struct.pack("!IIHHI", 1, 1, 0, 1, 0) + struct.pack("!H", 0x2001))[:-4] + b"", "header says"),
])
def test_malformed_feedback_is_refused_with_a_reason(data, reason):
    with pytest.raises(twcc.FeedbackError, match=reason):
        twcc.parse(data)


def test_a_long_run_of_losses_costs_no_per_status_work():
    # 4,096 statuses in a single run chunk of "not received" and one vector: parses, and lists only the
    # received ones (the cap keeps even this cheap)
    body = struct.pack("!IIHHI", 1, 1, 0, 4096, 0) + struct.pack("!HH", 4095, 0x8000 | (1 << 13)) + bytes([8])
    fb = twcc.parse(_rtcp(body))
    assert fb.received == [(4095, 2000)] and fb.lost == 4095
