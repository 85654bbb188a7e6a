"""A subscriber's downlink estimate (REMB) is one budget for all the video it receives.

Given in full to each of its video DownTracks, a meeting subscriber receiving three cameras over a
2 Mbit/s link was sent three 1.5 Mbit/s layers. The selector shares the estimate by water-filling
over what each DownTrack asks for (`share_budget`); each DownTrack's policy then sees its share."""

from __future__ import annotations

import pytest

from sfu.allocation import share_budget
from sfu.layers import DOWN_TOLERANCE, LayerSelector
from tests.support import packets as P
from tests.unit.sfu import rig

RATES = {"q": 150_000, "h": 500_000, "f": 1_500_000}


def test_water_filling_gives_small_demands_all_and_splits_the_rest_evenly():
    assert share_budget(2_000_000, [1_500_000, 1_500_000]) == [1_000_000, 1_000_000]
    assert share_budget(2_000_000, [1_500_000, 150_000, 1_500_000]) == pytest.approx([925_000, 150_000, 925_000])
    assert share_budget(10_000_000, [1_500_000, 500_000]) == [1_500_000, 500_000]  # never above a demand
    assert share_budget(0, [1_500_000]) == [0.0]
    assert share_budget(-5, [1, 2]) == [0.0, 0.0]
    assert share_budget(1_000, []) == []


def test_a_screen_share_is_served_before_the_cameras():
    # a 2 Mbit/s link, a 1.5 Mbit/s screen share and two cameras asking 1.5 Mbit/s each: the screen
    # gets its whole demand, the cameras split the 500 kbit/s left
    assert share_budget(2_000_000, [1_500_000, 1_500_000, 1_500_000], [False, True, False]) == [
        250_000, 1_500_000, 250_000]
    # two screens water-fill the budget among themselves first; the camera gets what is left: nothing
    assert share_budget(2_000_000, [1_500_000, 1_500_000, 150_000], [True, True, False]) == [
        1_000_000, 1_000_000, 0.0]
    # ... unless it has a floor (its lowest layer): screens never take that
    assert share_budget(2_000_000, [1_500_000, 1_500_000, 1_500_000], [True, True, False], [0, 0, 150_000]) == [
        925_000, 925_000, 150_000]
    assert share_budget(100_000, [1_500_000, 1_500_000], [True, False], [0, 150_000]) == [0.0, 100_000]
    assert share_budget(2_000_000, [1_500_000, 1_500_000], []) == [1_000_000, 1_000_000]  # no priorities


def test_the_selector_gives_a_subscriber_s_screen_share_its_layer_before_the_cameras():
    meeting = Meeting(3, remb=2_000_000)
    meeting.recs[1].source = "screen"
    assert meeting.run() == ["q", "f", "q"]  # without the screen first: h, h, h


def test_tiers_serve_screens_then_the_speaker_then_the_rest_each_leaving_the_later_ones_their_floors():
    # 2 Mbit/s: a screen (tier 0), the speaker's camera (1), two other cameras (2), all asking 1.5
    # Mbit/s with a 150 kbit/s lowest layer: the screen gets what the three cameras' floors leave,
    # the speaker what the two others' floors leave, the others the rest
    assert share_budget(2_000_000, [1_500_000] * 4, floors=[0, 150_000, 150_000, 150_000], tiers=[0, 1, 2, 2]) == [
        1_500_000, 200_000, 150_000, 150_000]
    assert share_budget(3_000_000, [1_500_000] * 3, floors=[150_000] * 3, tiers=[1, 2, 2]) == [
        1_500_000, 750_000, 750_000]
    # `first` is tiers 0 and 1
    assert share_budget(2_000_000, [1_500_000, 1_500_000], [True], [0, 150_000]) == share_budget(
        2_000_000, [1_500_000, 1_500_000], floors=[0, 150_000], tiers=[0, 1])


def test_the_active_speaker_s_camera_gets_its_layer_before_the_other_cameras():
    meeting = Meeting(3, remb=2_000_000)
    for i, rec in enumerate(meeting.recs):  # (the rig publishes every track as one participant)
        rec.participant_id = f"PA_pub{i}"
    meeting.selector.speaker = meeting.recs[2].participant_id
    assert meeting.run() == ["q", "q", "f"]  # 1.5 Mbit/s to the speaker, q to the others
    meeting.selector.speaker = meeting.recs[0].participant_id  # someone else speaks: the budget follows
    targets = meeting.run()
    # (the others share 250 kbit/s each: a REMB subscriber's selector tries the next layer now and then)
    assert targets[0] == "f" and targets[2] != "f", targets


class Meeting:
    """One subscriber receiving `n` simulcast cameras (q/h/f at RATES), and the room's selector."""

    def __init__(self, n: int, remb: int, requests: list[str | None] | None = None) -> None:
        self.now = 100.0
        self.recs, self.dts = [], []
        for i in range(n):
            ingress, rec, _ = rig.publish("VP8", rids=list(RATES))
            for k, rid in enumerate(RATES):  # the layers' SSRCs, learnt from their RIDs
                ext = P.one_byte_ext([(4, b"0"), (10, rid.encode())])
                ingress.on_rtp(P.rtp(96, 1, 0, 0xA000 + 16 * i + k, P.vp8_payload(keyframe=True), ext=ext), self.now)
            dt, _ = rig.subscribe(rec, mid=str(i + 1))
            dt.request_layer = requests[i] if requests else None
            self.recs.append(rec)
            self.dts.append(dt)
        self.selector = LayerSelector(lambda pid, msg: None)
        self.selector.tracks = lambda: self.recs
        self.selector.on_estimate("PA_sub", self.dts, remb)
        for rec, dt in zip(self.recs, self.dts, strict=True):
            dt.set_target(self.selector.initial_layer(rec, dt))

    def run(self, seconds: float = 5.0) -> list[str]:
        """The selector's rounds, every layer arriving at its rate; the targets it settles on."""
        for _ in range(int(seconds / 0.5)):
            self.now += 0.5
            for rec in self.recs:
                for rid, layer in rec.layers.items():
                    layer.bitrate, layer.last_packet_at = RATES[rid], self.now
            self.selector.evaluate(self.now)
        return [dt.target.rid if dt.target else "paused" for dt in self.dts]


def test_three_cameras_share_a_2_mbit_link_instead_of_each_taking_it_all():
    targets = Meeting(3, remb=2_000_000).run()
    assert "paused" not in targets
    assert sum(RATES[rid] for rid in targets) <= 2_000_000 * DOWN_TOLERANCE, targets
    assert targets == ["h", "h", "h"]  # 666 kbit/s each: h fits, f does not


def test_one_camera_still_gets_the_whole_estimate():
    assert Meeting(1, remb=2_000_000).run() == ["f"]


def test_a_link_that_carries_everything_gives_everything():
    assert Meeting(3, remb=20_000_000).run() == ["f", "f", "f"]


def test_what_a_thumbnail_does_not_need_goes_to_the_others():
    # shares 150k (all the thumbnail asks for) and 925k each for the other two
    assert Meeting(3, remb=2_000_000, requests=["low", None, None]).run() == ["q", "h", "h"]
    assert Meeting(2, remb=3_500_000, requests=["low", None]).run() == ["q", "f"]


def test_an_estimate_per_m_line_is_not_shared():
    # aiortc sends one REMB per m-line, each naming its own SSRC: each is that track's estimate
    m = Meeting(3, remb=2_000_000)
    for i, dt in enumerate(m.dts):
        m.selector.on_estimate("PA_sub", [dt], 2_000_000, (0x100 + i,))
    assert m.run() == ["f", "f", "f"]


def test_a_pinned_camera_is_served_after_the_speaker_and_before_the_other_cameras():
    meeting = Meeting(3, remb=1_800_000)
    meeting.dts[1].pinned = True
    # 1.8 Mbit/s less the two others' lowest layers: 1.5 Mbit/s to the pinned camera (f)
    assert meeting.run() == ["q", "f", "q"]
    meeting = Meeting(3, remb=3_150_000)
    for i, rec in enumerate(meeting.recs):  # (the rig publishes every track as one participant)
        rec.participant_id = f"PA_pub{i}"
    meeting.selector.speaker = meeting.recs[2].participant_id
    meeting.dts[1].pinned = True
    assert meeting.run() == ["q", "f", "f"]  # the speaker's f first, then the pinned one's, q is what is left
    explained = meeting.selector.explain("PA_sub", meeting.dts, meeting.now)
    assert [t["priority"] for t in explained["tracks"]] == ["other", "pinned", "speaker"]
    assert [t["share_bps"] for t in explained["tracks"]] == [150_000, 1_500_000, 1_500_000]


def test_pinning_the_speaker_or_a_screen_does_not_lower_them():
    meeting = Meeting(2, remb=1_650_000)
    meeting.recs[0].source = "screen"
    meeting.dts[0].pinned = meeting.dts[1].pinned = True
    assert meeting.run() == ["f", "q"]
    assert [t["priority"] for t in meeting.selector.explain("PA_sub", meeting.dts, meeting.now)["tracks"]] == [
        "screen", "pinned"]


def test_the_allocation_says_why_a_camera_is_below_what_its_subscriber_asked_for():
    meeting = Meeting(3, remb=2_000_000)
    targets = meeting.run()
    explained = meeting.selector.explain("PA_sub", meeting.dts, meeting.now)
    assert explained["estimate"] == 2_000_000 and explained["estimator"] == "remb"
    assert explained["pacing_bps"] == 0 and explained["playout_delay_ms"] is None  # (no feedback, no loss)
    first = explained["tracks"][0]
    assert (first["requested"], first["layer"], first["priority"], first["paused"]) == ("f", targets[0], "other", False)
    assert first["need_bps"] == 1_500_000 and first["share_bps"] == pytest.approx(666_667, abs=1)
    assert first["why"] == ("h: f needs 1.5 Mbit/s, more than its share (other) of your downlink estimate, "
                            "667 kbit/s of 2.0 Mbit/s (remb)")
    alone = Meeting(1, remb=2_000_000)
    alone.run()
    (track,) = alone.selector.explain("PA_sub", alone.dts, alone.now)["tracks"]
    assert track["why"] == "f: the best you asked for, and it fits your downlink estimate, 2.0 Mbit/s (remb)"
