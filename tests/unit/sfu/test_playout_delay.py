"""The playout delay (sfu.playout_delay): set from NACKs and the round trip, never 0, back to the floor
when the NACKs stop; stamped alike by the native Egress and the Python path, only on the video SSRCs
that negotiated it, before the transport-wide number."""

from __future__ import annotations

import pytest

from sfu import playout_delay as pd
from sfu import rtp
from sfu.playout_delay import MAX_MS, PlayoutDelay, element
from tests.unit.sfu.test_transport_seq import XID, _Native, _Python, carried, packet

DELAY_ID = 6
VIDEO, RTX, AUDIO = 0x1234, 0x1235, 0x5678


def read(data: bytes) -> tuple[int, int] | None:
    """(min, max) ms of the playout delay a receiver reads, or None."""
    value = rtp.extension(data, rtp.parse(data), DELAY_ID)
    if value is None:
        return None
    assert len(value) == 3
    return (value[0] << 4 | value[1] >> 4) * 10, ((value[1] & 0x0F) << 8 | value[2]) * 10


def lossy(delay: PlayoutDelay, rtt_s: float, at: float = 100.0) -> float:
    delay.on_rtt(rtt_s, at)
    for i in range(pd.NACKS):
        delay.on_nack(at + i)
    return at + pd.NACKS


def test_the_element_is_12_bits_of_minimum_and_12_of_maximum_in_10_ms_units():
    assert element(160, 10_000) == bytes((0x01, 0x03, 0xE8))
    assert element(10, 40_950) == bytes((0x00, 0x1F, 0xFF))


def test_nothing_is_set_without_loss_nor_for_one_stray_nack():
    delay = PlayoutDelay()
    delay.negotiated(DELAY_ID, VIDEO)
    delay.on_rtt(0.08, 1.0)
    delay.on_nack(2.0)
    delay.on_nack(20.0)  # (the first is out of the window by now)
    assert delay.min_ms is None and delay.stamp(packet(ssrc=VIDEO)) == packet(ssrc=VIDEO)


def test_repeated_nacks_set_one_and_a_half_round_trips_and_a_margin_within_the_bounds():
    delay = PlayoutDelay()
    delay.negotiated(DELAY_ID, VIDEO)
    lossy(delay, 0.08)
    assert delay.min_ms == 150  # 1.5 x 80 + 30
    far = PlayoutDelay()
    far.negotiated(DELAY_ID, VIDEO)
    lossy(far, 0.6)
    assert far.min_ms == pd.MAX_MIN_MS
    near = PlayoutDelay()
    near.negotiated(DELAY_ID, VIDEO)
    lossy(near, 0.0)  # no round trip measured yet: a guess of 100 ms
    assert near.min_ms == 180


def test_the_round_trip_moves_it_only_by_a_step_and_quiet_returns_it_to_the_floor_never_to_0():
    delay = PlayoutDelay()
    delay.negotiated(DELAY_ID, VIDEO)
    now = lossy(delay, 0.08)
    delay.on_rtt(0.085, now)  # 157.5 -> 160: within a step of 150
    assert delay.min_ms == 150
    delay.on_nack(now + 1)
    delay.on_rtt(0.2, now + 1)
    assert delay.min_ms == 150  # the least round trip of the window: a queue's moment is not the path
    later = lossy(delay, 0.2, now + pd.WINDOW_S + 1)  # the path's round trip did grow
    assert delay.min_ms == 330
    delay.on_rtt(0.2, later + pd.QUIET_S / 2)  # NACKs stopped, not for long yet
    assert delay.min_ms == 330
    delay.on_rtt(0.2, later + pd.QUIET_S)
    assert delay.min_ms == pd.FLOOR_MS and delay.changes == 3
    assert read(delay.stamp(packet(ssrc=VIDEO))) == (pd.FLOOR_MS, MAX_MS)


def test_the_least_round_trip_spans_the_window_however_many_reports_a_second():
    delay = PlayoutDelay()
    delay.negotiated(DELAY_ID, VIDEO)
    delay.on_rtt(0.08, 100.0)  # the path's round trip, then 9 s of a queue, 20 reports a second
    for k in range(180):
        delay.on_rtt(0.3, 100.5 + k / 20)
    assert delay.rtt(109.5) == 0.08  # still in the window: it counts
    assert delay.rtt(100.0 + pd.WINDOW_S + 1) == 0.3


def test_not_negotiated_nothing_is_set():
    delay = PlayoutDelay()
    lossy(delay, 0.08)
    assert delay.min_ms is None


@pytest.mark.parametrize("side", [_Native, _Python], ids=["egress", "python"])
def test_both_paths_stamp_the_video_ssrcs_alike_before_the_transport_wide_number(side):
    s = side()
    delay = PlayoutDelay()
    try:
        s.configure(XID, 7, [VIDEO, RTX, AUDIO])
        delay.negotiated(DELAY_ID, VIDEO)
        if side is _Native:
            delay.attach(s.egress)
            send = s.send
        else:
            def send(data: bytes) -> bytes:  # as PeerTransport's Python send
                return s.send(delay.stamp(data))
        before = send(packet(ssrc=VIDEO, seq=1))
        assert read(before) is None and carried(before)[0] == 7  # nothing set yet
        lossy(delay, 0.08)
        video, rtx, audio = send(packet(ssrc=VIDEO, seq=2)), send(packet(ssrc=RTX)), send(packet(ssrc=AUDIO))
        assert read(video) == (150, MAX_MS)
        assert read(rtx) is None and read(audio) is None
        assert [carried(p)[0] for p in (video, rtx, audio)] == [8, 9, 10]
        assert carried(video)[1] == carried(packet(ssrc=VIDEO, seq=2))[1]
        # one extension block holds both: the delay first, then the number
        assert video[12:16] == b"\xbe\xde\x00\x02" and video[16] >> 4 == DELAY_ID and video[20] >> 4 == XID
    finally:
        s.close()


def test_the_egress_and_the_python_path_send_the_same_bytes():
    native, python = _Native(), _Python()
    delays = [PlayoutDelay(), PlayoutDelay()]
    try:
        for side in (native, python):
            side.configure(XID, 100, [VIDEO])
        for d in delays:
            d.negotiated(DELAY_ID, VIDEO)
            lossy(d, 0.05)
        delays[0].attach(native.egress)
        for seq, data in enumerate([packet(ssrc=VIDEO), packet(b"\xbe\xde\x00\x01\x10\xaa\x00\x00", ssrc=VIDEO),
                                    packet(b"\x10\x00\x00\x01\x07\x01\xaa\x00", ssrc=VIDEO, padding=9)]):
            data = data[:2] + seq.to_bytes(2, "big") + data[4:]
            assert native.send(data) == python.send(delays[1].stamp(data))
    finally:
        native.close()


async def test_subscribers_are_offered_it_on_video_and_the_setting_takes_it_away():
    from sfu import transport as tr
    from tests.unit.sfu.test_send_side import subscriber_offer

    line = f"a=extmap:{tr.PLAYOUT_DELAY_ID} {pd.URI_PLAYOUT_DELAY}"
    offer = await subscriber_offer()
    assert offer.count(line) == 1 and offer.index(line) < offer.index("m=audio")  # on the video m-line only
    tr.configure_playout_delay(False)
    try:
        assert pd.URI_PLAYOUT_DELAY not in await subscriber_offer()
    finally:
        tr.configure_playout_delay(True)
    assert (await subscriber_offer()).count(line) == 1
