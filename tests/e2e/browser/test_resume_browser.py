"""Chromium's signalling socket is cut mid-call: the web client resumes the same participant.

The page reaches the server through a TCP proxy (tests/support/tcpproxy.py) that aborts its
connections the way a lost network does; media goes straight to the SFU and never stops.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from signalling.protocol.edge import EDGE_STATS
from tests.e2e.browser.test_browser import events_js, joined, media_both_ways, tile_name_js, wait_decoding
from tests.support.browser import poll
from tests.support.media import CounterVideo, Tone
from tests.support.servers import QUICK_PINGS
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def server(make_server):
    """The page pings every 2 s and gives a pong 2 s: a socket gone silent is noticed in 4 s, not 20."""
    return await make_server(**QUICK_PINGS)


@pytest.fixture
def each_data_path() -> str:
    """One run, forwarding natively: a socket that drops and resumes is signalling; media goes
    straight to the SFU and never stops, on either data path (the data paths each run every
    forwarding test, and tests/integration/test_resume.py resumes on both)."""
    return "native"


async def test_cut_socket_resumes_without_anyone_seeing_a_leave(server, connect, browser):
    proxy = await TcpProxy(server.port).start()
    try:
        alice = await connect("webr", "alice")
        await alice.publish(audio=Tone(), video=CounterVideo())
        page = await browser(SimpleNamespace(url=proxy.url), "webr", "chromium")
        me = (await joined(page))["participant"]
        alice_id = alice.participant["id"]
        sink = await media_both_ways(page, alice, me)

        resumed_before = EDGE_STATS.resume["resumed"]
        assert proxy.cut() >= 1
        t0 = time.monotonic()
        carol = await connect("webr", "carol")  # while the page is away: it must still hear of her
        await page.wait_for("window.basement.log.some(e => e.text === 'reconnected')", timeout=10)
        took = time.monotonic() - t0
        assert took < 2.0, f"the page resumed {took:.2f} s after the cut"
        texts = await page.evaluate("window.basement.log.map(e => e.text)")
        assert "connection lost; reconnecting" in texts
        assert await page.evaluate("window.basement.state") == "joined"
        assert await page.evaluate("document.querySelector('#reconnecting').hidden") is True
        assert await page.evaluate(f"{events_js('participant_joined')}.map(m => m.participant.name)") == ["carol"]
        numbers = await page.evaluate("window.basement.events.filter(m => 'n' in m).map(m => m.n)")
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers

        # the same participant throughout: nobody saw it leave, the server holds it once
        assert not [m for m in alice.messages + carol.messages if m.get("type") == "participant_left"]
        assert me["id"] in server.rooms.participants and len(server.node.peers) == 3
        # media both ways kept going, and the resumed socket carries requests
        await wait_decoding(page, alice_id, more=15)
        frames = sink.frames
        await sink.wait_frames(frames + 15)
        await page.click("#toggle-camera")
        await alice.wait_message("track_muted", participant=me["id"], muted=True)
        # a later participant's tracks reach the page through the resumed socket's offers
        await carol.publish(video=CounterVideo())
        carol_id = carol.participant["id"]
        assert await page.wait_for(tile_name_js(carol_id)) == "carol"
        await wait_decoding(page, carol_id, more=10)
        assert EDGE_STATS.resume["resumed"] == resumed_before + 1  # one resume, no second join
    finally:
        await proxy.stop()


async def test_no_way_back_within_the_grace_period_says_so(make_server, browser):
    server = await make_server(resume_grace_s=1.0)
    proxy = await TcpProxy(server.port).start()
    try:
        page = await browser(SimpleNamespace(url=proxy.url), "webr2", "chromium")
        me = (await joined(page))["participant"]
        proxy.down = True
        proxy.cut()
        await page.wait_for("window.basement.state === 'closed'", timeout=10)
        texts = await page.evaluate("window.basement.log.map(e => e.text)")
        assert any(t.startswith("connection to the server lost") for t in texts), texts

        async def gone():
            return me["id"] not in server.rooms.participants

        await poll(gone, "the participant left when the grace period ended", timeout=5)
    finally:
        await proxy.stop()


async def test_a_socket_gone_silent_is_noticed_by_its_pings_and_resumed(server, connect, browser):
    """The path goes dark without a reset (a lost Wi-Fi): neither end's socket closes. The page's
    ping gets no pong, so it resumes on a new socket; the server hands the participant over from
    the old socket, which still looks open to it."""
    proxy = await TcpProxy(server.port).start()
    try:
        alice = await connect("webs", "alice")
        page = await browser(SimpleNamespace(url=proxy.url), "webs", "chromium")
        me = (await joined(page))["participant"]
        resumed_before = EDGE_STATS.resume["resumed"]
        assert proxy.freeze() >= 1
        # the page pings every 2 s and gives a pong 2 s (QUICK_PINGS; `joined.ping` tells it)
        await page.wait_for("window.basement.log.some(e => e.text === 'reconnected')", timeout=30)
        assert EDGE_STATS.resume["resumed"] == resumed_before + 1
        assert me["id"] in server.rooms.participants
        assert not [m for m in alice.messages if m.get("type") == "participant_left"]
        # the resumed socket carries what happens next
        carol = await connect("webs", "carol")
        await page.wait_for(f"{events_js('participant_joined')}.some(m => m.participant.id === "
                            f"{json.dumps(carol.participant['id'])})", timeout=10)
    finally:
        await proxy.stop()
