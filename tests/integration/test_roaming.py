"""Resuming through another signalling replica (signalling/cluster/roaming.py), in one process.

Two replicas and a node agent on MemoryBus/MemoryStore; bob's signalling goes through a TCP proxy
that plays the load balancer: it cuts his socket and sends the reconnection to the other replica.
(tests/e2e/cluster/test_cluster.py runs the same with real processes, Redis and a SIGKILL.)
"""

from __future__ import annotations

import asyncio
import time

import pytest

from signalling.cluster.roaming import record_key
from signalling.protocol.client import Client, ServerError
from tests.support.media import CounterVideo, Sink, Tone


@pytest.fixture
def each_data_path() -> str:
    """One run, forwarding natively: what is tested here is signalling (which replica or node says
    what to whom); the data paths each run every forwarding test of this tier."""
    return "native"


def numbers(client: Client) -> list[int]:
    return [m["n"] for m in client.messages if "n" in m]


async def test_a_resume_through_another_replica_takes_the_participant_over_and_loses_nothing(mcluster):
    c = mcluster
    alice = await c.client("roam", "alice", "r1")
    bob = await c.client("roam", "bob", "proxy")  # through the proxy, to r1
    bob_id = bob.participant["id"]
    await alice.publish(audio=Tone(), video=CounterVideo())
    _, video = await bob.wait_track(kind="video")
    sink = Sink(video, read_counters=True)
    await sink.wait_frames(20)
    assert c.replicas["r1"].rooms.participants.keys() == {alice.participant["id"], bob_id}

    c.route("r2")
    assert c.proxy.cut() == 1
    # while bob is away: a join and a mute he must hear of, once, in order
    carol = await c.client("roam", "carol", "r1")
    await alice.mute("audio", True)
    t0 = time.monotonic()
    await bob.wait_for(lambda: bob.resumes == 1, timeout=10)
    assert time.monotonic() - t0 < 2.0
    joined = await bob.wait_message("participant_joined", participant={**carol.participant})
    muted = await bob.wait_message("track_muted", track=alice.published["audio"], muted=True)
    assert bob.messages.index(joined) < bob.messages.index(muted)
    resumed = next(m for m in bob.messages if m.get("type") == "resumed")
    assert isinstance(resumed["received"], int) and "resync" not in resumed
    assert bob.resyncs == 0
    # every message number once, none skipped, across the two replicas
    ns = numbers(bob)
    assert ns == list(range(1, len(ns) + 1)), ns

    # bob now lives on r2 only; the node sends his events there; nobody saw him leave
    assert bob_id in c.replicas["r2"].rooms.participants
    assert bob_id not in c.replicas["r1"].rooms.participants
    assert bob_id not in c.replicas["r1"].remote.placements
    assert c.agent.replica_of[bob_id] == "r2"
    assert c.replicas["r2"].roaming.stats["taken_over"] == 1
    assert c.replicas["r1"].roaming.stats["handed_over"] == 1
    assert not [m for m in alice.messages + carol.messages if m.get("type") == "participant_left"]
    assert len(c.agent.node.peers) == 3
    assert (await c.store.get(record_key(bob_id)))["replica"] == "r2"

    # requests and events go through r2 now; media never stopped
    await alice.mute("audio", False)
    await bob.wait_message("track_muted", track=alice.published["audio"], muted=False)
    reply = await bob.subscription(alice.published["video"], width=160, height=120)
    assert reply["type"] == "subscription"
    frames = sink.frames
    await sink.wait_frames(frames + 20)
    assert sink.sizes == {(320, 240)}

    # and a second roam back works the same way (the record says r2 now)
    c.route("r1")
    c.proxy.cut()
    await bob.wait_for(lambda: bob.resumes == 2, timeout=10)
    assert c.agent.replica_of[bob_id] == "r1"
    ns = numbers(bob)
    assert ns == list(range(1, len(ns) + 1)), ns

    # leaving ends him for real, and his resume record goes with him
    await bob.leave()
    await alice.wait_message("participant_left", participant=bob_id)
    assert await c.store.get(record_key(bob_id)) is None


async def test_a_resume_after_the_replica_died_keeps_the_participant_and_resyncs_the_room(mcluster):
    """The replica bob joined through dies; what it held (unwritten events, bob's replay) is gone.
    Bob resumes through the other: same participant, media never stopped, the room as it is now in
    `resumed.resync`, and the subscribe offer that went to the dead replica comes again."""
    c = mcluster
    alice = await c.client("dead", "alice", "r2")
    bob = await c.client("dead", "bob", "proxy")  # on r1, which dies
    bob_id = bob.participant["id"]
    await alice.publish(audio=Tone(), video=CounterVideo())
    _, video = await bob.wait_track(kind="video")
    sink = Sink(video, read_counters=True)
    await sink.wait_frames(20)

    await c.kill("r1")
    c.route("r2")
    # events for bob now go to a replica nobody listens for: carol's join and her track's
    # subscribe offer are lost on the way
    carol = await c.client("dead", "carol", "r2")
    await carol.publish(video=CounterVideo(160, 120))
    await asyncio.sleep(0.5)
    c.proxy.cut()
    await bob.wait_for(lambda: bob.resumes == 1, timeout=10)
    resumed = next(m for m in bob.messages if m.get("type") == "resumed")
    assert resumed["received"] is None and bob.resyncs == 1
    assert {p["id"] for p in resumed["resync"]["participants"]} == {alice.participant["id"], carol.participant["id"]}
    assert {t["track"] for t in resumed["resync"]["tracks"]} == {*alice.published.values(), *carol.published.values()}
    assert bob.participants.keys() == {alice.participant["id"], carol.participant["id"]}
    # the subscribe offer for carol's track came again: bob decodes her
    _, carol_video = await bob.wait_track(participant=carol.participant["id"], timeout=15)
    carol_sink = Sink(carol_video, read_counters=True)
    await carol_sink.wait_frames(10)
    assert carol_sink.sizes == {(160, 120)}
    # nobody saw bob leave; he is on r2 now and alice's video never stopped for him
    assert not [m for m in alice.messages + carol.messages if m.get("type") == "participant_left"]
    assert c.agent.replica_of[bob_id] == "r2"
    frames = sink.frames
    await sink.wait_frames(frames + 20)
    # message numbers carry on after the last one bob read
    ns = numbers(bob)
    assert ns == sorted(set(ns)), ns
    # the node's sweep of the dead replica's participants (two missed checks) spares him
    await asyncio.sleep(7)
    assert bob_id in c.agent.node.peers
    await alice.mute("audio", True)
    await bob.wait_message("track_muted", track=alice.published["audio"], muted=True)


async def test_a_resume_with_a_wrong_or_used_token_is_refused_by_every_replica(mcluster):
    c = mcluster
    bob = await c.client("tok", "bob", "r1")
    token = bob._resume["token"]
    pid, _, secret = token.partition(".")
    stranger = Client(c.url("r2"), resume=False)
    c.clients.append(stranger)
    await stranger.connect()
    for bad in (f"{pid}.{'x' * len(secret)}", f"PA_nobody.{secret}", pid):
        with pytest.raises(ServerError) as e:
            await stranger.request({"type": "resume", "token": bad, "n": 0})
        assert e.value.code == "resume_failed"
    # the refusals changed nothing: bob is still r1's, and the node still sends there
    assert c.agent.replica_of[bob.participant["id"]] == "r1"
    assert bob.participant["id"] in c.replicas["r1"].rooms.participants
    # the right token works once (through r2), and after that neither replica takes it
    reply = await stranger.request({"type": "resume", "token": token, "n": 1})
    assert reply["type"] == "resumed" and reply["participant"]["id"] == bob.participant["id"]
    for rid in ("r1", "r2"):
        again = Client(c.url(rid), resume=False)
        c.clients.append(again)
        await again.connect()
        with pytest.raises(ServerError) as e:
            await again.request({"type": "resume", "token": token, "n": 1})
        assert e.value.code == "resume_failed"
