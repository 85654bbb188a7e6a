"""Peer to peer for two (issue 18): two Chromium pages in a room that allows it send their media
directly, the SFU relaying only their signalling; a third participant moves them back through the
SFU without a visible interruption (make-before-break), and they go direct again when it leaves."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from sfu.metrics import STATS
from tests.e2e.browser.test_browser import joined, wait_decoding
from tests.support.browser import Browser
from tests.support.media import CounterVideo, Sink, Tone
from tests.support.servers import native_only

# Pairing, the make-before-break move and the pages' own connection are signalling and the web
# client; what the SFU forwards for the third participant is what every forwarding test checks on
# both data paths: one run.
pytestmark = [pytest.mark.timeout(180), native_only]


def shown_js(participant: str) -> str:
    """Frames the page has shown in the tile of `participant` (whichever path they came on). Firefox
    counts no playback quality for a MediaStream: its painted frames, then."""
    sel = json.dumps(f'#grid .tile.remote[data-participant="{participant}"]:not(.screen) video')
    return (f"((v) => v ? (v.getVideoPlaybackQuality().totalVideoFrames || v.mozPaintedFrames || 0) : 0)"
            f"(document.querySelector({sel}))")


async def showing(page: Browser, participant: str, more: int = 10, timeout: float = 20.0) -> None:
    start = await page.evaluate(shown_js(participant))
    await page.wait_for(f"{shown_js(participant)} >= {start + more}", timeout=timeout)


async def sfu_quiet(seconds: float = 2.0) -> tuple[int, int]:
    """RTP packets the SFU received and forwarded over `seconds`."""
    before = (STATS.packets_in, STATS.packets_out)
    await asyncio.sleep(seconds)
    return STATS.packets_in - before[0], STATS.packets_out - before[1]


class Stalls:
    """Samples a tile's shown frames every 100 ms; the longest time they did not advance."""

    def __init__(self, page: Browser, participant: str) -> None:
        self.page, self.participant, self.longest, self._task = page, participant, 0.0, None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        last, since = -1, time.monotonic()
        while True:
            n = await self.page.evaluate(shown_js(self.participant))
            now = time.monotonic()
            if n != last:
                last, since = n, now
            self.longest = max(self.longest, now - since)
            await asyncio.sleep(0.1)

    def stop(self) -> float:
        self._task.cancel()
        return self.longest


async def test_two_pages_go_direct_a_third_brings_them_back_through_the_sfu_and_they_go_direct_again(
        make_server, connect, browser):
    server = await make_server(p2p=True)
    ann = await browser(server, "duo", "ann")
    ann_id = (await joined(ann))["participant"]["id"]
    ben = await browser(server, "duo", "ben")
    ben_id = (await joined(ben))["participant"]["id"]

    # both send directly: each shows the other, and the SFU forwards nothing for them
    for page in (ann, ben):
        await page.wait_for("window.basement.direct === 'direct' && window.basement.sfuStandby", timeout=30)
    await showing(ann, ben_id)
    await showing(ben, ann_id)
    assert await sfu_quiet() == (0, 0)
    texts = await ann.evaluate("window.basement.log.map(e => e.text)")
    assert "peer to peer with ben: media no longer goes through the server" in texts

    # a third joins: within 2 s everyone decodes everyone, and ann's and ben's tiles never froze
    stalls = [Stalls(ann, ben_id), Stalls(ben, ann_id)]
    for s in stalls:
        s.start()
    t0 = time.monotonic()
    carl = await connect("duo", "carl", url=server.url)
    await carl.publish(audio=Tone(), video=CounterVideo(320, 240))

    async def carl_decodes(pid: str) -> float:
        _, track = await carl.wait_track(kind="video", participant=pid, timeout=10)
        await Sink(track).wait_frames(1, timeout=10)
        return time.monotonic() - t0

    async def decodes_carl(page: Browser) -> float:
        await wait_decoding(page, carl.participant["id"], more=1, timeout=10)
        return time.monotonic() - t0

    # each of the four watched at once: one after the other, each wait's polling (a CDP round trip
    # and a 0.25 s interval, seconds on a loaded CI machine) added to the next one's (2.75 s once)
    times = await asyncio.gather(carl_decodes(ann_id), carl_decodes(ben_id), decodes_carl(ann), decodes_carl(ben))
    took = max(times)
    print(f"carl decodes ann, ben; ann, ben decode carl: {[round(t, 2) for t in times]} s after carl joined")
    assert took < 2.0, f"three decoding each other {took:.2f} s after the third joined: {times}"
    for page, other in ((ann, ben_id), (ben, ann_id)):
        await page.wait_for("window.basement.direct === 'off' && !window.basement.sfuStandby", timeout=10)
        # the tile now shows the SFU's media: decoded through the subscribe connection
        await wait_decoding(page, other, more=10)
        await showing(page, other)
    longest = [s.stop() for s in stalls]
    assert max(longest) < 1.0, f"tiles froze for {longest} s across the switch"
    packets_in, packets_out = await sfu_quiet()
    assert packets_in > 0 and packets_out > 0

    # the third leaves: back to direct, the SFU quiet again
    await carl.leave()
    for page in (ann, ben):
        await page.wait_for("window.basement.direct === 'direct' && window.basement.sfuStandby", timeout=30)
    await showing(ann, ben_id)
    await showing(ben, ann_id)
    assert await sfu_quiet() == (0, 0)
    assert await ann.evaluate("window.basement.directSwitches") == 3  # direct, back, direct again

    # the direct path dies (as ann sees it): both go back through the SFU and decode each other there
    await ann.evaluate("window.basement.directFail()")
    for page, other in ((ann, ben_id), (ben, ann_id)):
        await page.wait_for("window.basement.direct === 'off' && !window.basement.sfuStandby", timeout=10)
        await wait_decoding(page, other, more=10)
        await showing(page, other)
    texts = await ben.evaluate("window.basement.log.map(e => e.text)")
    assert "the direct connection failed on the other side: back through the server" in texts


async def test_a_room_that_does_not_allow_it_or_a_client_that_cannot_stays_on_the_sfu(make_server, browser):
    server = await make_server()  # p2p off (the default)
    ann = await browser(server, "solo", "ann")
    await joined(ann)
    ben = await browser(server, "solo", "ben", p2p="0")
    ben_id = (await joined(ben))["participant"]["id"]
    await wait_decoding(ann, ben_id, more=10)
    assert await ann.evaluate("window.basement.events.filter(m => m.type === 'p2p').length") == 0
    packets_in, packets_out = await sfu_quiet(1.0)
    assert packets_in > 0 and packets_out > 0
