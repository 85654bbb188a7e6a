"""Firefox ESR on a network that blocks UDP reaches the SFU over ICE-TCP (`ice_tcp_port`, sfu.ice_tcp).

As tests/e2e/browser/test_ice_tcp_browser.py does for Chromium: Firefox runs in a network namespace
of the test's own whose UDP nftables drops, joined to the server's by a veth pair. Its only way to
the SFU is the passive TCP candidate; an aiortc participant on the server's side of the link, over
UDP, exchanges media with it, so both directions cross the TCP stream.
"""

from __future__ import annotations

import pytest

from sfu import ice_tcp
from signalling.ports import free_port
from tests.e2e.browser.test_browser import joined
from tests.support.browser import poll
from tests.support.linked import decoded, firefox_in, publishing_client
from tests.support.media import Sink
from tests.support.netns import SERVER_IP, Link

pytestmark = pytest.mark.timeout(150)


async def test_firefox_without_udp_connects_over_ice_tcp_and_media_flows_both_ways(make_server):
    link = Link().start()
    alice = fx = None
    try:
        link.block_udp()
        tcp_port = free_port()
        server = await make_server(host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"], ice_tcp_port=tcp_port)
        alice = await publishing_client(server, "fx-no-udp")
        fx = await firefox_in(link, server, "fx-no-udp", "firefox")
        me = (await joined(fx.page))["participant"]

        # Firefox decodes alice's video, alice decodes Firefox's
        alice_id = alice.participant["id"]

        async def decoding():
            return await decoded(fx, alice_id) >= 20

        await poll(decoding, "Firefox decoding alice's video", timeout=40)
        _, video = await alice.wait_track(kind="video", participant=me["id"], timeout=30)
        await Sink(video).wait_frames(20, timeout=30)

        page_peer = server.node.peers[me["id"]]
        for target in (page_peer.publisher, page_peer.subscriber):
            ice = target.pc.getTransceivers()[0].receiver.transport.transport
            assert isinstance(ice._connection._nominated[1].protocol.transport, ice_tcp.IceTcpStream)
    finally:
        if fx is not None:
            await fx.close()
        if alice is not None:
            await alice.close()
        link.stop()
