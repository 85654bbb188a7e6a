"""Where media may flow is configuration: gathered addresses, advertised address, UDP port range."""

from __future__ import annotations

from sfu import transport
from tests.support.candidates import host_candidates
from tests.support.media import CounterVideo, Sink


async def test_port_range_and_public_ip_are_honoured(make_server):
    # bind every interface of this loopback-only namespace, advertise another loopback address:
    # what a hostNetwork pod does with its node IP
    srv = await make_server(ice_addresses=["0.0.0.0"], public_ip="127.0.0.2", rtp_port_min=41000, rtp_port_max=41050)
    from signalling.protocol.client import Client

    clients = []
    try:
        pub = Client(srv.url)
        sub = Client(srv.url)
        clients += [pub, sub]
        for c, name in ((pub, "pub"), (sub, "sub")):
            await c.connect()
            await c.join("ice", name)
        await pub.publish(video=CounterVideo(96, 64))
        answer = next(m for m in pub.messages if m["type"] == "answer")
        cands = host_candidates(answer["sdp"])
        assert cands and all(host == "127.0.0.2" and 41000 <= port <= 41050 for host, port in cands), cands
        _, track = await sub.wait_track(kind="video")
        offer = next(m for m in sub.messages if m["type"] == "offer")
        assert all(h == "127.0.0.2" and 41000 <= p <= 41050 for h, p in host_candidates(offer["sdp"]))
        await Sink(track).wait_frames(10)
    finally:
        for c in clients:
            await c.close()
        assert transport._ice().addresses == ("127.0.0.1",)  # the server's settings stayed its own
