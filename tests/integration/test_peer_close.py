"""Closing is quiet and complete: a subscribe connection that ends (the client closed it, or the
participant left) while the SFU renegotiates it logs no error and leaves no task behind."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sfu.metrics import STATS
from tests.support.media import CounterVideo, Tone


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Captures every ERROR (or worse) record logged during the test, from any logger (asyncio's too)."""
    caplog.set_level(logging.ERROR)
    return caplog


async def _until(client, predicate, timeout: float, what: str) -> None:
    try:
        await client.wait_for(predicate, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    # read at assertion time: pytest gives each test phase a fresh record list
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


async def test_renegotiating_a_subscribe_connection_the_client_closed_logs_no_error(server, connect, errors):
    pub = await connect("close", "alice")
    sub = await connect("close", "bob")
    await pub.publish(audio=Tone(), video=CounterVideo(96, 64))
    await sub.wait_track(kind="video")
    peer = server.node.peers[sub.participant["id"]]
    assert peer.subscriber is not None
    await _until(sub, lambda: peer.subscriber.connection_state == "connected", 15, "subscribe connection up")

    # bob's browser tab closes its receiving connection (DTLS close_notify) but keeps the socket
    assert sub.subscriber is not None
    await sub.subscriber.close()
    await _until(sub, lambda: peer.subscriber.connection_state == "closed", 10,
                 f"the SFU sees bob's close (it is {peer.subscriber.connection_state})")

    # alice's tracks go away: bob's m-lines turn inactive, which would need a new subscribe offer
    await pub.leave()
    await sub.wait_message("participant_left", participant=pub.participant["id"])
    await asyncio.sleep(0.5)  # the renegotiation task runs
    assert _errors(errors) == []
    # the dead connection is reported once, and never offered to again
    failed = [m for m in sub.messages if m["type"] == "transport_failed"]
    assert [(m["target"], m["state"]) for m in failed] == [("subscriber", "closed")]
    offers = [m for m in sub.messages if m["type"] == "offer"]
    await asyncio.sleep(0.3)
    assert [m for m in sub.messages if m["type"] == "offer"] == offers


@pytest.mark.parametrize("rounds", [8])
async def test_subscriber_leaving_during_renegotiation_logs_no_error(server, connect, errors, rounds):
    pub = await connect("leave", "alice")
    await pub.publish(audio=Tone(), video=CounterVideo(96, 64))
    for i in range(rounds):
        sub = await connect("leave", f"bob{i}")
        await sub.wait_track(kind="video")
        # a second publisher's tracks start a renegotiation of bob's subscribe connection; bob
        # leaves at once, in a different phase of it each round (offer being built, offer out,
        # answer being applied)
        other = await connect("leave", f"carol{i}")
        publishing = asyncio.ensure_future(other.publish(audio=Tone(), video=CounterVideo(96, 64)))
        await asyncio.sleep(0.02 * i)
        await sub.leave()
        await sub.close()
        await publishing
        await other.leave()
        await other.close()
        await asyncio.sleep(0.2)
    assert list(server.node.peers) == [pub.participant["id"]]
    assert _errors(errors) == []


async def test_a_closed_subscribe_connection_is_no_longer_forwarded_to(server, connect):
    """Once bob's subscribe connection has ended, nothing is rewritten, cached or sent for it: his
    DownTracks leave alice's tracks (their NACK caches freed), a track published later is not
    subscribed on it, and what he was sent before still counts."""
    pub = await connect("dead", "alice")
    sub = await connect("dead", "bob")
    await pub.publish(audio=Tone(), video=CounterVideo(96, 64))
    await sub.wait_track(kind="video")
    peer = server.node.peers[sub.participant["id"]]
    await _until(sub, lambda: peer.subscriber.connection_state == "connected", 15, "subscribe connection up")
    await _until(sub, lambda: peer.media_totals()[1] > 20, 15, "bob is sent media")
    tracks = list(server.node.rooms["dead"].tracks)
    assert len(tracks) == 2 and all(any(dt.subscriber_id == peer.id for dt in t.downtracks) for t in tracks)

    ended = STATS.transports_ended.get(("subscriber", "closed"), 0)
    await sub.subscriber.close()
    await sub.wait_message("transport_failed", target="subscriber")
    assert STATS.transports_ended.get(("subscriber", "closed"), 0) == ended + 1
    assert peer.downtracks == {}
    assert all(not t.downtracks for t in tracks), [t.downtracks for t in tracks]
    sent = peer.media_totals()
    assert sent[1] > 20
    await asyncio.sleep(0.5)
    assert peer.media_totals() == sent  # nothing more

    carol = await connect("dead", "carol")
    await carol.publish(audio=Tone())
    carol_id = carol.participant["id"]
    await _until(sub, lambda: any(m["type"] == "track_published" and m["track"]["participant"] == carol_id
                                  for m in sub.messages), 10, "bob hears of carol's track")
    await asyncio.sleep(0.3)
    assert peer.downtracks == {}
