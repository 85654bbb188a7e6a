"""Key frames through a shallow queue (issue #15: "pacing smooths the probes and keyframe bursts"):
the SFU's pacing (sfu.pacing) keeps a publisher's key-frame bursts from overflowing a subscriber's
bottleneck.

The publisher is an aiortc bot (960x540 VP8 at ~1.5 Mbit/s), which, like GStreamer's webrtcbin and
most gateways, sends each frame's packets back to back: a key frame of ~20 KB reaches the SFU as
one burst, and is forwarded as it arrives. The subscriber, a Chromium, sits behind a 3 Mbit/s token
bucket whose queue holds 25 ms (tests/support/netns.py), so what does not fit is dropped
(`Link.dropped`, the bucket's own count), NACKed and resent. A key frame of the stream is asked for
every 2 s, in a 12 s phase with pacing on and one with it off, in one run: with it on, the burst waits
in the SFU and crosses the bottleneck at pacing_factor (1.25) x the estimate instead of at once.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from sfu import pacing
from tests.support.aiortc_bot import Bot
from tests.support.netns import SERVER_IP, Link
from tests.support.servers import native_only

pytestmark = pytest.mark.timeout(180)

LINK_BPS = 3_000_000
QUEUE_MS = 25
KEYFRAME_S = 2.0
PHASE_S = 12.0


@native_only
async def test_key_frame_bursts_wait_in_the_sfu_not_in_a_shallow_queue_that_drops_them(make_server, browser):
    link = Link().start()
    bot = None
    try:
        server = await make_server(host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"])
        bot = await Bot.start(server.url, "keys", "aiortc", 960, 540)
        link.limit(LINK_BPS, queue_ms=QUEUE_MS)
        page = await browser(server, "keys", "watcher", audio="0", camera="0", prefix=link.command())
        await page.wait_for("window.basement.stats().then(s => s.inbound.some(i => i.kind === 'video' "
                            "&& i.framesDecoded > 0))", timeout=30)
        dts = [dt for p in server.node.peers.values() for dt in p.downtracks.values() if dt.is_video]
        assert len(dts) == 1
        dt = dts[0]
        await asyncio.sleep(4)  # the estimate settles (it starts at 300 kbit/s; what arrives lifts it)

        async def phase(factor: float) -> dict[str, float]:
            pacing.configure_pacing(factor)
            dt.transport.pacing.on_estimate(dt.transport.estimator.estimate_bps, time.monotonic())
            await asyncio.sleep(1)  # what the last key frame left behind has crossed
            stats = await page.evaluate("window.basement.stats()")
            before = next(s for s in stats["inbound"] if s.get("kind") == "video")
            dropped, paced = link.dropped(), dt.transport.egress.paced
            end = time.monotonic() + PHASE_S
            while time.monotonic() < end:
                dt.track.request_keyframe(None, "test")
                await asyncio.sleep(KEYFRAME_S)
            stats = await page.evaluate("window.basement.stats()")
            after = next(s for s in stats["inbound"] if s.get("kind") == "video")
            return {"dropped": link.dropped() - dropped, "paced": dt.transport.egress.paced - paced,
                    "keyframes": after["keyFramesDecoded"] - before["keyFramesDecoded"],
                    "frames": after["framesDecoded"] - before["framesDecoded"],
                    "estimate": dt.transport.estimator.estimate_bps, "pacing": dt.transport.pacing.bps}

        # paced first: its estimate is then the one pacing itself leads to. Unpaced, key frames reach
        # the subscriber at the link's rate, its estimate reads ~0.9 of the link, and 1.25 x that,
        # where pacing starts, is above the link until the estimate comes down again.
        paced = await phase(pacing.DEFAULT_FACTOR)
        unpaced = await phase(0)
        seen = f"unpaced {unpaced}, paced {paced}"
        print(seen)
        keys = int(PHASE_S // KEYFRAME_S)
        # the bursts are real: without pacing they overflow the queue, a few packets each
        assert unpaced["dropped"] >= keys, seen
        assert unpaced["paced"] == 0 and paced["paced"] > 0, seen
        # with it, most of that loss is gone (in 20 s phases of the bench: 81-95 % of it; here at
        # least half, which a run of six key frames a phase shows with room); every key frame still
        # decodes, and the video plays on
        assert paced["dropped"] <= unpaced["dropped"] / 2, seen
        assert paced["keyframes"] >= keys - 1 and unpaced["keyframes"] >= keys - 1, seen
        assert paced["frames"] >= 0.9 * unpaced["frames"], seen
    finally:
        pacing.configure_pacing(pacing.DEFAULT_FACTOR)
        if bot is not None:
            await bot.stop()
        link.stop()
