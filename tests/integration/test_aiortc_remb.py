"""Four aiortc participants, each publishing audio + video to the other three, with aiortc's own
receive-side estimator left on (issue 14).

aiortc's estimator, in a busy client, reports REMB values far below what it receives (70-130 kbit/s
here for a 120 kbit/s stream; 6-33 kbit/s was seen) even on an idle loopback. The SFU must not
believe an estimate that its subscriber's receiver reports contradict (no loss, every packet sent
arriving): video that arrives intact must keep arriving, whole. Believing the estimate paused and
resumed streams every few seconds (the worst decoded 229 of 300 frames in 10 s with nothing lost).

Each participant is a process of its own, as aiortc bots are run: with all four in the test's
interpreter, beside the server, the one event loop ran near a whole core and any other load made
the kernel drop datagrams at full socket buffers (CI: 224 of 300 frames, 5-23 % loss reported).
"""

from __future__ import annotations

import asyncio
import time

from tests.support.aiortc_bot import Bot
from tests.support.servers import native_only

WIDTH, HEIGHT = 96, 64
PARTICIPANTS = 4
WARMUP_S = 4.0  # aiortc's estimator reports from ~3 s on; the SFU needs two receiver reports to vouch
WINDOW_S = 10.0
# Of the packets each subscriber's layer received in the window, the SFU forwards at least this
# share: the SFU-side proof that no estimate withheld video. It does not depend on how busy the
# machine is (forwarding is synchronous per packet); only packets of the last instant can be in
# between the two counters.
MIN_FORWARDED = 0.98
# Of the frames each publisher encoded, each subscriber decodes at least this share: aiortc decodes
# in Python and drops what it cannot keep up with, which depends on the CPU the bots get (a run
# next to a browser test decoded 88 %), so this only checks that video is decoded, at its size.
MIN_DECODED = 0.5


async def _statuses(bots: list[Bot]) -> list[dict]:
    return list(await asyncio.gather(*(b.status() for b in bots)))


# One run: what is judged here (an estimate against receiver reports, `LayerSelector.estimate` and
# `delivered_floor`) is Python on both data paths, and the DownTrack counters it reads are the same
# on both in the unit tier (tests/unit/sfu: test_downtrack, the native parity tests).
@native_only
async def test_four_aiortc_participants_keep_their_video_with_aiortc_remb_on(server):
    # each participant is a process of its own (tests/support/aiortc_bot.py says why)
    bots: list[Bot] = []
    try:
        for i in range(PARTICIPANTS):
            bots.append(await Bot.start(server.url, "remb", f"p{i}", WIDTH, HEIGHT))
        await _check(server, bots)
    finally:
        await asyncio.gather(*(b.stop() for b in bots))


async def _check(server, bots: list[Bot]) -> None:
    names = {b.participant["id"]: b.participant["name"] for b in bots}
    videos = {b.published["video"] for b in bots}

    def expected(bot: Bot) -> set[str]:
        return videos - {bot.published["video"]}

    # everyone decodes everyone else's video
    deadline = time.monotonic() + 60
    while True:
        statuses = await _statuses(bots)
        if all({t for t, s in st["sinks"].items() if s["frames"]} == expected(b) for b, st in zip(bots, statuses)):
            break
        assert time.monotonic() < deadline, statuses
        await asyncio.sleep(0.2)
    # aiortc's REMB is on: the SFU's offers ask for it (goog-remb + abs-send-time) and the clients'
    # answers keep it, which is all aiortc needs to run its estimator and send REMB
    for st in statuses:
        assert "goog-remb" in st["subscriber_sdp"] and "abs-send-time" in st["subscriber_sdp"], st
    await asyncio.sleep(WARMUP_S)
    room = server.node.rooms["remb"]
    assert len(room.selector.estimates) == PARTICIPANTS, room.selector.estimates  # every subscriber sent REMB

    downtracks = [dt for p in server.node.peers.values() for dt in p.downtracks.values() if dt.is_video]
    assert len(downtracks) == PARTICIPANTS * (PARTICIPANTS - 1)
    def counters() -> dict[tuple[str, str], tuple[int, int]]:
        # (packets the DownTrack sent, packets its layer received), read together: nothing runs between
        return {(dt.subscriber_id, dt.track.id): (dt.packets, dt.current.packets if dt.current else 0)
                for dt in downtracks}

    before = await _statuses(bots)
    counted0 = counters()
    start = time.monotonic()
    remb_low = set()  # subscribers whose REMB was below the rate they were being sent
    lowest = 10.0  # the lowest REMB / layer rate seen
    degraded = set()  # (subscriber, track) the SFU paused or thinned at some point in the window
    while time.monotonic() - start < WINDOW_S:
        for dt in downtracks:
            if dt.paused or dt.max_tid is not None:
                degraded.add((dt.subscriber_id, dt.track.id, dt.pause_reason, dt.max_tid))
            if dt.current is not None and dt.current.bitrate:
                lowest = min(lowest, dt.estimate_bps / dt.current.bitrate)
                if dt.estimate_bps < dt.current.bitrate:
                    remb_low.add(dt.subscriber_id)
        await asyncio.sleep(0.1)
    counted1 = counters()
    after = await _statuses(bots)
    forwarded = {key: ((counted1[key][0] - counted0[key][0]), (counted1[key][1] - counted0[key][1]))
                 for key in counted0}

    index0 = {b.published["video"]: st["index"] for b, st in zip(bots, before)}
    index1 = {b.published["video"]: st["index"] for b, st in zip(bots, after)}
    results = []
    for b, st0, st1 in zip(bots, before, after):
        for tid in sorted(expected(b)):
            s0, s1 = st0["sinks"][tid], st1["sinks"][tid]
            results.append((s1["frames"] - s0["frames"], index1[tid] - index0[tid], b.participant["name"],
                            names[s1["participant"]], {tuple(x) for x in s1["sizes"]}))
    pauses = [(b.participant["name"], m["reason"]) for b, st in zip(bots, after) for m in st["paused"]]
    report = "\n".join(f"{who} <- {pub}: decoded {got} of {sent} frames, sizes {sizes}"
                       for got, sent, who, pub, sizes in results)
    report += (f"\npaused: {pauses}\ndegraded: {sorted(degraded)}\nREMB: {room.selector.estimates}, lowest "
               f"{lowest:.2f} of the layer's rate"
               f"\nlayer rates: {sorted(int(dt.current.bitrate) for dt in downtracks if dt.current)}"
               f"\nreported loss: {[dt.fraction_lost for dt in downtracks]}"
               f"\nforwarded / received by the SFU: {sorted(forwarded.values())}")
    print(report)
    for sent_by_sfu, received_by_sfu in forwarded.values():
        assert received_by_sfu >= 5 * WINDOW_S, report
        assert sent_by_sfu >= MIN_FORWARDED * received_by_sfu, report
    for got, sent, _, _, sizes in results:
        # the publishers encode at their own pace (30 fps when the machine keeps up): compare with it
        assert sent >= 5 * WINDOW_S, report
        assert got >= MIN_DECODED * sent, report
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
