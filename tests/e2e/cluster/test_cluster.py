"""The cluster: bus/store contract on both implementations, placement, and real multi-process clusters
(redis-server + `basement sfu` nodes + `basement signal` replicas) carrying real media on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
import time
from datetime import UTC, datetime

import aiohttp
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from sfu import transport
from signalling.access.gating import RoomConfig
from signalling.access.siwe import NonceState, SiweMessage
from signalling.chain.evm import DEMO_WALLET_KEY
from signalling.cluster.bus import MemoryBus, MemoryHub, RedisBus, RemoteError
from signalling.cluster.localhub import LocalHubPeer
from signalling.cluster.locallink import LocalBus, LocalLink, LocalStore
from signalling.cluster.placement import NoNodeError, Placer, room_nodes_key
from signalling.cluster.registry import Registry
from signalling.cluster.shared import StoreNonceStore, StoreRoomRegistry
from signalling.cluster.store import MemoryStore, RedisStore
from signalling.ports import free_port
from signalling.protocol.client import Client, ServerError
from tests.support.candidates import host_ports
from tests.support.clusterfix import Cluster, placement
from tests.support.media import CounterVideo, Sink
from tests.support.redisproc import RedisProc
from tests.support.tcpproxy import TcpProxy


class Backend:
    """Makes buses and stores of one implementation; everything made is closed at teardown."""

    def __init__(self, kind: str, redis_url: str) -> None:
        self.kind, self.url = kind, redis_url
        self.hub, self.memstore = MemoryHub(), MemoryStore()
        self.prefix = f"t{random.getrandbits(32):x}:"  # tests share one redis-server
        self.made: list = []

    async def bus(self, inbox: str | None = None):
        if self.kind == "local":
            b = LocalBus(await self._link(), inbox)
        else:
            b = MemoryBus(self.hub, inbox) if self.kind == "memory" else RedisBus(self.url, inbox, prefix=self.prefix)
        await b.start()
        self.made.append(b)
        return b

    async def store(self):
        """A separate client to the same state (the memory store is shared by one process)."""
        if self.kind == "memory":
            return self.memstore
        if self.kind == "local":
            return LocalStore(await self._link())
        s = RedisStore(self.url, prefix=self.prefix)
        await s.start()
        self.made.append(s)
        return s

    async def _link(self) -> LocalLink:
        """A media worker's wire (both ends in this process): the parent's end serves the shared
        MemoryHub and MemoryStore, as `basement serve --workers N` does."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        peer = LocalHubPeer(f"wire-{len(self.made)}", self.hub, self.memstore, reader, writer)
        peer.start({"index": 0})
        link, config = await LocalLink.open(theirs.detach())
        assert config == {"index": 0}
        self.made += [link, peer]
        return link

    async def close(self) -> None:
        for x in self.made:
            if isinstance(x, LocalHubPeer):
                x.close()
            else:
                await x.close()


@pytest.fixture(params=["memory", "redis", "local"])
async def backend(request, redis_proc):
    b = Backend(request.param, redis_proc.url)
    try:
        yield b
    finally:
        await b.close()


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_bus_publish_subscribe_keeps_order_and_payloads(backend):
    a, b = await backend.bus(), await backend.bus()
    got = []
    await b.subscribe("room-events", got.append)
    for i in range(300):
        a.publish("room-events", {"i": i, "sdp": "v=0\r\n", "raw": b"\x00\xff", "nested": {"l": [1, None, True]}})
    await until(lambda: len(got) == 300)
    assert [m["i"] for m in got] == list(range(300))
    assert got[7] == {"i": 7, "sdp": "v=0\r\n", "raw": b"\x00\xff", "nested": {"l": [1, None, True]}}
    await b.unsubscribe("room-events")
    a.publish("room-events", {"i": 300})
    marker = []
    await b.subscribe(b.inbox, marker.append)
    a.publish(b.inbox, {"marker": 2})  # sent after the unsubscribed message, so it arrives after it
    await until(lambda: marker)
    assert len(got) == 300


async def test_bus_request_reply_errors_and_timeouts(backend):
    server, client = await backend.bus(), await backend.bus()

    class Refused(Exception):
        def __init__(self, code: str, message: str) -> None:
            super().__init__(message)
            self.code, self.message = code, message

    async def respond(body):
        if body["op"] == "echo":
            return {"echo": body["x"]}
        if body["op"] == "refuse":
            raise Refused("room_full", "no seats left")
        if body["op"] == "slow":
            await asyncio.sleep(5)
        raise ValueError("unexpected")

    await server.serve("node:n1", respond)
    assert await client.request("node:n1", {"op": "echo", "x": [1, "a"]}) == {"echo": [1, "a"]}
    with pytest.raises(RemoteError) as e:
        await client.request("node:n1", {"op": "refuse"})
    assert (e.value.code, e.value.message) == ("room_full", "no seats left")
    with pytest.raises(RemoteError) as e:
        await client.request("node:n1", {"op": "boom"})
    assert e.value.code == "internal"
    t0 = time.monotonic()
    with pytest.raises(RemoteError) as e:
        await client.request("node:n1", {"op": "slow"}, timeout=0.3)
    assert e.value.code == "timeout" and time.monotonic() - t0 < 3
    # nobody listening (a dead node): fails without waiting for the timeout
    t0 = time.monotonic()
    with pytest.raises(RemoteError) as e:
        await client.request("node:nobody", {"op": "echo", "x": 1}, timeout=30)
    assert e.value.code == "unreachable" and time.monotonic() - t0 < 5
    # concurrent requests each get their own reply
    replies = await asyncio.gather(*(client.request("node:n1", {"op": "echo", "x": i}) for i in range(50)))
    assert [r["echo"] for r in replies] == list(range(50))


async def test_bus_events_and_replies_from_one_sender_stay_in_order(backend):
    node, replica = await backend.bus(), await backend.bus("replica:r1")
    seen = []

    async def respond(body):
        for i in range(20):
            node.publish(body["events_to"], {"event": i})
        return "done"

    await node.serve("node:n1", respond)
    await replica.subscribe(replica.inbox, seen.append)
    result = await replica.request("node:n1", {"events_to": replica.inbox})
    # the reply was dispatched after the 20 events it followed on the wire
    assert result == "done" and [m["event"] for m in seen] == list(range(20))


async def test_store_values_cas_hashes_and_expiry(backend):
    s1, s2 = await backend.store(), await backend.store()
    assert await s1.get("k") is None
    await s1.set("k", {"a": [1, 2]})
    assert await s2.get("k") == {"a": [1, 2]}
    assert not await s2.set_if_absent("k", "other")
    assert await s2.set_if_absent("k2", "mine")
    assert await s1.get("k2") == "mine"
    # compare-and-set: absent / wrong / right expectation, then delete by CAS
    assert not await s1.compare_and_set("k3", "x", "y")
    assert await s1.compare_and_set("k3", None, "y")
    assert not await s2.compare_and_set("k3", None, "z")
    assert not await s2.compare_and_set("k3", "x", "z")
    assert await s2.compare_and_set("k3", "y", "z")
    assert await s1.get("k3") == "z"
    assert await s1.compare_and_set("k3", "z", None)
    assert await s1.get("k3") is None
    await s1.delete("k")
    assert await s2.get("k") is None
    # expiry: on set, on CAS and via expire()
    await s1.set("short", 1, ttl=0.2)
    assert await s1.compare_and_set("short2", None, 2, ttl=0.2)
    await s1.set("later", 3)
    assert await s1.expire("later", 0.2)
    assert not await s1.expire("missing", 0.2)
    assert await s2.mget(["short", "short2", "later", "missing"]) == [1, 2, 3, None]
    await asyncio.sleep(0.35)
    assert await s2.mget(["short", "short2", "later"]) == [None, None, None]
    # hashes
    await s1.hset("h", "f1", {"n": 1})
    await s2.hset("h", "f2", 2)
    assert await s1.hget("h", "f1") == {"n": 1}
    assert await s1.hgetall("h") == {"f1": {"n": 1}, "f2": 2}
    await s1.hdel("h", "f1")
    assert await s2.hgetall("h") == {"f2": 2}
    assert await s2.hget("h", "f1") is None
    assert await s1.hgetall("nothing") == {}
    # a value read back is a copy
    await s1.set("copy", {"l": [1]})
    v = await s1.get("copy")
    v["l"].append(2)
    assert await s1.get("copy") == {"l": [1]}


async def test_shared_nonces_are_single_use_across_replicas_and_room_configs_round_trip(backend):
    a, b = StoreNonceStore(await backend.store()), StoreNonceStore(await backend.store())
    now = time.time()
    await a.put("n0nce0001", now + 60)
    await a.put("n0nce0002", now - 1)
    assert await b.peek("n0nce0001", now) is NonceState.OK
    # ten consumers on two "replicas" race for one nonce: exactly one wins
    results = await asyncio.gather(*(s.consume("n0nce0001", now) for s in [a, b] * 5))
    assert results.count(NonceState.OK) == 1 and set(results) == {NonceState.OK, NonceState.USED}
    assert await a.consume("n0nce0002", now) is NonceState.EXPIRED
    assert await b.consume("never-issued", now) is NonceState.UNKNOWN

    ra, rb = StoreRoomRegistry(await backend.store()), StoreRoomRegistry(await backend.store())
    gate = {"any": [{"standard": "erc20", "chainId": 1, "contract": "0x" + "12" * 20, "minBalance": "1.5"},
                    {"standard": "erc721", "chainId": 1, "contract": "0x" + "34" * 20}]}
    vip = RoomConfig.from_json("vip", {"gate": gate, "max_participants": 7})
    await ra.put(vip)
    got = await rb.get("vip")
    assert got is not None and got.to_json() == vip.to_json()
    await rb.seed(RoomConfig("vip", None))  # a default never overwrites what an operator set
    assert (await ra.get("vip")).gate is not None
    assert [r.name for r in await rb.list()] == ["vip"]
    assert await rb.delete("vip") and not await ra.delete("vip")
    assert await ra.get("vip") is None


async def test_registry_liveness_follows_heartbeats(backend):
    reg = Registry(await backend.store(), "node", live_s=0.3)
    await reg.beat({"id": "a", "rooms": 1})
    await reg.beat({"id": "b", "rooms": 2})
    assert set(await reg.live()) == {"a", "b"}
    for _ in range(4):
        await asyncio.sleep(0.15)
        await reg.beat({"id": "a", "rooms": 3})
    assert await reg.live() == {"a": {"id": "a", "rooms": 3}}
    assert await reg.dead() == ["b"]
    await reg.forget("b")
    assert await reg.dead() == []


def rec(node_id: str, **kw) -> dict:
    return {"id": node_id, "cpu": 0.0, "rooms": 0, "participants": 0, "capacity": 0, "draining": False, **kw}


async def test_placement_keeps_live_rooms_and_replaces_dead_nodes(backend):
    store = await backend.store()
    nodes = Registry(store, "node", live_s=0.4)
    placer = Placer(store, nodes, random.Random(2))
    with pytest.raises(NoNodeError):
        await placer.node_for("r")
    await nodes.beat(rec("a", rooms=0))
    await nodes.beat(rec("b", rooms=10))
    assert await placer.node_for("r") == "a"
    await nodes.beat(rec("a", rooms=50))  # now busier: an existing room still stays
    assert await placer.node_for("r") == "a"
    assert await placer.node_for("r2") == "b"
    # "a" refused the room (e.g. draining): it moves
    assert await placer.node_for("r", avoid="a") == "b"
    assert await placer.current("r") == "b"
    # the room closed on b: mapping gone; a release by a node that no longer holds it changes nothing
    await placer.release("r", "b")
    assert await placer.current("r") is None
    assert await placer.node_for("r3") == "b"
    await placer.release("r3", "a")
    assert await placer.current("r3") == "b"
    # b dies: its rooms' placements are cleared, the next join lands on a live node
    for _ in range(4):
        await asyncio.sleep(0.15)
        await nodes.beat(rec("a", rooms=50))
    assert await nodes.dead() == ["b"]
    assert sorted(await placer.forget_node("b")) == ["r2", "r3"]
    assert await placer.current("r2") is None
    assert await placer.node_for("r2") == "a"
    assert await placer.claim("r2", "a") and not await placer.claim("r2", "b")


async def test_two_replicas_racing_never_place_one_room_twice(backend):
    placements = []
    for _ in range(2):
        store = await backend.store()
        nodes = Registry(store, "node")
        placements.append(Placer(store, nodes))
    for i in range(5):
        await nodes.beat(rec(f"n{i}"))
    for room in ("race-1", "race-2", "race-3"):
        tries = [p.node_for(room) for _ in range(50) for p in placements]  # 100 concurrent tries
        results = await asyncio.gather(*tries)
        assert len(set(results)) == 1, results
        assert await placements[0].current(room) == results[0]


@pytest.fixture
async def cluster():
    # the test's own aiortc clients must gather candidates on loopback too, like the nodes
    transport.configure_ice(["127.0.0.1"])
    redis = RedisProc().start()
    made: list[Cluster] = []

    async def make(nodes: int, replicas: int, **env: str) -> Cluster:
        c = Cluster(redis)
        made.append(c)
        return await c.start(nodes, replicas, **env)

    clients: list[Client] = []
    make.clients = clients
    try:
        yield make
    finally:
        for cl in clients:
            await cl.close()
        for c in made:
            c.stop()
        redis.stop()


async def joined(make, url: str, room: str, name: str, grant: str | None = None) -> tuple[Client, dict]:
    c = Client(url)
    make.clients.append(c)
    await c.connect()
    return c, await c.join(room, name, grant)


async def video_between(make, pub: Client, sub: Client) -> Sink:
    """pub sends a small video; returns the sink on sub once frames arrive."""
    await pub.publish(video=CounterVideo(160, 120))
    _, track = await sub.wait_track(kind="video", participant=pub.participant["id"], timeout=20)
    sink = Sink(track)
    await sink.wait_frames(10, timeout=20)
    return sink


async def test_rooms_spread_over_nodes_and_one_room_lives_on_one_node(cluster):
    c = await cluster(nodes=3, replicas=2)
    rooms = [f"spread-{i}" for i in range(9)]
    for i, room in enumerate(rooms):
        await joined(cluster, c.replicas[i % 2].url, room, f"first-{i}")
    where = {room: await placement(c, room) for room in rooms}
    assert set(where.values()) <= {n.id for n in c.nodes}, where
    assert len(set(where.values())) > 1, where
    # each node hosts exactly the rooms placed on it (its own gauge, scraped from its metrics port)
    # (polled: a node's gauge may lag the join answer by one scrape)
    for n in c.nodes:
        want = sum(1 for v in where.values() if v == n.id)
        for _ in range(50):
            if (got := await n.metric("basement_rooms")) == want:
                break
            await asyncio.sleep(0.1)
        assert got == want, (n.id, got, want, where)
    # participants of one room joining through the other replica land on the same node and meet
    a = cluster.clients[0]  # joined rooms[0] through replica 0
    b, b_joined = await joined(cluster, c.replicas[1].url, rooms[0], "second")
    assert [p["name"] for p in b_joined["participants"]] == ["first-0"]
    home = c.node(where[rooms[0]])
    assert await home.metric("basement_participants") == sum(1 for v in where.values() if v == home.id) + 1
    # and see each other's media
    await video_between(cluster, a, b)
    await video_between(cluster, b, a)
    # the node's metrics carry its id; so do the replica's
    _, text = await home.get("/metrics", home.metrics_port)
    assert f'basement_rooms{{node_id="{home.id}"}}' in text
    _, text = await c.replicas[1].get("/metrics", c.replicas[1].metrics_port)
    assert 'basement_participants{node_id="sig1"}' in text
    # the last participants leave: the room closes on its node and its placement goes away
    await a.leave()
    await b.leave()
    deadline = time.monotonic() + 10
    while await placement(c, rooms[0]) is not None:
        assert time.monotonic() < deadline, "placement of an empty room was not removed"
        await asyncio.sleep(0.1)


async def test_replicas_share_sign_in_nonces_grants_and_gates(cluster):
    """Behind a Service, sign-in steps and the join land on whichever replica: any must do."""
    c = await cluster(nodes=1, replicas=2)
    r0, r1 = c.replicas
    holder = Account.from_key(DEMO_WALLET_KEY)  # holds the demo pass on the embedded chains
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{r0.url}/auth/nonce") as r:
            n = await r.json()
        assert n["domain"] == "meet.basement.test", n  # the public URL, not the replica's address
        msg = SiweMessage(domain=n["domain"], address=holder.address, uri=n["uri"], version="1",
                          chain_id=n["chainId"], nonce=n["nonce"], statement="Sign in to Basement",
                          issued_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")).to_text()
        signed = {"message": msg, "signature": holder.sign_message(encode_defunct(text=msg)).signature.hex()}
        # the nonce issued by replica 0 is redeemed at replica 1 ...
        async with http.post(f"{r1.url}/auth/siwe", json=signed) as r:
            body = await r.json()
            assert r.status == 200, body
        # ... and is then spent for replica 0 as well
        async with http.post(f"{r0.url}/auth/siwe", json=signed) as r:
            assert r.status == 401 and "nonce already used" in (await r.json())["error"]
        async with http.post(f"{r0.url}/auth/grant",
                             json={"room": "demo-gated", "signInToken": body["signInToken"]}) as r:
            grant = (await r.json())["grant"]
        # a gate created through the admin API of replica 1 is enforced by replica 0
        async with http.put(f"{r1.url}/admin/rooms/vip", headers={"Authorization": f"Bearer {c.admin_key}"},
                            json={"gate": {"standard": "erc721", "chainId": n["chainId"],
                                           "contract": "0x" + "11" * 20}}) as r:
            assert r.status in (200, 201), await r.text()
    guest = Client(r0.url)
    cluster.clients.append(guest)
    await guest.connect()
    with pytest.raises(ServerError) as refused:
        await guest.join("vip", "guest")
    assert refused.value.code == "unauthorized" and "token-gated" in refused.value.message
    # the grant replica 0 signed admits at replica 1
    member, state = await joined(cluster, r1.url, "demo-gated", "holder", grant=grant)
    assert state["participant"]["identity"] == holder.address


async def rooms_on_two_nodes(cluster, c: Cluster, prefix: str) -> list[tuple[str, str]]:
    """Open rooms (one participant each) until two of them sit on different nodes."""
    seen: dict[str, str] = {}
    for i in range(12):
        room = f"{prefix}-{i}"
        await joined(cluster, c.replicas[0].url, room, "anchor")
        node = await placement(c, room)
        seen.setdefault(node, room)
        if len(seen) == 2:
            return [(room, node) for node, room in seen.items()]
    raise AssertionError(f"12 rooms all went to {seen}")


async def call(cluster, c: Cluster, room: str) -> tuple[Client, Client, Sink]:
    """A publisher on replica 0 and a subscriber on replica 1 (the last replica), video flowing."""
    pub, _ = await joined(cluster, c.replicas[0].url, room, "pub")
    sub, _ = await joined(cluster, c.replicas[-1].url, room, "sub")
    return pub, sub, await video_between(cluster, pub, sub)


async def keeps_flowing(sink: Sink, seconds: float = 1.0) -> None:
    before = sink.frames
    await sink.wait_frames(before + 5, timeout=10 + seconds)


async def test_killed_node_rooms_rejoin_elsewhere_and_other_rooms_are_undisturbed(cluster):
    c = await cluster(nodes=3, replicas=2)
    (lost_room, doomed), (safe_room, safe_node) = await rooms_on_two_nodes(cluster, c, "kill")
    pub, sub, _ = await call(cluster, c, lost_room)
    safe_pub, safe_sub, safe_sink = await call(cluster, c, safe_room)
    frames_at_kill = safe_sink.frames
    c.node(doomed).proc.kill()  # SIGKILL: no goodbye, only missed heartbeats tell
    t0 = time.monotonic()
    for client in (pub, sub):
        msg = await client.wait_message("removed", timeout=10)
        assert msg == {"type": "removed", "reason": "node_lost", "rejoin": True, "n": msg["n"]}
    assert time.monotonic() - t0 < 10
    assert await placement(c, lost_room) != doomed
    # they rejoin (through the other replicas this time) and get media again, on a live node
    pub2, _ = await joined(cluster, c.replicas[1].url, lost_room, "pub")
    sub2, _ = await joined(cluster, c.replicas[0].url, lost_room, "sub")
    await video_between(cluster, pub2, sub2)
    new_home = await placement(c, lost_room)
    assert new_home in {n.id for n in c.nodes} - {doomed}
    # the room on the healthy node never noticed
    assert safe_sink.frames > frames_at_kill
    await keeps_flowing(safe_sink)
    assert not [m for cl in (safe_pub, safe_sub) for m in cl.messages if m.get("type") in ("removed", "left")]


async def test_killed_replica_participants_rejoin_through_another_and_their_ghosts_break_nothing(cluster):
    """Both participants of a room came through the replica that dies (issue 18): they join again
    through another while the node still holds their old selves (whose media connections, in this
    process, even stay up until the node removes them). The new publisher's offer must not fail on
    a ghost, and video flows at once, not when the ghosts are gone."""
    c = await cluster(nodes=1, replicas=2)
    pub, _ = await joined(cluster, c.replicas[0].url, "ghosts", "pub")
    sub, _ = await joined(cluster, c.replicas[0].url, "ghosts", "sub")
    await video_between(cluster, pub, sub)
    c.replicas[0].proc.kill()  # SIGKILL: its clients' sockets drop, the node learns of it only later
    t0 = time.monotonic()
    pub2, _ = await joined(cluster, c.replicas[1].url, "ghosts", "pub")
    sub2, _ = await joined(cluster, c.replicas[1].url, "ghosts", "sub")
    sink = await video_between(cluster, pub2, sub2)
    took = time.monotonic() - t0
    assert took < 5, f"video {took:.1f} s after the new joins"
    errors = [m for cl in (pub2, sub2) for m in cl.messages if m.get("type") == "error"]
    assert errors == []
    # the ghosts go (the node drops the dead replica's participants); the new call carries on
    await sub2.wait_message("participant_left", participant=sub.participant["id"], timeout=20)
    await keeps_flowing(sink)
    # the old clients' resumes went to a dead replica: they say so instead of hanging
    await pub.wait_for(lambda: pub.resume_error is not None, timeout=30)


@contextlib.asynccontextmanager
async def call_behind_a_front(make, c: Cluster, room: str):
    """A call of two whose signalling reaches replica 0 through a TCP proxy playing the load balancer,
    which sends new connections to replica 1 from the start of the block. Yields (pub, sub, sink,
    messages each had before the block); at its end, the room must not have noticed anything (no
    leave, join, removal or error since), and requests and events must go through the new replica."""
    front = await TcpProxy(c.replicas[0].port).start()
    try:
        pub, _ = await joined(make, front.url, room, "pub")
        sub, _ = await joined(make, front.url, room, "sub")
        sink = await video_between(make, pub, sub)
        front.target = ("127.0.0.1", c.replicas[1].port)  # the Service's only ready endpoint now
        seen = {cl: len(cl.messages) for cl in (pub, sub)}
        yield pub, sub, sink, seen
        assert not [m for cl in (pub, sub) for m in cl.messages[seen[cl]:]
                    if m.get("type") in ("participant_left", "participant_joined", "removed", "error")]
        await pub.mute("video", True)
        await sub.wait_message("track_muted", track=pub.published["video"], muted=True)
    finally:
        await front.stop()


async def test_killed_replica_participants_resume_through_another_and_the_room_never_notices(cluster):
    """Issue 18: both participants of a room came through the replica that dies. Behind a load
    balancer (a TCP proxy here) their clients reconnect to another replica and resume: the same
    participants (nobody sees a leave or a join), video never stops, the node's sweep of the dead
    replica's participants spares them, and the call carries on through the new replica."""
    c = await cluster(nodes=1, replicas=2)
    async with call_behind_a_front(cluster, c, "roam") as (pub, sub, sink, seen):
        c.replicas[0].proc.kill()  # SIGKILL: sockets drop, no leave, nothing handed over
        t0 = time.monotonic()
        for cl in (pub, sub):
            await cl.wait_for(lambda cl=cl: cl.resumes == 1 or cl.resume_error, timeout=10)
            assert cl.resume_error is None and cl.resyncs == 1
        took = time.monotonic() - t0
        assert took < 3, f"resumed {took:.1f} s after the kill"
        frames = sink.frames
        await sink.wait_frames(frames + 10, timeout=10)
        # the node drops a dead replica's participants after two missed checks: not these any more
        await asyncio.sleep(8)
        await keeps_flowing(sink)
        reply = await sub.subscription(pub.published["video"], width=160, height=120)
        assert reply["type"] == "subscription"
        assert (await c.replicas[1].metric("basement_participants")) == 2


async def test_sigterm_on_a_replica_hands_its_participants_to_another_without_losing_a_message(cluster):
    """A rolling upgrade of the signalling replicas: SIGTERM drops the replica's sockets, its clients
    resume through another, which takes each participant over from the draining one (alive, so
    nothing is lost: no resync); the room sees nothing and the replica exits once it holds nobody."""
    c = await cluster(nodes=1, replicas=2)
    async with call_behind_a_front(cluster, c, "rolling") as (pub, sub, sink, seen):
        t0 = time.monotonic()
        c.replicas[0].signal(signal.SIGTERM)
        for cl in (pub, sub):
            await cl.wait_for(lambda cl=cl: cl.resumes == 1 or cl.resume_error, timeout=10)
            assert cl.resume_error is None and cl.resyncs == 0  # handed over, not resynced
            ns = [m["n"] for m in cl.messages if "n" in m]
            assert ns == list(range(1, len(ns) + 1)), ns
        assert await c.replicas[0].wait_exit(timeout=15) == 0
        took = time.monotonic() - t0
        assert took < 15, f"the replica exited {took:.1f} s after SIGTERM"
        await keeps_flowing(sink)


async def test_sigterm_drains_node_takes_no_new_rooms_and_exits_when_its_room_ends(cluster):
    c = await cluster(nodes=2, replicas=1)
    pub, sub, sink = await call(cluster, c, "ongoing")
    home = c.node(await placement(c, "ongoing"))
    other = next(n for n in c.nodes if n is not home)
    home.signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (await home.get("/readyz"))[0] != 503:
        assert time.monotonic() < deadline, "a draining node kept saying ready"
        await asyncio.sleep(0.1)
    for i in range(6):
        await joined(cluster, c.replicas[0].url, f"after-term-{i}", "x")
        assert await placement(c, f"after-term-{i}") == other.id
    # the ongoing call carries on, and can still be joined
    await keeps_flowing(sink)
    late, late_joined = await joined(cluster, c.replicas[0].url, "ongoing", "late")
    assert sorted(p["name"] for p in late_joined["participants"]) == ["pub", "sub"]
    assert home.proc.poll() is None
    for cl in (pub, sub, late):
        await cl.leave()
    assert await home.wait_exit(15) == 0
    assert await placement(c, "ongoing") is None


async def test_chat_between_participants_of_one_room_joined_through_two_replicas(cluster):
    """Data channels end on the room's media node, whichever replica carried the offer: the
    node relays, stamps the sender, and keeps the history for a later joiner."""
    c = await cluster(nodes=2, replicas=2)
    a, _ = await joined(cluster, c.replicas[0].url, "chat-cl", "alice")
    b, _ = await joined(cluster, c.replicas[1].url, "chat-cl", "bob")
    for client in (a, b):
        await client.publish(data=True)
        await client.wait_data_open(timeout=20)
    a.send_data("hello from replica 0")
    await b.wait_for(lambda: [m["data"] for m in b.data_received("chat")] == ["hello from replica 0"], timeout=20)
    assert b.data_received("chat")[0]["from"] == a.participant["id"]
    b.send_data("and back")
    await a.wait_for(lambda: [m["data"] for m in a.data_received("chat")] == ["and back"], timeout=20)
    late, _ = await joined(cluster, c.replicas[1].url, "chat-cl", "late")
    await late.publish(data=True)
    await late.wait_for(lambda: [(m["data"], m.get("history")) for m in late.data_received("chat")]
                        == [("hello from replica 0", True), ("and back", True)], timeout=20)


async def test_a_media_node_on_one_udp_port(cluster):
    """`basement sfu` in single-port mode (the Helm chart's sfu.udpPort): both connections of every
    participant on the node's one port, and media between them."""
    port = free_port()
    c = await cluster(nodes=1, replicas=1, BASEMENT_ICE_UDP_PORT=str(port))
    a, _ = await joined(cluster, c.replicas[0].url, "one-port-cl", "alice")
    b, _ = await joined(cluster, c.replicas[0].url, "one-port-cl", "bob")
    sink = await video_between(cluster, a, b)
    assert sink.sizes == {(160, 120)}
    sdps = [m["sdp"] for cl in (a, b) for m in cl.messages if m.get("type") in ("answer", "offer")]
    ports = host_ports(sdps)
    assert len(sdps) >= 2 and ports == {port}, ports


async def test_a_room_spans_three_nodes_over_srtp_relays_and_a_killed_nodes_subscribers_rejoin(cluster):
    """Nodes with a relay address (relay_host) share big rooms: room_span_above 2 puts the publisher
    and one subscriber on the room's home, two on a second node and one on a third. Every subscriber
    decodes the publisher (relayed between nodes as SRTP); when the third node is SIGKILLed its
    subscriber is told to rejoin and decodes again on another node within 10 s."""
    c = await cluster(nodes=3, replicas=2, BASEMENT_RELAY_HOST="127.0.0.1", BASEMENT_ROOM_SPAN_ABOVE="2")
    pub, _ = await joined(cluster, c.replicas[0].url, "town", "pub")
    home = await placement(c, "town")
    subs = [(await joined(cluster, c.replicas[i % 2].url, "town", f"sub{i}"))[0] for i in range(4)]
    store = RedisStore(c.redis.url)
    await store.start()
    try:
        parts = {n: v[2] for n, v in (await store.hgetall(room_nodes_key("town"))).items()}
    finally:
        await store.close()
    assert parts[home] == 2 and sorted(parts.values()) == [1, 2, 2], parts
    (third,) = [n for n, k in parts.items() if k == 1]
    await pub.publish(video=CounterVideo(160, 120))
    sinks = []
    for s in subs:
        _, track = await s.wait_track(kind="video", participant=pub.participant["id"], timeout=20)
        sinks.append(Sink(track))
    for sink in sinks:
        await sink.wait_frames(10, timeout=20)
        assert sink.sizes == {(160, 120)}
    assert await c.node(home).metric("basement_relays_out") == 2  # the video, to each other node
    assert await c.node(third).metric("basement_relays_in") == 1

    c.node(third).proc.kill()
    t0 = time.monotonic()
    def removed() -> list[dict]:
        return [m for s in subs for m in s.messages if m.get("type") == "removed"]

    while not removed():
        assert time.monotonic() - t0 < 10, "nobody removed 10 s after the kill"
        await asyncio.sleep(0.05)
    (msg,) = removed()  # the third node's subscriber only
    assert (msg["reason"], msg["rejoin"]) == ("node_lost", True), msg
    again, _ = await joined(cluster, c.replicas[0].url, "town", "sub-again")
    _, track = await again.wait_track(kind="video", participant=pub.participant["id"], timeout=10)
    await Sink(track).wait_frames(10, timeout=10)
    assert time.monotonic() - t0 < 10
    # the others never noticed, but for the third node's subscriber leaving
    gone = next(s for s in subs if any(m.get("type") == "removed" for m in s.messages))
    assert len(removed()) == 1
    for s, sink in zip(subs, sinks):
        if s is not gone:
            await keeps_flowing(sink)
    await pub.wait_message("participant_left", participant=gone.participant["id"], reason="node_lost")
