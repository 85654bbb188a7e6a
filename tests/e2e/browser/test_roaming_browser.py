"""Chromium resumes through another signalling replica after its own died (issue 18).

Two replicas and a node in this process (tests/support/memcluster.py); the page reaches them through
a TCP proxy playing the load balancer. The replica the page joined through goes off the bus while a
third participant joins and publishes: those events, and the subscribe offer for her track, are
lost with it. The page comes back through the other replica: the same participant (nobody sees it
leave), its media never stopped, the room brought up to date (`resumed.resync`), her video decoded.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from tests.e2e.browser.test_browser import joined, media_both_ways, tile_name_js, wait_decoding
from tests.support.media import CounterVideo, Tone

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def each_data_path() -> str:
    """One run, forwarding natively: what is tested here is signalling (which replica or node says
    what to whom); the data paths each run every forwarding test of this tier."""
    return "native"


async def test_the_page_resumes_through_another_replica_after_its_own_died(mcluster, browser):
    c = mcluster
    alice = await c.client("roamweb", "alice", "r2")
    await alice.publish(audio=Tone(), video=CounterVideo())
    page = await browser(SimpleNamespace(url=c.proxy.url), "roamweb", "chromium")  # through the proxy, on r1
    me = (await joined(page))["participant"]
    alice_id = alice.participant["id"]
    sink = await media_both_ways(page, alice, me)

    await c.kill("r1")
    c.route("r2")
    carol = await c.client("roamweb", "carol", "r2")
    await carol.publish(video=CounterVideo(160, 120))
    carol_id = carol.participant["id"]
    assert await page.evaluate("window.basement.participants().length") == 1  # carol's join was lost
    t0 = time.monotonic()
    c.proxy.cut()
    await page.wait_for("window.basement.log.some(e => e.text === 'reconnected')", timeout=10)
    took = time.monotonic() - t0
    assert took < 2.0, f"the page resumed {took:.2f} s after the cut"
    texts = await page.evaluate("window.basement.log.map(e => e.text)")
    assert "reconnected through another server: the room was brought up to date" in texts
    assert "carol joined" in texts
    names = await page.evaluate("window.basement.participants().map(p => p.name).sort()")
    assert names == ["alice", "carol"]
    # the subscribe offer for carol's video came again through the new replica
    assert await page.wait_for(tile_name_js(carol_id), timeout=20) == "carol"
    await wait_decoding(page, carol_id, more=10)
    # the same participant throughout; media both ways kept going
    assert not [m for m in alice.messages + carol.messages if m.get("type") == "participant_left"]
    assert c.agent.replica_of[me["id"]] == "r2"
    await wait_decoding(page, alice_id, more=15)
    frames = sink.frames
    await sink.wait_frames(frames + 15)
    # and the resumed socket carries requests both ways
    await page.click("#toggle-camera")
    await alice.wait_message("track_muted", participant=me["id"], muted=True)
    await alice.mute("audio", True)
    await page.wait_for(f"window.basement.events.some(m => m.type === 'track_muted' && m.participant === '{alice_id}')")
