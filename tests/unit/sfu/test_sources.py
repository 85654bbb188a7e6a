"""sfu.peer.check_sources: what an offer's `sources` may say, against the offer and what is live."""

from __future__ import annotations

import pytest

from sfu.api import MediaError
from sfu.peer import check_sources
from sfu.sdp import MediaInfo, OfferInfo

OFFER = OfferInfo([MediaInfo("0", "audio", "sendonly"), MediaInfo("1", "video", "sendonly"),
                   MediaInfo("2", "video", "sendonly"), MediaInfo("3", "audio", "sendonly")], data_mid="4")


def test_named_mlines_and_defaults():
    assert check_sources(OFFER, None, {}) == {}
    assert check_sources(OFFER, {"2": "screen", "3": "screen_audio"}, {}) == {"2": "screen", "3": "screen_audio"}
    # naming a live track with the source it has is fine (every offer repeats them)
    assert check_sources(OFFER, {"2": "screen"}, {"2": ("TR_p_2", "screen")}) == {"2": "screen"}


@pytest.mark.parametrize("sources, live, message", [
    (["screen"], {}, "sources must map mids to sources"),
    ({"1": "window"}, {}, "unknown source 'window'; one of camera, microphone, screen, screen_audio"),
    ({"1": 5}, {}, "unknown source '5'"),
    ({"4": "screen"}, {}, "sources names mid '4', which the offer has no audio or video m-line for"),
    ({"0": "screen"}, {}, "mid '0' is audio; screen is video"),
    ({"1": "screen"}, {"1": ("TR_p_1", "camera")},
     "track TR_p_1 is published as camera: unpublish it before sending screen on mid 1"),
    ({"1": "screen", "2": "screen"}, {}, "at most one screen track per participant"),
    ({"2": "screen"}, {"1": ("TR_p_1", "screen")}, "at most one screen track per participant"),
    ({"0": "screen_audio", "3": "screen_audio"}, {}, "at most one screen_audio track per participant"),
])
def test_refusals(sources, live, message):
    with pytest.raises(MediaError) as e:
        check_sources(OFFER, sources, live)
    assert e.value.code == "invalid_sources" and e.value.message.startswith(message), e.value.message


def test_an_unpublished_screen_does_not_count():
    # a stopped share's m-line is not live: sharing on another mid is allowed
    assert check_sources(OFFER, {"2": "screen"}, {"1": ("TR_p_1", "camera")}) == {"2": "screen"}


async def test_unpublishing_is_rate_limited(monkeypatch):
    """Every unpublish (and the re-share after it) renegotiates the room: ten at once, then one per 2 s."""
    import types

    from sfu import peer as peermod

    now = [1000.0]
    monkeypatch.setattr(peermod.time, "monotonic", lambda: now[0])
    p = peermod.Peer("PA_p", "p", types.SimpleNamespace(observe_audio=None), emit=lambda m: None)
    removed = []
    track = types.SimpleNamespace(id="TR_PA_p_1", mid="1")
    p.ingress = types.SimpleNamespace(tracks={"1": track}, remove=removed.append)
    for _ in range(peermod.UNPUBLISH_BURST):
        assert await p.unpublish("TR_PA_p_1") is track
    with pytest.raises(MediaError) as e:
        await p.unpublish("TR_PA_p_1")
    assert e.value.code == "rate_limited" and "one every 2 s" in e.value.message
    assert len(removed) == peermod.UNPUBLISH_BURST
    now[0] += 2.0
    assert await p.unpublish("TR_PA_p_1") is track
