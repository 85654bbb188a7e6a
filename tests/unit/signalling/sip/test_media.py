"""The SIP leg's media, sans socket: RTP parsing, the jitter buffer's order, concealment and bounds,
and the answer's SDP."""

from __future__ import annotations

import numpy as np
import pytest

from signalling.sip import media
from signalling.sip.media import LEG_FRAME, JitterBuffer, LegDecoder, RtpError, build_rtp, parse_rtp
from signalling.sip.sdp import answer, parse_offer
from tests.support.sip import tone, ulaw_encode

FRAMES = [ulaw_encode(tone(1000, 0.02, amplitude=0.1 * (i % 5 + 1))) for i in range(40)]


def buffer() -> JitterBuffer:
    return JitterBuffer(LegDecoder("PCMU"))


def drain(jb: JitterBuffer, now: float, n: int) -> list[np.ndarray]:
    return [jb.pop(now) for _ in range(n)]


def test_rtp_parse_and_build():
    packet = build_rtp(0, 65535, 123, 0xABCDEF01, b"\x01\x02", marker=True)
    assert parse_rtp(packet) == (0, 65535, 123, 0xABCDEF01, b"\x01\x02")
    padded = bytes([packet[0] | 0x20]) + packet[1:] + b"\x00\x00\x03"
    assert parse_rtp(padded)[4] == b"\x01\x02"
    for bad in (b"\x80" * 11, b"\x40" + packet[1:], bytes([packet[0] | 0x20]) + packet[1:-1] + b"\x09",
                bytes([packet[0] | 0x10]) + packet[1:12] + b"\x00\x00\x00\x09"):
        with pytest.raises(RtpError):
            parse_rtp(bad)


def test_out_of_order_packets_play_in_order_and_a_lost_one_is_concealed_briefly():
    jb = buffer()
    order = [0, 2, 1, 3, 5, 6, 7]  # 4 never comes
    for k, seq in enumerate(order):
        jb.push(seq, FRAMES[seq], 10.0 + k * 0.001, ssrc=7)
    out = drain(jb, 10.2, 8)  # (80 ms later: 4 is given up)
    decoded = LegDecoder("PCMU")
    expect = [decoded.decode(FRAMES[i]) for i in (0, 1, 2, 3)]
    assert all(np.array_equal(a, b) for a, b in zip(out[:4], expect))
    assert jb.concealed == 1 and np.array_equal(out[4], (expect[3] * 0.5).astype(np.int16))
    assert np.array_equal(out[5], decoded.decode(FRAMES[5]))


def test_a_new_ssrc_or_a_sequence_jump_starts_afresh_and_a_long_gap_is_not_held():
    jb = buffer()
    for seq in range(3):
        jb.push(seq, FRAMES[seq], 10.0, ssrc=1)
    jb.push(40000, FRAMES[3], 10.0, ssrc=1)  # a jump (a PBX restarting its stream)
    jb.push(100, FRAMES[4], 10.0, ssrc=2)  # a new source, behind: not "late"
    assert jb.resets == 2 and jb.late == 0 and jb.concealed == 0
    jb.push(130, FRAMES[5], 10.0, ssrc=2)  # 29 lost: concealed 3, the rest skipped
    jb.pop(11.0)
    assert jb.concealed == media.MAX_CONCEALED and jb.queued <= media.MAX_QUEUED * LEG_FRAME


def test_a_sender_faster_than_real_time_costs_audio_not_memory():
    jb = buffer()
    for seq in range(5000):
        jb.push(seq & 0xFFFF, FRAMES[seq % 40], 10.0, ssrc=3)
    assert jb.queued <= media.MAX_QUEUED * LEG_FRAME and len(jb.waiting) == 0
    assert jb.overflow == 5000 - media.MAX_QUEUED


def test_the_answer_has_every_m_line_of_the_offer_and_mirrors_its_direction():
    offer = parse_offer(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                        b"m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                        b"m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n")
    assert offer.choose() == ("PCMU", 0) and offer.telephone_event == 101 and offer.port == 6000
    sdp = answer(offer, offer.choose(), "127.0.0.1", 7000, session=5, version=2).decode()
    assert "o=basement 5 2 IN IP4 127.0.0.1" in sdp
    assert [ln for ln in sdp.split("\r\n") if ln.startswith("m=")] == ["m=video 0 RTP/AVP 96",
                                                                     "m=audio 7000 RTP/AVP 0 101"]
    assert "a=recvonly" in sdp and "a=sendrecv" not in sdp
