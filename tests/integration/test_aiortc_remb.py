"""Four aiortc participants, each publishing audio + video to the other three, with aiortc's own
receive-side estimator left on (issue 14).

aiortc's estimator, in a busy client, reports REMB values far below what it receives (70-130 kbit/s
here for a 120 kbit/s stream; 6-33 kbit/s was seen) even on an idle loopback. The SFU must not
believe an estimate that its subscriber's receiver reports contradict (no loss, every packet sent
arriving): video that arrives intact must keep arriving, whole. Believing the estimate paused and
resumed streams every few seconds (the worst decoded 229 of 300 frames in 10 s with nothing lost).
"""

from __future__ import annotations

import asyncio
import time

from tests.support.media import CounterVideo, Sink, Tone

WIDTH, HEIGHT = 96, 64
PARTICIPANTS = 4
WARMUP_S = 4.0  # aiortc's estimator reports from ~3 s on; the SFU needs two receiver reports to vouch
WINDOW_S = 10.0
MIN_SHARE = 0.9  # of the frames each publisher encoded in the window, each subscriber decodes this many


async def test_four_aiortc_participants_keep_their_video_with_aiortc_remb_on(server, connect):
    videos = [CounterVideo(WIDTH, HEIGHT) for _ in range(PARTICIPANTS)]
    clients = []
    for i, video in enumerate(videos):
        c = await connect("remb", f"p{i}")
        await c.publish(audio=Tone(), video=video)
        clients.append(c)
    by_participant = {c.participant["id"]: v for c, v in zip(clients, videos)}

    def expected(me):
        return {tid for c in clients if c is not me for tid in c.published.values()}

    for c in clients:
        await c.wait_for(lambda c=c: set(c.remote) == expected(c), timeout=40)
    # aiortc's REMB is on: the SFU's offers ask for it (goog-remb + abs-send-time) and the clients'
    # answers keep it, which is all aiortc needs to run its estimator and send REMB
    for c in clients:
        assert c.subscriber is not None
        sdp = c.subscriber.localDescription.sdp
        assert "goog-remb" in sdp and "abs-send-time" in sdp, sdp

    # one sink per remote video of every participant: 4 x 3 streams
    sinks = [(Sink(track), by_participant[info["participant"]], c.participant["name"], info["name"])
             for c in clients for info, track in c.remote.values() if info["kind"] == "video"]
    assert len(sinks) == PARTICIPANTS * (PARTICIPANTS - 1)
    for sink, _, _, _ in sinks:
        await sink.wait_frames(1, timeout=30)
    await asyncio.sleep(WARMUP_S)
    room = server.node.rooms["remb"]
    assert len(room.selector.remb) == PARTICIPANTS, room.selector.remb  # every subscriber sent REMB

    downtracks = [dt for p in server.node.peers.values() for dt in p.downtracks.values() if dt.is_video]
    assert len(downtracks) == len(sinks)
    start = time.monotonic()
    before = [(sink.frames, video.index) for sink, video, _, _ in sinks]
    remb_low = set()  # subscribers whose REMB was below the rate they were being sent
    lowest = 10.0  # the lowest REMB / layer rate seen
    degraded = set()  # (subscriber, track) the SFU paused or thinned at some point in the window
    while time.monotonic() - start < WINDOW_S:
        for dt in downtracks:
            if dt.paused or dt.max_tid is not None:
                degraded.add((dt.subscriber_id, dt.track.id, dt.pause_reason, dt.max_tid))
            if dt.current is not None and dt.current.bitrate:
                lowest = min(lowest, dt.remb_bps / dt.current.bitrate)
                if dt.remb_bps < dt.current.bitrate:
                    remb_low.add(dt.subscriber_id)
        await asyncio.sleep(0.1)
    after = [(sink.frames, video.index) for sink, video, _, _ in sinks]
    end = time.monotonic()

    results = []
    for (sink, _, who, publisher), (f0, i0), (f1, i1) in zip(sinks, before, after):
        results.append((f1 - f0, i1 - i0, who, publisher,
                        {(w, h) for at, w, h in sink.timeline if start <= at <= end}))
    pauses = [(c.participant["name"], m["reason"]) for c in clients for m in c.messages
              if m.get("type") == "paused" and m.get("paused")]
    report = "\n".join(f"{who} <- {pub}: decoded {got} of {sent} frames, sizes {sizes}"
                       for got, sent, who, pub, sizes in results)
    report += (f"\npaused: {pauses}\ndegraded: {sorted(degraded)}\nREMB: {room.selector.remb}, lowest "
               f"{lowest:.2f} of the layer's rate"
               f"\nlayer rates: {sorted(int(dt.current.bitrate) for dt in downtracks if dt.current)}"
               f"\nreported loss: {[dt.fraction_lost for dt in downtracks]}")
    print(report)
    for got, sent, _, _, sizes in results:
        # the publishers encode at their own pace (30 fps when the machine keeps up): compare with it
        assert sent >= 5 * WINDOW_S, report
        assert got >= MIN_SHARE * sent, report
        assert sizes == {(WIDTH, HEIGHT)}, report
    # No pause: the requirement, and what the viewer sees. Thinning (max_tid 0) is only
    # reported: aiortc's VP8 has no temporal layers, so it costs no frame here (CI: 302 of 302
    # decoded while thinned), and whether it happens depends on whether the REMB dips before the
    # receiver reports have vouched for the rate (the floor needs 2 s of them), i.e. on load.
    assert not pauses, report
    # Whether aiortc's estimate dipped below the layer's rate in this window depends on how busy the
    # machine is (on a quiet one it stays at 0.8-0.9 of it), so it is reported, not required: the
    # low-estimate cases themselves are replayed deterministically in
    # tests/unit/sfu/test_probes_and_estimates.py.
    print(f"subscribers whose REMB went below the layer's rate: {len(remb_low)}")
