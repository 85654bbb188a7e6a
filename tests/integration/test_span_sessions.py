"""A room spanning two media nodes is one session, tracked at its home: the other node sends its
participants' joins, leaves and media there (signalling.run.nodeagent, roomlink). Two NodeAgents in
one process on a MemoryHub bus and a MemoryStore, relays on loopback; trackers that record."""

from __future__ import annotations

import asyncio
import time

from signalling.cluster.bus import MemoryBus, MemoryHub
from signalling.cluster.placement import Placer, room_key
from signalling.cluster.registry import Registry
from signalling.cluster.store import MemoryStore
from signalling.run.nodeagent import NodeAgent
from tests.support.servers import native_only


class Tracker:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def participant_joined(self, room: str, identity: str, at: float) -> None:
        self.calls.append(("joined", room, identity))

    def participant_left(self, room: str, identity: str, at: float) -> None:
        self.calls.append(("left", room, identity))

    def on_media_event(self, room: str, event: dict) -> None:
        self.calls.append((event["type"], room, event["identity"]))

    async def beat(self) -> None:
        pass


async def node(hub: MemoryHub, store: MemoryStore, node_id: str) -> tuple[NodeAgent, Tracker, MemoryBus]:
    bus = MemoryBus(hub, f"inbox:{node_id}")
    await bus.start()
    tracker = Tracker()
    agent = NodeAgent(node_id, bus, Placer(store, Registry(store, "node")), Registry(store, "node"),
                      Registry(store, "replica"), tracker=tracker, span_group="g")
    await agent.start()
    return agent, tracker, bus


@native_only  # signalling between nodes; no media flows
async def test_a_spanning_rooms_session_is_tracked_once_at_its_home():
    hub, store = MemoryHub(), MemoryStore()
    (a, ta, bus_a), (b, tb, bus_b) = await node(hub, store, "a"), await node(hub, store, "b")
    try:
        await a.handle({"op": "join", "args": {"room": "r", "pid": "PA_1", "identity": "0x1"}, "replica": "x"})
        assert await store.get(room_key("r")) == "a"
        await b.handle({"op": "join", "args": {"room": "r", "pid": "PA_2", "identity": "0x2", "span": True},
                        "replica": "x"})
        # b's participant is in a's tracker (the home's), and in no tracker of b's own
        deadline = time.monotonic() + 5
        while ("joined", "r", "0x2") not in ta.calls:
            assert time.monotonic() < deadline, ta.calls
            await asyncio.sleep(0.01)
        assert ta.calls == [("joined", "r", "0x1"), ("joined", "r", "0x2")] and tb.calls == []
        # the room looks whole from both nodes
        assert {p["id"] for p in b.node.rooms["r"].participants()} == {"PA_1", "PA_2"}
        # the home's last participant leaves: the room stays placed there while b holds part of it
        await a.handle({"op": "leave", "args": {"pid": "PA_1"}, "replica": "x"})
        assert "r" not in a.node.rooms and await store.get(room_key("r")) == "a"
        await b.handle({"op": "leave", "args": {"pid": "PA_2"}, "replica": "x"})
        while ("left", "r", "0x2") not in ta.calls:
            assert time.monotonic() < deadline, ta.calls
            await asyncio.sleep(0.01)
        assert [c for c in ta.calls if c[0] in ("joined", "left")] == [
            ("joined", "r", "0x1"), ("joined", "r", "0x2"), ("left", "r", "0x1"), ("left", "r", "0x2")]
        assert tb.calls == [] or all(c[0] not in ("joined", "left") for c in tb.calls), tb.calls
        # nobody holds part of it any more: the placement is gone too
        assert await store.get(room_key("r")) is None
    finally:
        for agent, bus in ((a, bus_a), (b, bus_b)):
            await agent.stop()
            await bus.close()
