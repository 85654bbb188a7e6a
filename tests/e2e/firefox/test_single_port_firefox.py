"""Firefox ESR and Chromium in single-port mode (`ice_udp_port`, sfu.udp_mux): Firefox's ICE checks
find its transports on the shared port, and Chromium decodes what Firefox publishes through it."""

from __future__ import annotations

import pytest

from signalling.ports import free_port
from tests.e2e.firefox.playback import LAYERS, check_decoding, choose_quality, measure, publisher, summary, wait_layer
from tests.support.candidates import host_ports

pytestmark = [pytest.mark.timeout(120)]


async def test_firefox_publishes_on_the_one_port_and_chromium_decodes(make_server, firefox, browser):
    port = free_port()
    server = await make_server(ice_udp_port=port)
    fx = await firefox(server, "fx-port", "firefox", audio="0")
    pub = await publisher(fx)
    chrome = await browser(server, "fx-port", "chromium", audio="0", camera="0")
    await choose_quality(chrome, pub["participant"], "high")
    rid, _ = LAYERS["high"]
    await wait_layer(chrome, pub["participant"], fx, rid)
    (got,), (sent,) = await measure([(chrome, pub["participant"])], [fx])
    print(summary("Firefox -> Chromium on one UDP port", got, sent[rid], pub["fps"]))
    check_decoding("Chromium decoding Firefox's f layer", got, rid, sent, pub["fps"])
    for page in (fx, chrome):
        sdps = await page.evaluate("window.basement.events.filter(m => m.type === 'answer' || "
                                   "m.type === 'offer').map(m => m.sdp)")
        ports = host_ports(sdps)
        assert sdps and ports == {port}, ports
