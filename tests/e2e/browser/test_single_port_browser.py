"""Chromium in single-port mode (`ice_udp_port`, sfu.udp_mux): its checks find their transport on the
shared port by ICE username, and its media flows both ways."""

from __future__ import annotations

import pytest

from signalling.ports import free_port
from tests.e2e.browser.test_browser import joined, media_both_ways
from tests.support.candidates import host_ports
from tests.support.media import CounterVideo, Tone

pytestmark = pytest.mark.timeout(120)


async def test_chromium_on_the_one_port(make_server, browser):
    port = free_port()
    server = await make_server(ice_udp_port=port)
    from signalling.protocol.client import Client

    alice = Client(server.url)
    try:
        await alice.connect()
        await alice.join("one-port", "alice")
        await alice.publish(audio=Tone(), video=CounterVideo())
        page = await browser(server, "one-port", "chromium")
        me = (await joined(page))["participant"]
        await media_both_ways(page, alice, me, frames=15)
        # what the page was told: both its connections' candidates on the one port
        sdps = await page.evaluate("window.basement.events.filter(m => m.type === 'answer' || "
                                   "m.type === 'offer').map(m => m.sdp)")
        ports = host_ports(sdps)
        assert len(sdps) >= 2 and ports == {port}, ports
    finally:
        await alice.close()
