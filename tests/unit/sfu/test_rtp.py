"""RTP header parsing (RFC 3550 5.1) and header extensions (RFC 8285) on hand-built bytes."""

from __future__ import annotations

import pytest

from sfu import rtp
from tests.support import packets as P

# RFC 3550 5.1 laid out by hand: V=2 P=0 X=0 CC=0 | M=1 PT=96 | seq 0x1234 | ts 0xDEADBEEF | SSRC 0x11223344
MINIMAL = bytes.fromhex("80e0 1234 deadbeef 11223344".replace(" ", "")) + b"payload"


def test_fixed_header_fields():
    v = rtp.parse(MINIMAL)
    assert (v.marker, v.pt, v.seq, v.ts, v.ssrc) == (True, 96, 0x1234, 0xDEADBEEF, 0x11223344)
    assert (v.ext_start, v.ext_end, v.one_byte) == (0, 0, False)
    assert (v.payload_start, v.payload_end) == (12, 19)
    assert MINIMAL[v.payload_start:v.payload_end] == b"payload"


def test_builder_matches_the_hand_written_header():
    assert P.rtp(96, 0x1234, 0xDEADBEEF, 0x11223344, b"payload", marker=True) == MINIMAL


def test_marker_clear_and_max_payload_type():
    v = rtp.parse(P.rtp(127, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, b"x"))
    assert (v.marker, v.pt, v.seq, v.ts, v.ssrc) == (False, 127, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)


def test_csrcs_are_skipped_to_the_payload():
    data = P.rtp(111, 7, 960, 0xAAAA, b"opus", csrcs=[1, 2, 3])
    assert data[0] == 0x83 and len(data) == 12 + 12 + 4
    v = rtp.parse(data)
    assert (v.payload_start, v.payload_end) == (24, 28)
    assert data[24:28] == b"opus"


def test_fifteen_csrcs():
    data = P.rtp(111, 7, 960, 0xAAAA, b"", csrcs=list(range(15)))
    v = rtp.parse(data)
    assert (v.payload_start, v.payload_end) == (72, 72)


def test_padding_is_excluded_from_the_payload():
    data = P.rtp(96, 1, 2, 3, b"abcd", padding=4)
    assert data[0] == 0xA0 and data[-4:] == b"\x00\x00\x00\x04"
    v = rtp.parse(data)
    assert (v.payload_start, v.payload_end) == (12, 16)


def test_padding_only_packet_has_an_empty_payload():
    # a bandwidth probe: header + 255 padding bytes, no media
    v = rtp.parse(P.rtp(96, 1, 2, 3, b"", padding=255))
    assert (v.payload_start, v.payload_end) == (12, 12)


def test_padding_count_may_cover_csrc_free_payload_exactly_with_extensions():
    ext = P.one_byte_ext([(1, b"\x42")])
    v = rtp.parse(P.rtp(96, 1, 2, 3, b"xy", ext=ext, padding=3))
    assert (v.ext_start, v.ext_end, v.payload_start, v.payload_end) == (16, 20, 20, 22)


def test_one_byte_extensions_with_padding_between_elements():
    # RFC 8285 4.2: ID/L byte, L+1 data bytes; zero bytes between elements are padding
    ext = P.one_byte_ext([(1, b"\x85"), b"\x00\x00", (3, b"\x01\x02\x03"), b"\x00", (4, b"0")])
    assert ext == bytes.fromhex("bede0003" "1085" "0000" "32010203" "00" "4030" "00")
    data = P.rtp(111, 1, 2, 3, b"opus", ext=ext)
    v = rtp.parse(data)
    assert (v.one_byte, v.ext_start, v.ext_end, v.payload_start) == (True, 16, 28, 28)
    assert rtp.extensions(data, v) == {1: b"\x85", 3: b"\x01\x02\x03", 4: b"0"}


def test_one_byte_extension_of_sixteen_bytes():
    ext = P.one_byte_ext([(10, b"0123456789abcdef")])
    assert ext[4] == 0xAF
    data = P.rtp(96, 1, 2, 3, b"p", ext=ext)
    assert rtp.extensions(data, rtp.parse(data)) == {10: b"0123456789abcdef"}


def test_one_byte_id_15_stops_parsing():
    # RFC 8285 4.2: ID 15 is reserved; "the remainder of the extension block MUST be ignored"
    ext = P.one_byte_ext([(1, b"\x01"), b"\xf0\x99", (2, b"\x02")])
    data = P.rtp(96, 1, 2, 3, b"p", ext=ext)
    assert rtp.extensions(data, rtp.parse(data)) == {1: b"\x01"}


def test_two_byte_extensions_with_padding_and_empty_values():
    ext = P.two_byte_ext([(1, b"\x85"), b"\x00", (20, b""), (200, bytes(range(17)))], appbits=0x5)
    assert ext[:4] == bytes.fromhex("10050007")
    data = P.rtp(96, 1, 2, 3, b"p", ext=ext)
    v = rtp.parse(data)
    assert (v.one_byte, v.ext_start, v.ext_end) == (False, 16, 44)
    assert rtp.extensions(data, v) == {1: b"\x85", 20: b"", 200: bytes(range(17))}


def test_no_extension_block_means_no_extensions():
    assert rtp.extensions(MINIMAL, rtp.parse(MINIMAL)) == {}


def test_empty_extension_block():
    data = P.rtp(96, 1, 2, 3, b"p", ext=P.ext_block(P.ONE_BYTE_PROFILE, b""))
    v = rtp.parse(data)
    assert (v.ext_start, v.ext_end, v.payload_start) == (16, 16, 16)
    assert rtp.extensions(data, v) == {}


def test_unknown_profile_is_not_the_one_byte_form():
    data = P.rtp(96, 1, 2, 3, b"p", ext=P.ext_block(0xABCD, b"\x01\x02\x03\x04"))
    v = rtp.parse(data)
    assert (v.one_byte, v.ext_start, v.ext_end, v.payload_start) == (False, 16, 20, 20)


# --- every drop reason ----------------------------------------------------------------------------

HEAD = MINIMAL[1:12]  # M/PT, seq, ts, SSRC of MINIMAL; each case below writes its own first byte

MALFORMED = {
    "empty": (b"", "truncated_header"),
    "11 bytes": (MINIMAL[:11], "truncated_header"),
    "version 0": (P.rtp(96, 1, 2, 3, b"x", version=0), "bad_version"),
    "version 1": (P.rtp(96, 1, 2, 3, b"x", version=1), "bad_version"),
    "version 3": (P.rtp(96, 1, 2, 3, b"x", version=3), "bad_version"),
    "CSRC count beyond the packet": (bytes([0x84]) + HEAD + bytes(15), "truncated_header"),
    "extension header cut": (bytes([0x90]) + HEAD + b"\xbe\xde\x00", "truncated_extension"),
    "extension header after a CSRC cut": (bytes([0x91]) + HEAD + b"\x00\x00\x00\x01\xbe\xde",
                                          "truncated_extension"),
    "extension length beyond the packet": (bytes([0x90]) + HEAD + b"\xbe\xde\x00\x02" + b"\x10\x01\x00\x00",
                                           "bad_extension_length"),
    "padding count 0": (bytes([0xA0]) + HEAD + b"abc\x00", "bad_padding"),
    "padding count beyond the payload": (bytes([0xA0]) + HEAD + b"ab\x04", "bad_padding"),
    "padding reaching into the extension block": (bytes([0xB0]) + HEAD + b"\xbe\xde\x00\x01\x10\x61\x00\x00\x02",
                                                  "bad_padding"),
    "padding count reaching into the header": (bytes([0xA0]) + HEAD[:10] + b"\x0d", "bad_padding"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_packets_raise_rtp_error_with_the_reason(name):
    data, reason = MALFORMED[name]
    with pytest.raises(rtp.RtpError) as info:
        rtp.parse(data)
    assert info.value.reason == reason
    assert str(info.value) == reason


def test_one_byte_element_overrunning_the_block():
    # element 1 claims 4 bytes (L=3) but the block has only 3 left: the length is a lie
    data = P.rtp(96, 1, 2, 3, b"payload", ext=P.ext_block(P.ONE_BYTE_PROFILE, b"\x00\x13\x01\x02"))
    v = rtp.parse(data)
    with pytest.raises(rtp.RtpError) as info:
        rtp.extensions(data, v)
    assert info.value.reason == "bad_extension_length"


def test_two_byte_element_overrunning_the_block():
    data = P.rtp(96, 1, 2, 3, b"payload", ext=P.ext_block(P.TWO_BYTE_PROFILE, b"\x01\x05\x01\x02"))
    with pytest.raises(rtp.RtpError) as info:
        rtp.extensions(data, rtp.parse(data))
    assert info.value.reason == "bad_extension_length"


def test_rtp_error_is_a_value_error():
    assert issubclass(rtp.RtpError, ValueError)


# --- small helpers --------------------------------------------------------------------------------


def test_abs_send_time_is_6_18_fixed_point():
    assert rtp.abs_send_time_now(0.0) == b"\x00\x00\x00"
    assert rtp.abs_send_time_now(1.0) == b"\x04\x00\x00"
    assert rtp.abs_send_time_now(1.5) == b"\x06\x00\x00"
    assert rtp.abs_send_time_now(64.0) == b"\x00\x00\x00"  # wraps every 64 s
    assert rtp.abs_send_time_now(63.75) == b"\xff\x00\x00"
    assert rtp.abs_send_time_now(1.0) == P.abs_send_time(1.0)


def test_audio_level_rfc6464():
    assert rtp.audio_level(b"\x85") == (True, 5)
    assert rtp.audio_level(b"\x7f") == (False, 127)
    assert rtp.audio_level(b"\x00") == (False, 0)


@pytest.mark.parametrize("second, expected", [(200, True), (201, True), (205, True), (206, True), (192, True),
                                              (223, True), (191, False), (224, False), (96, False), (0xE0, False)])
def test_rtcp_demux_by_second_byte(second, expected):
    assert rtp.is_rtcp(bytes([0x80, second, 0, 1])) is expected


def test_rtcp_demux_needs_two_bytes():
    assert rtp.is_rtcp(b"\x80") is False
