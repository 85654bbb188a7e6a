"""GStreamer webrtcbin (libnice) on a network that blocks UDP publishes over ICE-TCP (`ice_tcp_port`).

The webrtcbin peer runs in a network namespace of the test's own (tests/support/netns.py) whose UDP
nftables drops; libnice gathers on the link's client address. Its only way to the SFU is the
passive TCP candidate, where libnice connects as an active candidate (RFC 6544). An aiortc
subscriber on the server's side decodes what it publishes at the size and rate it encodes.
"""

from __future__ import annotations

import time

import pytest

from sfu import ice_tcp
from signalling.ports import free_port
from signalling.protocol.client import Client
from tests.e2e.gstreamer.gst import GstPeer, RelayClient
from tests.support.media import Sink
from tests.support.netns import CLIENT_IP, SERVER_IP, Link

pytestmark = pytest.mark.timeout(120)

WIDTH, HEIGHT, FPS = 320, 240, 30


async def test_webrtcbin_without_udp_publishes_over_ice_tcp(make_server, tmp_path):
    link = Link().start()
    peer = pub = sub = None
    try:
        link.block_udp()
        tcp_port = free_port()
        server = await make_server(host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"], ice_tcp_port=tcp_port)
        url = f"http://{SERVER_IP}:{server.port}"
        peer = await GstPeer.start(tmp_path / "gst.log", prefix=link.command(), address=CLIENT_IP)
        pub = RelayClient(url, peer)
        await pub.connect()
        await pub.join("gst-tcp", "webrtcbin")
        sub = Client(url)
        await sub.connect()
        await sub.join("gst-tcp", "aiortc")
        await pub.publish_gst(WIDTH, HEIGHT, FPS)
        _, video = await sub.wait_track(kind="video", timeout=30)
        sink = Sink(video)
        await sink.wait_frames(30, timeout=40)
        start, before = time.monotonic(), sink.frames
        await sink.wait_frames(before + 60, timeout=30)
        fps = (sink.frames - before) / (time.monotonic() - start)
        assert fps > FPS * 0.6, f"{fps:.1f} frames/s decoded of webrtcbin's {FPS}"
        assert sink.sizes == {(WIDTH, HEIGHT)}
        page_peer = server.node.peers[pub.participant["id"]]
        ice = page_peer.publisher.pc.getTransceivers()[0].receiver.transport.transport
        assert isinstance(ice._connection._nominated[1].protocol.transport, ice_tcp.IceTcpStream)
    finally:
        for c in (sub, pub):
            if c is not None:
                await c.close()
        if peer is not None:
            await peer.close()
        link.stop()
