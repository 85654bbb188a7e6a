"""sfu.allocation: the priorities a subscriber's estimate is shared by, and the sentence that says why
a track gets its layer (the protocol's `allocation` reply). The sharing itself: test_shared_budget."""

from __future__ import annotations

from sfu.allocation import PRIORITIES, kbps, why


def _why(**kw) -> str:
    args = dict(requested="f", layer="h", above=("f", 1_500_000.0), usable=700_000.0, estimate=2_000_000.0,
                estimator="transport-cc", reason="bandwidth", pause_reason="", thinned=None, priority="other",
                shared=True)
    args.update(kw)
    return why(**args)


def test_priorities_are_served_screen_speaker_pinned_then_the_rest():
    assert PRIORITIES == ("screen", "speaker", "pinned", "other")


def test_rates_read_as_people_write_them():
    assert [kbps(x) for x in (None, 30_000, 640_400, 1_000_000, 1_460_000)] == [
        "unknown", "30 kbit/s", "640 kbit/s", "1.0 Mbit/s", "1.5 Mbit/s"]


def test_each_case_has_its_own_sentence():
    assert _why() == ("h: f needs 1.5 Mbit/s, more than its share (other) of your downlink estimate, "
                      "700 kbit/s of 2.0 Mbit/s (transport-cc)")
    assert _why(requested=None, layer=None) == "off: you asked for no video on this track"
    assert _why(layer=None, pause_reason="bandwidth", shared=False) == (
        "paused: even the lowest layer does not fit your downlink estimate, 2.0 Mbit/s (transport-cc), "
        "and your reports show loss")
    assert _why(layer=None, pause_reason="muted") == "paused: muted"
    assert _why(estimate=None, estimator=None, usable=None, layer="f", above=None) == (
        "f: the best you asked for (no downlink estimate yet)")
    assert _why(layer="q", above=("h", 500_000.0), thinned=0).endswith(
        "; base temporal layer only (a lower frame rate), since even this layer does not fit")
    assert _why(layer="q", above=("h", 500_000.0), thinned=1).endswith(
        "; temporal layers 0-1 only (a lower frame rate), since even this layer does not fit")
    assert _why(above=None) == "h: the layer above is not arriving now"
