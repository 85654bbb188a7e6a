"""Chromium on a network that blocks UDP reaches the SFU over ICE-TCP (`ice_tcp_port`, sfu.ice_tcp).

The page runs in a network namespace of the test's own (tests/support/netns.py), joined to the
server's by a veth pair, where nftables drops every UDP packet in and out: no STUN, no media over UDP,
no TURN. The SFU offers a passive TCP candidate on one port next to its UDP ones; Chromium connects
to it, and ICE, DTLS and SRTP run over that stream. An aiortc participant on the server's side of the
link, over UDP, exchanges media with the page, so both directions cross the TCP stream.
"""

from __future__ import annotations

import pytest

from sfu import ice_tcp
from signalling.ports import free_port
from tests.e2e.browser.test_browser import joined, media_both_ways
from tests.support.browser import poll
from tests.support.linked import publishing_client
from tests.support.netns import SERVER_IP, Link

pytestmark = pytest.mark.timeout(150)


async def test_chromium_without_udp_connects_over_ice_tcp_and_media_flows_both_ways(make_server, browser):
    link = Link().start()
    alice = None
    try:
        link.block_udp()
        tcp_port = free_port()
        # the page reaches the server on the link's address; alice, in this namespace, on loopback
        server = await make_server(host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"], ice_tcp_port=tcp_port)
        alice = await publishing_client(server, "no-udp")
        page = await browser(server, "no-udp", "chromium", prefix=link.command())
        me = (await joined(page))["participant"]

        # what the page was told: a passive TCP candidate on the one port, for both its connections
        sdps = await page.evaluate("window.basement.events.filter(m => m.type === 'answer' || "
                                   "m.type === 'offer').map(m => m.sdp)")
        assert len(sdps) >= 2
        for sdp in sdps:
            assert any(f" {SERVER_IP} {tcp_port} typ host tcptype passive" in line
                       for line in sdp.splitlines() if line.startswith("a=candidate:")), sdp

        await media_both_ways(page, alice, me, frames=20)

        # both of the page's connections run over TCP, on the SFU's side too
        paths = await poll(lambda: _paths(page), "both connections' selected candidate pairs")
        for target in ("publisher", "subscriber"):
            assert paths[target]["localProtocol"] == "tcp", paths
            assert (paths[target]["remoteAddress"], paths[target]["remotePort"]) == (SERVER_IP, tcp_port), paths
        page_peer = server.node.peers[me["id"]]
        for target in (page_peer.publisher, page_peer.subscriber):
            ice = target.pc.getTransceivers()[0].receiver.transport.transport
            assert isinstance(ice._connection._nominated[1].protocol.transport, ice_tcp.IceTcpStream)
        # alice's are UDP: TCP is only the fallback
        alice_peer = server.node.peers[alice.participant["id"]]
        ice = alice_peer.publisher.pc.getTransceivers()[0].receiver.transport.transport
        assert not isinstance(ice._connection._nominated[1].protocol.transport, ice_tcp.IceTcpStream)
    finally:
        if alice is not None:
            await alice.close()
        link.stop()


async def _paths(page):
    paths = (await page.evaluate("window.basement.stats()"))["paths"]
    return paths if paths["publisher"] and paths["subscriber"] else None
