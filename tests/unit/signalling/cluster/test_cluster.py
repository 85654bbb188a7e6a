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
