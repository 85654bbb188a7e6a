"""A publish connection that ends without a `leave` (the client closed it, or it failed): the client
hears `transport_failed`, its tracks are unpublished for everyone, subscribers' m-lines are recycled,
and a new offer publishes again. (A publisher that dies outright: tests/e2e/gstreamer.)"""

from __future__ import annotations

import asyncio

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
    await pub.publisher.close()
    failed = await pub.wait_message("transport_failed", timeout=10)
    assert failed["target"] == "publisher" and failed["state"] == "closed"
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
