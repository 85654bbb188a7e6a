"""A second video source: a participant shares its screen beside its camera, stops, shares again.

Every track says what it carries (`source`: camera, microphone, screen, screen_audio), named by the
publisher per m-line in its offer; `unpublish` stops one track while the others go on, and the next
offer on the same connection publishes it again (a browser keeps the stopped sender's m-line)."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from signalling.protocol.client import ServerError
from tests.support.media import CounterVideo, Sink, Tone

CAMERA, SCREEN = (96, 64), (320, 180)


def _sink_of(client, track_id: str) -> Sink:
    info, track = client.remote[track_id]
    return Sink(track)


async def _frames_at(sink: Sink, size: tuple[int, int], n: int = 10) -> None:
    await sink.wait_frames(n, timeout=20)
    assert {(w, h) for _, w, h in sink.timeline[-n:]} == {size}


async def test_a_screen_share_beside_the_camera_then_stopped_and_shared_again(server, connect):
    pub = await connect("share", "presenter")
    await pub.publish(audio=Tone(0.5), video=CounterVideo(*CAMERA), screen=CounterVideo(*SCREEN))
    camera, screen = pub.published["video"], pub.published["screen"]
    viewer = await connect("share", "viewer")
    joined = next(m for m in viewer.messages if m["type"] == "joined")
    assert {t["track"]: (t["kind"], t["source"]) for t in joined["tracks"]} == {
        pub.published["audio"]: ("audio", "microphone"), camera: ("video", "camera"), screen: ("video", "screen")}
    await viewer.wait_for(lambda: {camera, screen} <= set(viewer.remote), timeout=20)
    camera_sink, screen_sink = _sink_of(viewer, camera), _sink_of(viewer, screen)
    await _frames_at(camera_sink, CAMERA)
    await _frames_at(screen_sink, SCREEN)

    # stop sharing: the room hears it, the camera goes on
    assert (await pub.unpublish(screen))["type"] == "unpublished"
    await viewer.wait_message("track_unpublished", track=screen, participant=pub.participant["id"])
    await viewer.wait_for(lambda: screen not in viewer.remote, timeout=15)
    assert [r.source for r in server.node.peers[pub.participant["id"]].tracks] == ["microphone", "camera"]
    before = camera_sink.frames
    await camera_sink.wait_frames(before + 10, timeout=20)
    # the presenter's screen sender still runs: its packets are counted drops, not routed anywhere
    ingress = server.node.peers[pub.participant["id"]].ingress
    assert ingress.dropped.get("unpublished", 0) > 0, ingress.dropped
    unpublished = [m for m in viewer.messages if m["type"] == "track_unpublished"]
    assert [m["track"] for m in unpublished] == [screen]

    # an offer that does not name the stopped m-line leaves it unpublished (a browser keeps the
    # stopped sender's m-line in every offer it makes)
    sources = dict(pub._sources)
    pub._sources = {mid: src for mid, src in sources.items() if src != "screen"}
    await pub.republish()
    assert [r.source for r in server.node.peers[pub.participant["id"]].tracks] == ["microphone", "camera"]
    # share again on the same m-line: a new offer naming it publishes it anew, with the same id and source
    pub._sources = sources
    await pub.republish()
    shared = await viewer.wait_message("track_published", timeout=15)
    assert (shared["track"]["track"], shared["track"]["source"]) == (screen, "screen")
    await viewer.wait_for(lambda: screen in viewer.remote, timeout=20)
    assert viewer.remote[screen][0]["source"] == "screen"
    await _frames_at(_sink_of(viewer, screen), SCREEN)


async def test_sources_that_do_not_match_the_offer_are_refused(server, connect):
    pub = await connect("share-bad", "presenter")
    await pub.publish(video=CounterVideo(*CAMERA))
    (mid,) = pub._sources
    sdp = pub.publisher.localDescription.sdp
    for sources, why in (({mid: "microphone"}, f"mid {mid!r} is video; microphone is audio"),
                         ({"9": "screen"}, "no audio or video m-line for"),
                         ({mid: "screen"}, "is published as camera: unpublish it")):
        with pytest.raises(ServerError) as e:
            await pub.request({"type": "offer", "target": "publisher", "sdp": sdp, "sources": sources})
        assert e.value.code == "invalid_sources" and why in e.value.message, e.value
    with pytest.raises(ServerError) as e:
        await pub.unpublish("TR_nobody_1")
    assert e.value.code == "unknown_track"
    # the camera was never disturbed
    assert [r.source for r in server.node.peers[pub.participant["id"]].tracks] == ["camera"]


async def test_one_screen_per_participant(server, connect):
    """Screens are served first from every subscriber's estimate: a participant naming all its video
    'screen' would take the others' cameras' share, so it may have one (and one screen_audio)."""
    pub = await connect("share-two", "presenter")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for _ in range(2):
            pc.addTransceiver(CounterVideo(*SCREEN), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        mids = [t.mid for t in pc.getTransceivers()]
        with pytest.raises(ServerError) as e:
            await pub.request({"type": "offer", "target": "publisher", "sdp": pc.localDescription.sdp,
                               "sources": {m: "screen" for m in mids}})
        assert e.value.code == "invalid_sources" and "at most one screen track" in e.value.message
        assert server.node.peers[pub.participant["id"]].tracks == []
    finally:
        await pc.close()
