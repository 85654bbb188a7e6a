"""A publish connection that ends without a `leave` (the client closed it, or it failed): the client
hears `transport_failed`, its tracks are unpublished for everyone, subscribers' m-lines are recycled,
and a new offer publishes again. (A publisher that dies outright: tests/e2e/gstreamer.)"""

from __future__ import annotations

import asyncio

import pytest

from sfu import consent
from sfu.metrics import STATS
from tests.support.media import CounterVideo, Tone, decoded_sizes


async def test_publisher_closing_its_connection_is_unpublished_and_can_publish_again(server, connect):
    pub = await connect("pubfail", "alice")
    sub = await connect("pubfail", "bob")
    await pub.publish(audio=Tone(), video=CounterVideo(160, 120))
    _, video = await sub.wait_track(kind="video")
    await decoded_sizes(video, 5)
    tracks = set(pub.published.values())
    assert len(tracks) == 2

    # the page closes its sending connection (DTLS close_notify) but stays in the room
    assert pub.publisher is not None
    ended = STATS.transports_ended.get(("publisher", "closed"), 0)
    await pub.publisher.close()
    failed = await pub.wait_message("transport_failed", timeout=10)
    assert failed["target"] == "publisher" and failed["state"] == "closed"
    assert STATS.transports_ended.get(("publisher", "closed"), 0) == ended + 1
    assert set(failed["tracks"]) == tracks and failed["message"]
    for t in tracks:
        await sub.wait_message("track_unpublished", track=t, participant=pub.participant["id"], timeout=10)
    await sub.wait_for(lambda: not sub.remote, timeout=10)  # a subscribe offer without them came
    peer = server.node.peers[sub.participant["id"]]
    assert peer.downtracks == {} and len(peer.free_slots) == 2
    assert server.node.peers[pub.participant["id"]].tracks == []
    assert [m for m in pub.messages if m["type"] == "transport_failed"] == [failed]  # once

    # publishing again starts a new connection; bob receives it on the recycled m-lines
    await pub.publish(audio=Tone(), video=CounterVideo(160, 120))
    _, video = await sub.wait_track(kind="video", participant=pub.participant["id"])
    assert await decoded_sizes(video, 5) == {(160, 120)}
    assert sub.subscriber is not None and len(sub.subscriber.getTransceivers()) == 2
    await asyncio.sleep(0.2)
    assert len([m for m in pub.messages if m["type"] == "transport_failed"]) == 1


async def test_trickle_after_the_publish_connection_ended_is_a_clear_error(server, connect):
    pub = await connect("pubfail2", "alice")
    await pub.publish(audio=Tone())
    transport = server.node.peers[pub.participant["id"]].publisher
    await pub.wait_for(lambda: transport.connection_state == "connected", timeout=10)
    assert pub.publisher is not None
    await pub.publisher.close()
    await pub.wait_message("transport_failed", timeout=10)
    reply = None
    try:
        await pub.request({"type": "trickle", "target": "publisher",
                           "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMLineIndex": 0}})
    except Exception as e:  # ServerError
        reply = e
    assert reply is not None and getattr(reply, "code", None) == "unexpected_candidate"
    assert "publisher" in str(reply)


async def test_a_publisher_that_stops_answering_consent_checks_is_dropped_and_counted(
        server, connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client whose ICE agent stops answering (a frozen page, a path gone silent) loses consent
    (RFC 7675) once no check has been answered for EXPIRY_S (scaled down here): the SFU stops sending,
    unpublishes, says so, and counts the connection as ended by consent."""
    monkeypatch.setattr(consent, "INTERVAL_S", 0.1)
    monkeypatch.setattr(consent, "EXPIRY_S", 1.5)
    pub = await connect("pubconsent", "alice")
    await pub.publish(audio=Tone())
    transport = server.node.peers[pub.participant["id"]].publisher
    await pub.wait_for(lambda: transport.connection_state == "connected", timeout=10)
    expired = STATS.consent_expired
    ended = STATS.transports_ended.get(("publisher", "consent_expired"), 0)
    assert pub.publisher is not None
    ice = pub.publisher.getTransceivers()[0].sender.transport.transport._connection
    ice.request_received = lambda message, addr, protocol: None  # the page stops answering checks
    failed = await pub.wait_message("transport_failed", timeout=20)  # a hang guard only
    # (aiortc reports the ICE transport failed, or the DTLS transport above it closed, first)
    assert failed["target"] == "publisher" and failed["state"] in ("failed", "closed")
    assert STATS.consent_expired >= expired + 1  # (the client's agent may expire too, later)
    assert STATS.transports_ended.get(("publisher", "consent_expired"), 0) == ended + 1
    assert server.node.peers[pub.participant["id"]].tracks == []
