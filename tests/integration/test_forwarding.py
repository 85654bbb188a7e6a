"""aiortc publisher -> Basement -> two aiortc subscribers, with real ICE/DTLS/SRTP on 127.0.0.1."""

from __future__ import annotations

from sfu import datapath
from sfu.metrics import STATS
from tests.support.media import CounterVideo, Sink, Tone


async def test_publisher_reaches_two_subscribers_without_transcoding(server, connect):
    pub = await connect("fwd", "alice")
    subs = [await connect("fwd", n) for n in ("bob", "carol")]
    video = CounterVideo()
    await pub.publish(audio=Tone(), video=video)
    sinks = []
    for s in subs:
        info, track = await s.wait_track(kind="video")
        assert info["participant"] == pub.participant["id"]
        assert info["name"] == "alice"
        _, audio = await s.wait_track(kind="audio")
        sinks.append((Sink(track, read_counters=True), Sink(audio)))
    for vs, aus in sinks:
        await vs.wait_frames(40)
        await aus.wait_frames(50)
    for vs, _ in sinks:
        assert vs.sizes == {(320, 240)}
        c = vs.counters
        # the picture is the publisher's: counters strictly increase and stay within what was sent
        assert all(b > a for a, b in zip(c, c[1:])), c[:20]
        assert c[-1] < video.index
    # the SFU forwarded packets and never ran a decoder or an encoder
    assert STATS.packets_out > 0
    for peer in server.node.peers.values():
        assert peer.decoded_nothing()
    # the publisher's SRTP: unprotected natively where it entered the ICE connection on the native
    # path (sfu.native_receive), by aiortc's pylibsrtp on the Python path
    taken = server.node.peers[pub.participant["id"]].publisher.native_receive
    if datapath.current() == "native":
        assert taken is not None and taken.unprotected >= 90 and taken.refused == 0
    else:
        assert taken is None


def _lose_video_packets(sub, first: int = 100, count: int = 5) -> list[int]:
    """The subscriber loses `count` consecutive VP8 packets after `first` have arrived (its own
    DTLS transport drops them after unprotecting). Returns the lost sequence numbers, as they go."""
    dropped: list[int] = []
    video_pts: set[int] = set()
    seen = {"n": 0}

    def drop_some(pc):
        dtls = pc.getTransceivers()[0].receiver.transport
        if getattr(dtls, "_test_hooked", False):
            return
        dtls._test_hooked = True
        original = dtls._handle_rtp_data

        async def lossy(data, arrival_time_ms):
            if data[1] & 0x7F in video_pts:
                seen["n"] += 1
                if first <= seen["n"] < first + count:
                    dropped.append(int.from_bytes(data[2:4], "big"))
                    return
            await original(data, arrival_time_ms)

        dtls._handle_rtp_data = lossy

    sub.on_offer_applied = lambda pc: (video_pts.update(
        c.payloadType for t in pc.getTransceivers() if t.kind == "video" for c in t._codecs
        if c.mimeType.lower() == "video/vp8"), drop_some(pc))
    return dropped


async def test_lost_packets_come_back_from_the_sfu_cache(server, connect):
    pub = await connect("nack", "alice")
    sub = await connect("nack", "bob")
    dropped = _lose_video_packets(sub)
    before = STATS.retransmissions
    await pub.publish(audio=Tone(), video=CounterVideo())
    _, track = await sub.wait_track(kind="video")
    sink = Sink(track, read_counters=True)
    await sink.wait_frames(60)
    assert len(dropped) == 5
    dts = [dt for p in server.node.peers.values() for dt in p.downtracks.values() if dt.kind == "video"]
    assert sum(dt.retransmissions for dt in dts) >= 5
    assert STATS.retransmissions - before >= 5


async def test_retransmissions_reach_a_subscriber_with_two_video_tracks(server, connect):
    """Both video m-lines share the RTX payload type, so only the RTX SSRC tells them apart: the
    client must route it (signalling.protocol.client._route_rtx), or one lost packet freezes that
    video until aiortc's jitter buffer gives up (~17 s)."""
    pubs = [await connect("nack2", name) for name in ("alice", "carol")]
    sub = await connect("nack2", "bob")
    dropped = _lose_video_packets(sub, first=150)
    before = STATS.retransmissions
    for p in pubs:
        await p.publish(video=CounterVideo())
    sinks = []
    for p in pubs:
        _, track = await sub.wait_track(kind="video", participant=p.participant["id"])
        sinks.append(Sink(track, read_counters=True))
    await sub.wait_for(lambda: len(dropped) == 5, timeout=15)
    lost_at = [s.frames for s in sinks]
    # 60 more frames each (2 s at 30 fps), well before a frozen stream's jitter buffer would let go
    for s, n in zip(sinks, lost_at):
        await s.wait_frames(n + 60, timeout=6)
        c = s.counters
        assert all(b > a for a, b in zip(c, c[1:])), c[-20:]
    assert STATS.retransmissions - before >= 5
