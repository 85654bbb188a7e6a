"""Room membership over real peer connections: late joiners, leavers, renegotiation, mute, speaker."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.media import CounterVideo, Sink, Tone


async def _publishing(connect, room: str, name: str, loud: float = 0.5):
    c = await connect(room, name)
    await c.publish(audio=Tone(loud), video=CounterVideo(96, 64))
    return c


def _expected(clients, me):
    return {tid for c in clients if c is not me for tid in c.published.values()}


async def test_six_participants_then_two_leave_and_one_joins(server, connect):
    clients = [await _publishing(connect, "churn", f"p{i}") for i in range(6)]
    for c in clients:
        await c.wait_for(lambda c=c: set(c.remote) == _expected(clients, c), timeout=40)
        assert len(c.remote) == 10
    for gone in clients[:2]:
        await gone.leave()
        await gone.close()
    stay = clients[2:]
    late = await _publishing(connect, "churn", "late")
    final = [*stay, late]
    for c in final:
        await c.wait_for(lambda c=c: set(c.remote) == _expected(final, c), timeout=40)
        # names travel with the tracks, so every tile can be labelled
        assert {info["name"] for info, _ in c.remote.values()} == {o.participant["name"] for o in final if o is not c}
    # the late joiner's media reaches someone who was there before, on a recycled or new m-line
    info, track = next((i, t) for i, t in stay[0].remote.values()
                       if i["participant"] == late.participant["id"] and i["kind"] == "video")
    sink = Sink(track)
    # well under the ~17 s aiortc's jitter buffer freezes a stream whose lost packets never come back
    # (the recycled m-line's handover NACKs, and RTX routing in the client: issue 14)
    await sink.wait_frames(10, timeout=12)
    # the server's view agrees: 5 peers, each receiving exactly the other 4 x 2 tracks
    node = server.node
    assert len(node.peers) == 5
    for peer in node.peers.values():
        assert len(peer.downtracks) == 8
    left = [m for m in stay[0].messages if m["type"] == "participant_left"]
    assert {m["participant"] for m in left} == {c.participant["id"] for c in clients[:2]}


async def test_late_joiner_gets_existing_tracks(server, connect):
    first = await _publishing(connect, "late", "first")
    await asyncio.sleep(0.5)
    second = await connect("late", "second")
    joined = next(m for m in second.messages if m["type"] == "joined")
    assert {t["track"] for t in joined["tracks"]} == set(first.published.values())
    assert [p["name"] for p in joined["participants"]] == ["first"]
    _, track = await second.wait_track(kind="video")
    sink = Sink(track, read_counters=True)
    await sink.wait_frames(15)
    assert sink.counters[-1] > sink.counters[0]


async def test_mute_stops_forwarding_and_unmute_resumes_without_a_gap(server, connect):
    pub = await _publishing(connect, "mute", "pub")
    sub = await connect("mute", "sub")
    _, track = await sub.wait_track(kind="video")
    sink = Sink(track)
    await sink.wait_frames(10)
    await pub.mute("video", True)
    await sub.wait_message("track_muted", muted=True)
    dt = next(dt for p in server.node.peers.values() for dt in p.downtracks.values() if dt.kind == "video")
    await asyncio.sleep(0.3)
    frozen = dt.packets
    await asyncio.sleep(1.0)
    assert dt.packets == frozen  # nothing forwarded while muted
    last_seq = dt.last_seq
    await pub.mute("video", False)
    await sub.wait_message("track_muted", muted=False)
    before = sink.frames
    await sink.wait_frames(before + 10)
    # numbering continued where it stopped: the subscriber's decoder saw no sequence jump
    assert dt.switch_seq is not None
    first_after = (dt.seq_off + dt.switch_seq) & 0xFFFF
    assert first_after == (last_seq + 1) & 0xFFFF


async def test_active_speaker_is_the_loud_one(server, connect):
    quiet = await connect("speak", "quiet")
    await quiet.publish(audio=Tone(0.0005))
    loud = await connect("speak", "loud")
    await loud.publish(audio=Tone(0.8))
    msg = await quiet.wait_message("active_speaker", participant=loud.participant["id"], timeout=20)
    assert msg["participant"] == loud.participant["id"]
    assert not any(m["type"] == "active_speaker" and m["participant"] == quiet.participant["id"]
                   for m in loud.messages)


async def test_h264_is_forwarded_when_both_sides_offer_it(server, connect):
    pub = await connect("h264", "pub", video_codec="H264")
    await pub.publish(video=CounterVideo(160, 120))
    sub = await connect("h264", "sub")
    info, track = await sub.wait_track(kind="video")
    assert info["codec"] == "H264"
    sink = Sink(track, read_counters=True)
    await sink.wait_frames(20)
    assert sink.sizes == {(160, 120)}
    assert all(b > a for a, b in zip(sink.counters, sink.counters[1:]))


async def test_metrics_endpoint_exports_media_counters(server, connect, each_data_path):
    pub = await _publishing(connect, "metrics", "pub")
    sub = await connect("metrics", "sub")
    _, track = await sub.wait_track(kind="video")
    await Sink(track).wait_frames(10)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{server.metrics_port}/metrics") as r:
            assert r.status == 200
            text = await r.text()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values["basement_packets_out_total"] > 0
    assert values["basement_participants"] == 2
    assert values["basement_rooms"] == 1
    assert values["basement_tracks"] == 2
    assert values["basement_forward_latency_seconds_count"] > 0
    if each_data_path == "native":  # the media sockets are ours (the counters are process-wide)
        assert values["basement_datagrams_received_total"] >= values["basement_socket_reads_total"] > 0
    assert all(k.startswith("basement_") for k in values if not k.startswith(("python_", "process_")))
    assert pub.participant is not None
