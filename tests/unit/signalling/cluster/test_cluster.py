"""The cluster: bus/store contract on both implementations, placement, and real multi-process clusters
(redis-server + `basement sfu` nodes + `basement signal` replicas) carrying real media on 127.0.0.1."""

from __future__ import annotations

import random

from signalling.cluster.placement import choose


def rec(node_id: str, **kw) -> dict:
    return {"id": node_id, "cpu": 0.0, "rooms": 0, "participants": 0, "capacity": 0, "draining": False, **kw}


def test_choose_skips_draining_and_prefers_less_loaded():
    rng = random.Random(1)
    assert choose([], rng=rng) is None
    assert choose([rec("a", draining=True)], rng=rng) is None
    assert {choose([rec("a", draining=True), rec("b", rooms=50)], rng=rng) for _ in range(20)} == {"b"}
    # with two candidates the pair is both: always the less loaded
    assert {choose([rec("a", rooms=3), rec("b", rooms=1)], rng=rng) for _ in range(20)} == {"b"}
    # fullness (CPU or participants/capacity) comes before room count
    assert {choose([rec("a", cpu=75.0), rec("b", cpu=5.0, rooms=9)], rng=rng) for _ in range(20)} == {"b"}
    assert {choose([rec("a", participants=90, capacity=100), rec("b", rooms=9)], rng=rng) for _ in range(20)} == {"b"}
    # overloaded nodes only when nothing else can take the room
    assert choose([rec("a", cpu=99.0)], rng=rng) == "a"
    # rooms placed since the last heartbeat count too
    assert {choose([rec("a"), rec("b")], pending={"a": 2}, rng=rng) for _ in range(20)} == {"b"}
    # power of two choices: the most loaded of three never wins, the other two both do
    picks = [choose([rec("a", rooms=1), rec("b", rooms=1), rec("c", rooms=5)], rng=rng) for _ in range(200)]
    assert set(picks) == {"a", "b"}


async def test_a_participant_past_the_rooms_share_on_its_home_goes_to_another_worker_of_the_group():
    from signalling.cluster.placement import Placer, room_nodes_key
    from signalling.cluster.registry import Registry
    from signalling.cluster.store import MemoryStore

    store = MemoryStore()
    nodes = Registry(store, "node")
    for n in ("w0", "w1"):
        await nodes.beat(rec(n, group="serve"))
    placer = Placer(store, nodes, random.Random(3))
    home, span = await placer.node_for_participant("r", span_above=2)
    assert not span
    other = {"w0": "w1", "w1": "w0"}[home]
    # a node of another group (another host) never takes part of the room, however empty it is
    await nodes.beat(rec("elsewhere", group="other-host"))
    assert await placer.node_for_participant("r", span_above=2, placed={home: 1}) == (home, False)
    assert await placer.node_for_participant("r", span_above=2, placed={home: 2}) == (other, True)
    # the nodes' own counts in the store count as well, and the larger of the two wins
    await store.hset(room_nodes_key("r"), home, ["127.0.0.1", 1, 2, "serve"])
    assert await placer.node_for_participant("r", span_above=2) == (other, True)
    assert await placer.node_for_participant("r", span_above=2, placed={home: 2, other: 1}) == (other, True)
    # every node has its share: the one with the fewest of the room's participants
    assert await placer.node_for_participant("r", span_above=2, placed={home: 3, other: 2}) == (other, True)
    assert await placer.node_for_participant("r", span_above=2, placed={home: 3, other: 4}) == (home, False)
    # spanning off, or a home without a group: the room stays on its home
    assert await placer.node_for_participant("r", span_above=0, placed={home: 9}) == (home, False)
    await nodes.beat(rec(home))
    assert await placer.node_for_participant("r", span_above=2, placed={home: 9}) == (home, False)
