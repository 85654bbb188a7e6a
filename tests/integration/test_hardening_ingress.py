"""Issue #11, media receive side: what a publisher's packets and offer can make the SFU do.

Mostly sans-IO: packets are built as bytes and fed to a configured `Ingress` whose transport only
records the RTCP it is given (serialised, as the real one does). One real aiortc publisher checks
that upstream feedback survives sequence wraps end to end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiortc.rtcrtpsender
import pytest
from aiortc import rtp as artp

from sfu.ingress import IngressLimits, configure_ingress
from tests.support.media import CounterVideo, Tone


async def test_the_layer_cap_setting_reaches_the_sfu(make_server):
    from aiortc import RTCConfiguration, RTCPeerConnection

    from bench.loadgen.peers import munge_simulcast
    from signalling.protocol.client import Client, ServerError

    server = await make_server(max_simulcast_layers=2)
    client = Client(server.url)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN lookups (aiortc asks Google by default)
    try:
        await client.connect()
        await client.join("layers", "pub")
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = munge_simulcast(pc.localDescription.sdp, ("q", "h", "f"))
        with pytest.raises(ServerError) as e:
            await client.request({"type": "offer", "target": "publisher", "sdp": sdp})
        assert e.value.code == "invalid_sdp" and "more than 2 simulcast layers" in e.value.message
        reply = await client.request({"type": "offer", "target": "publisher",
                                      "sdp": munge_simulcast(pc.localDescription.sdp, ("q", "h"))})
        assert "a=simulcast:recv q;h" in reply["sdp"]
    finally:
        await pc.close()
        await client.close()
        configure_ingress(IngressLimits())  # the setting is process-wide


async def test_a_real_publisher_keeps_getting_feedback_after_its_sequence_wraps(server, connect, monkeypatch, caplog):
    # aiortc starts each sender's numbering here: audio wraps after 36 packets, video soon after
    monkeypatch.setattr(aiortc.rtcrtpsender, "random_sequence_number", lambda: 65_500)
    pub = await connect("wrap", "pub")
    await pub.publish(audio=Tone(), video=CounterVideo(160, 120))
    ingress = server.node.peers[pub.participant["id"]].ingress
    layers = [layer for rec in ingress.tracks.values() for layer in rec.layers.values()]
    assert len(layers) == 2

    reports: list[dict[int, int]] = []  # per round sent after the wraps: ssrc -> extended highest seq
    original = ingress.transport.send_rtcp

    def send_rtcp(packets: Any) -> bool:
        packets = list(packets)
        ok = original(packets)  # serialises: raised here when the RR's field could not be packed
        blocks = {r.ssrc: r.highest_sequence for p in packets if isinstance(p, artp.RtcpRrPacket) for r in p.reports}
        if len(blocks) == 2 and all(v >= 0x10000 for v in blocks.values()):  # a round after both wrapped
            reports.append(blocks)
        return ok

    ingress.transport.send_rtcp = send_rtcp
    with caplog.at_level(logging.ERROR, logger="basement.ingress"):
        for _ in range(200):
            if len(reports) >= 2:
                break
            await asyncio.sleep(0.1)
    assert "RTCP report failed" not in caplog.text
    assert len(reports) >= 2, reports
    for r in reports:
        assert {layer.ssrc for layer in layers} <= set(r)
        assert all(0x10000 <= v < 0x20000 for v in r.values()), r
