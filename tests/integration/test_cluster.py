"""The cluster: bus/store contract on both implementations, placement, and real multi-process clusters
(redis-server + `basement sfu` nodes + `basement signal` replicas) carrying real media on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import time

import pytest

from sfu import transport
from signalling.cluster.bus import MemoryBus, MemoryHub
from signalling.cluster.placement import Placer
from signalling.cluster.registry import Registry
from signalling.cluster.store import MemoryStore
from signalling.protocol.client import Client
from tests.support.clusterfix import BASEMENT
from tests.support.media import CounterVideo, Sink


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_signal_replica_refuses_to_start_without_a_shared_grant_secret(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        BASEMENT, "signal", env={"PATH": os.environ["PATH"], "BASEMENT_REDIS_URL": "redis://127.0.0.1:1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, out
    assert b"grant_secret: required for `basement signal`" in out


async def test_embedded_cluster_over_the_memory_bus():
    """The same replica and node agent, wired through MemoryBus/MemoryStore in one process."""
    from signalling.cluster.replica import Replica
    from signalling.run.http import start_app
    from signalling.run.nodeagent import NodeAgent

    transport.configure_ice(["127.0.0.1"])
    hub, store = MemoryHub(), MemoryStore()
    agent_bus, replica_bus = MemoryBus(hub, "inbox:n1"), MemoryBus(hub, "replica:r1")
    await agent_bus.start()
    await replica_bus.start()
    agent = NodeAgent("n1", agent_bus, Placer(store, Registry(store)), Registry(store), Registry(store, "replica"))
    await agent.start()
    replica = Replica("r1", replica_bus, store)
    await replica.start()
    runner, port = await start_app(replica.app, "127.0.0.1", 0)
    clients = [Client(f"http://127.0.0.1:{port}") for _ in range(2)]
    try:
        for cl, name in zip(clients, ("alice", "bob")):
            await cl.connect()
            await cl.join("mem", name)
        a, b = clients
        assert await Placer(store, Registry(store)).current("mem") == "n1"
        await a.publish(video=CounterVideo(160, 120), screen=CounterVideo(64, 48))
        await b.wait_for(lambda: len(b.remote) == 2, timeout=20)
        # the sources travel over the bus with the offer
        assert {i["source"]: i["track"] for i, _ in b.remote.values()} == {
            "camera": a.published["video"], "screen": a.published["screen"]}
        info, track = b.remote[a.published["video"]]
        sink = Sink(track)
        await sink.wait_frames(10)
        # requests whose answer comes back over the bus: mute (event to the room), subscription (reply)
        await a.mute("video", True)
        muted = await b.wait_message("track_muted", track=info["track"])
        assert muted["muted"] is True
        reply = await b.subscription(info["track"], width=160, height=120)
        assert reply["type"] == "subscription" and "paused" in reply and reply["pinned"] is False
        reply = await b.subscription(info["track"], width=160, height=120, pinned=True)
        assert reply["pinned"] is True
        # why b gets its layers: the node's explanation, over the bus
        allocation = await b.allocation()
        explained = {t["track"]: t for t in allocation["tracks"]}
        assert allocation["pacing_bps"] >= 0 and "playout_delay_ms" in allocation  # (aiortc: no feedback, 0)
        assert set(explained) == {a.published["video"], a.published["screen"]}
        assert explained[a.published["video"]]["priority"] == "pinned"
        assert explained[a.published["screen"]]["priority"] == "screen"
        assert all(t["why"] and t["participant"] == a.participant["id"] for t in explained.values())
        # restart_ice reaches the node: the next subscriber offer carries new ICE credentials
        def ufrags() -> list[str]:
            return [re.search(r"a=ice-ufrag:(\S+)", m["sdp"]).group(1) for m in b.messages
                    if m.get("type") == "offer" and m.get("target") == "subscriber"]

        before = ufrags()
        await b.send({"type": "restart_ice", "target": "subscriber"})
        await b.wait_for(lambda: len(ufrags()) > len(before), timeout=10)
        assert ufrags()[-1] != before[-1]
        # unpublish (stop sharing) reaches the node and comes back to the room as an event
        assert (await a.unpublish(a.published["screen"]))["type"] == "unpublished"
        await b.wait_message("track_unpublished", track=a.published["screen"])
        # errors from the node keep their code
        with pytest.raises(Exception) as e:
            await b.subscription("TR_nope")
        assert getattr(e.value, "code", None) == "unknown_track"
        # a one-way leave (what a replica sends after a join timed out) reaches the node too
        replica_bus.publish("node:n1", {"op": "leave", "args": {"pid": b.participant["id"]}, "replica": "r1"})
        await until(lambda: b.participant["id"] not in agent.node.peers)
        for cl in clients:
            await cl.leave()
        await until(lambda: not agent.node.rooms)
        assert await Placer(store, Registry(store)).current("mem") is None
    finally:
        for cl in clients:
            await cl.close()
        await runner.cleanup()
        await replica.shutdown()
        await agent.stop()
        await agent_bus.close()
        await replica_bus.close()
