"""GStreamer webrtcbin (a WebRTC stack Basement did not write, with an RSA DTLS certificate) as a
publisher and as a subscriber, against aiortc peers, decoding real VP8 at the expected size and rate."""

from __future__ import annotations

import asyncio
import time

import pytest

from sfu import consent
from tests.e2e.gstreamer.gst import GstPeer, RelayClient
from tests.support.media import CounterVideo, Sink, Tone, decoded_sizes

pytestmark = pytest.mark.timeout(120)

WIDTH, HEIGHT, FPS = 320, 240, 30
AUDIO_FPS = 50  # Opus packets of 20 ms
WINDOW = 4.0  # seconds over which rates are measured, after the stream has settled
# how long a dead publisher may take to be unpublished: about 6 consent checks 0.5 s apart, each
# waiting 0.5 s for its answer, plus scheduling on a loaded machine
BOUND = 15.0


@pytest.fixture
async def gst(tmp_path):
    """gst(server, room, name) -> (a webrtcbin driver, its relay client, joined); all closed at teardown."""
    made: list[tuple[GstPeer, RelayClient]] = []

    async def make(server, room: str, name: str) -> tuple[GstPeer, RelayClient]:
        peer = await GstPeer.start(tmp_path / f"gst-{name}.log")
        client = RelayClient(server.url, peer)
        made.append((peer, client))
        await client.connect()
        await client.join(room, name)
        return peer, client

    yield make
    for peer, client in made:
        await client.close()
        await peer.close()


def _rate(timeline: list[tuple[float, int, int]], start: float, end: float) -> tuple[float, set[tuple[int, int]]]:
    frames = [(w, h) for t, w, h in timeline if start <= t < end]
    return len(frames) / (end - start), set(frames)


async def test_webrtcbin_publishes_vp8_and_opus_to_an_aiortc_subscriber(server, connect, gst):
    peer, pub = await gst(server, "gst-pub", "webrtcbin")
    sub = await connect("gst-pub", "aiortc")
    await pub.publish_gst(WIDTH, HEIGHT, FPS)
    _, video = await sub.wait_track(kind="video", timeout=30)
    _, audio = await sub.wait_track(kind="audio", timeout=30)
    vsink, asink = Sink(video), Sink(audio)
    try:
        await vsink.wait_frames(30, timeout=30)
        await asink.wait_frames(50, timeout=30)
        start = time.monotonic()
        audio_before = asink.frames
        await asyncio.sleep(WINDOW)
        fps, sizes = _rate(vsink.timeline, start, start + WINDOW)
        audio_frames = asink.frames - audio_before
    finally:
        vsink.stop()
        asink.stop()
    assert sizes == {(WIDTH, HEIGHT)}, sizes
    assert fps >= 0.8 * FPS, f"{fps:.1f} frames/s decoded, expected >= {0.8 * FPS}"
    assert audio_frames >= 0.8 * AUDIO_FPS * WINDOW, f"{audio_frames / WINDOW:.1f} Opus frames/s decoded"
    # webrtcbin offered actpass: the SFU answered passive, so webrtcbin's RSA certificate never
    # has to match the cipher suites aiortc offers as a DTLS client (ECDSA only)
    transport = server.node.peers[pub.participant["id"]].publisher
    assert transport._dtls._role == "server"
    assert transport.srtp_profile is not None
    assert peer.errors() == []
    assert [m for m in pub.messages if m["type"] == "error"] == []  # every relayed candidate was taken


async def test_webrtcbin_subscribes_to_an_aiortc_publisher_and_decodes(server, connect, gst):
    pub = await connect("gst-sub", "aiortc")
    await pub.publish(audio=Tone(), video=CounterVideo(WIDTH, HEIGHT))
    peer, sub = await gst(server, "gst-sub", "webrtcbin")
    decoding = await peer.wait_event("decoding", kind="video", timeout=30)
    assert (decoding["width"], decoding["height"]) == (WIDTH, HEIGHT)
    await asyncio.sleep(1.0)  # past the first keyframe's burst
    first = await peer.stats()
    await asyncio.sleep(WINDOW)
    last = await peer.stats()
    elapsed = last["now"] - first["now"]
    fps = (last["video"]["frames"] - first["video"]["frames"]) / elapsed
    audio_rate = (last["audio"]["buffers"] - first["audio"]["buffers"]) / elapsed
    assert (last["video"]["width"], last["video"]["height"]) == (WIDTH, HEIGHT)
    assert abs(fps - FPS) <= 0.2 * FPS, f"webrtcbin decoded {fps:.1f} frames/s, expected {FPS} +- 20 %"
    assert audio_rate >= 0.8 * AUDIO_FPS, f"webrtcbin decoded {audio_rate:.1f} Opus frames/s"
    # the SFU offered actpass and webrtcbin answered active: the SFU is the DTLS server here too,
    # so its native SRTP egress (keyed from the exporter as the server) is what webrtcbin decoded
    transport = server.node.peers[sub.participant["id"]].subscriber
    assert transport._dtls._role == "server"
    assert transport.srtp_profile is not None
    assert peer.errors() == []
    assert [m for m in sub.messages if m["type"] == "error"] == []  # every relayed candidate was taken


async def test_a_publisher_that_dies_is_unpublished_within_a_bound(server, connect, gst, monkeypatch):
    # consent (sfu.consent, RFC 7675) expires 30 s after the last answered check, checks 5 s apart;
    # scaled by ten, the same rule fits a test's patience
    monkeypatch.setattr(consent, "INTERVAL_S", 0.5)
    monkeypatch.setattr(consent, "EXPIRY_S", 3.0)
    peer, pub = await gst(server, "gst-fail", "webrtcbin")
    sub = await connect("gst-fail", "aiortc")
    await pub.publish_gst(WIDTH, HEIGHT, FPS)
    _, video = await sub.wait_track(kind="video", timeout=30)
    await sub.wait_track(kind="audio", timeout=30)
    assert await decoded_sizes(video, 15) == {(WIDTH, HEIGHT)}
    tracks = {info["track"] for info, _ in sub.remote.values() if info["participant"] == pub.participant["id"]}
    assert len(tracks) == 2
    offers_before = len([m for m in sub.messages if m["type"] == "offer"])  # (the last one carried the tracks)

    # the process dies: no DTLS close_notify, no ICE, only silence (stopping the pipeline
    # gracefully looks the same from here: webrtcbin 1.22 sends no close_notify either)
    died = time.monotonic()
    peer.kill()
    failed = await pub.wait_message("transport_failed", timeout=BOUND)
    assert failed["target"] == "publisher" and set(failed["tracks"]) == tracks
    assert failed["state"] in ("failed", "closed")
    for t in tracks:
        await sub.wait_message("track_unpublished", timeout=BOUND, track=t, participant=pub.participant["id"])
    # the subscriber's m-lines are renegotiated inactive (kept for the next tracks)
    offers = lambda: [m for m in sub.messages if m["type"] == "offer"]  # noqa: E731
    await sub.wait_for(lambda: not sub.remote and len(offers()) > offers_before, timeout=BOUND)
    took = time.monotonic() - died
    assert took < BOUND, took
    node_sub = server.node.peers[sub.participant["id"]]
    assert node_sub.downtracks == {} and len(node_sub.free_slots) == 2
    assert server.node.peers[pub.participant["id"]].tracks == []

    # the m-lines are recycled for the next publisher, which the subscriber decodes
    other = await connect("gst-fail", "aiortc-2")
    await other.publish(audio=Tone(), video=CounterVideo(WIDTH, HEIGHT))
    _, video = await sub.wait_track(kind="video", participant=other.participant["id"], timeout=30)
    sizes = await decoded_sizes(video, 10)
    assert sizes == {(WIDTH, HEIGHT)}
    assert len(sub.subscriber.getTransceivers()) == 2
