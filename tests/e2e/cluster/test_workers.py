"""`basement serve --workers 2`: a real server process with two media worker processes, real aiortc
clients on 127.0.0.1: rooms are placed on different workers, each room's video decodes, a worker
killed with SIGKILL has its participants told to rejoin and back in media within 5 s while the
other worker's room never notices, and the dead worker is started again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from sfu import transport
from signalling.ports import free_port
from signalling.protocol.client import Client
from tests.support.candidates import host_ports
from tests.support.clusterfix import Cluster, Proc, placement
from tests.support.media import CounterVideo, Sink
from tests.support.redisproc import RedisProc
from tests.support.workersfix import Serve, joined


async def call(make, url: str, room: str) -> tuple[Client, Client, Sink]:
    """A publisher and a subscriber in `room`; returns once the subscriber decodes 160x120 frames."""
    pub, _ = await joined(make, url, room, "pub")
    sub, _ = await joined(make, url, room, "sub")
    await pub.publish(video=CounterVideo(160, 120))
    _, track = await sub.wait_track(kind="video", participant=pub.participant["id"], timeout=20)
    sink = Sink(track)
    await sink.wait_frames(10, timeout=20)
    assert sink.sizes == {(160, 120)}
    return pub, sub, sink


async def rooms_per_worker(s: Serve, want: dict[str, float], timeout: float = 10.0) -> None:
    """Poll the workers' `basement_rooms` until it is `want` (a worker reports on each scrape)."""
    deadline = time.monotonic() + timeout
    while (got := await s.metric("basement_rooms")) != want:
        assert time.monotonic() < deadline, f"rooms per worker {got}, wanted {want}"
        await asyncio.sleep(0.1)


async def test_two_rooms_land_on_two_workers_and_a_killed_worker_is_rejoined_and_restarted(serve):
    s = await serve(workers=2)
    assert sorted(s.pids()) == [0, 1]
    await rooms_per_worker(s, {"0": 0, "1": 0})
    a_pub, a_sub, _ = await call(serve, s.url, "room-a")
    (home,) = [w for w, n in (await s.metric("basement_rooms")).items() if n == 1]
    b_pub, b_sub, b_sink = await call(serve, s.url, "room-b")
    # placement by load: the second room goes to the worker without one
    await rooms_per_worker(s, {"0": 1, "1": 1})
    assert await s.metric("basement_participants") == {"0": 2, "1": 2}
    forwarded = await s.metric("basement_packets_out_total")
    assert min(forwarded.values()) > 0, forwarded  # each worker forwards its own room's media

    victim = s.pids()[int(home)]
    frames_before = b_sink.frames
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    for c in (a_pub, a_sub):
        msg = await c.wait_message("removed", timeout=5)
        assert (msg["reason"], msg["rejoin"]) == ("node_lost", True), msg
    # they rejoin, on the worker that is alive (the dead one may still be starting again)
    await call(serve, s.url, "room-a")
    took = time.monotonic() - t0
    assert took < 5, f"media again {took:.1f} s after the kill"
    # the other worker's room never noticed
    await b_sink.wait_frames(frames_before + 10, timeout=5)
    assert not [m for c in (b_pub, b_sub) for m in c.messages if m.get("type") in ("removed", "left")]
    # the dead worker is started again (a new process) and heartbeats: it reports in the metrics again
    deadline = time.monotonic() + 30
    while s.pids().get(int(home)) == victim or len(await s.metric("basement_rooms")) < 2:
        assert time.monotonic() < deadline, f"worker {home} not back:\n{s.tail()}"
        await asyncio.sleep(0.2)
    assert s.pids()[int(home)] in s.children()
    restarts = await s.metric("basement_worker_restarts_total")
    assert restarts == {home: 1, str(1 - int(home)): 0}, restarts
    assert s.stop() == 0, s.tail()


async def test_in_single_port_mode_each_worker_has_the_next_port(serve):
    """`--ice-udp-port P --workers 2`: worker i answers on P + i only, and a room on each carries media."""
    port = free_port()
    while not port + 1 < 65536 or not _udp_free(port + 1):
        port = free_port()
    s = await serve(workers=2, BASEMENT_ICE_UDP_PORT=str(port))
    seen = []
    for room in ("one-a", "one-b"):
        pub, sub, _ = await call(serve, s.url, room)
        sdps = [m["sdp"] for c in (pub, sub) for m in c.messages if m.get("type") in ("answer", "offer")]
        seen.append(host_ports(sdps))
    assert sorted(seen, key=min) == [{port}, {port + 1}], seen  # one room on each worker, each on its port


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_sessions_in_worker_rooms_are_recorded_with_the_media_the_workers_forwarded(serve):
    """The parent tracks sessions as `serve` does: joins and leaves from its RoomManager, tracks and
    media totals from the worker that forwarded them (its events on the wire)."""
    s = await serve(workers=2, BASEMENT_RECORD_SESSIONS="all", BASEMENT_SESSION_GRACE_S="0")
    pub, sub, sink = await call(serve, s.url, "rec")
    await sink.wait_frames(sink.frames + 20, timeout=10)
    for c in (sub, pub):
        await c.close()
    deadline = time.monotonic() + 20
    while not (closed := [line for line in s.tail(10_000).splitlines() if " closed (room 'rec'" in line]):
        assert time.monotonic() < deadline, s.tail()
        await asyncio.sleep(0.2)
    cid = closed[0].rsplit("cid ", 1)[1].rstrip(")")
    doc = json.loads(await asyncio.to_thread(lambda: next(Path(s.logdir).rglob(cid)).read_bytes()))
    assert doc["room"] == "rec" and len(doc["participants"]) + len(doc["guests"]) == 2, doc
    assert sorted(t["kind"] for t in doc["tracks"]) == ["video"], doc["tracks"]
    # what the subscriber received: the frames it decoded came in these packets
    per = doc["media"]["perParticipant"]
    assert max(v["packets"] for v in per.values()) >= sink.frames, per
    assert doc["media"]["bytes"] > 0


# --- basement sfu --workers 2 in a cluster ---------------------------------------------------------------


@pytest.fixture
async def cluster_of_workers():
    transport.configure_ice(["127.0.0.1"])
    redis = RedisProc().start()
    c = Cluster(redis)
    clients: list[Client] = []
    try:
        c.nodes = [Proc("sfu", "sfu0", redis.url, c.logdir, BASEMENT_WORKERS="2", BASEMENT_DRAIN_TIMEOUT_S="60")]
        c.replicas = [Proc("signal", "sig0", redis.url, c.logdir, BASEMENT_GRANT_SECRET=c.grant_secret)]
        await asyncio.gather(*(p.wait_ready() for p in c.nodes + c.replicas))
        yield c, clients
    finally:
        for cl in clients:
            await cl.close()
        c.stop()
        redis.stop()


def worker_pids(log: str) -> dict[int, int]:
    """worker index -> pid of its latest process, as the parent logs each start."""
    out = {}
    for line in log.splitlines():
        if "media worker " in line and " started (pid " in line:
            out[int(line.split("media worker ", 1)[1].split(" ", 1)[0])] = int(line.rsplit("(pid ", 1)[1].rstrip(")"))
    return out


async def test_a_cluster_node_with_two_workers_is_two_nodes_and_a_killed_one_is_rejoined_and_restarted(
        cluster_of_workers):
    c, clients = cluster_of_workers
    node = c.nodes[0]
    url = c.replicas[0].url

    holder = SimpleNamespace(clients=clients)  # what `joined` appends the clients it makes to

    a_pub, a_sub, _ = await call(holder, url, "wa")
    b_pub, b_sub, b_sink = await call(holder, url, "wb")
    homes = {await placement(c, "wa"), await placement(c, "wb")}
    assert homes == {"sfu0-w0", "sfu0-w1"}, homes  # each worker is a node; the second room went to the idle one
    # one /metrics for the node, a series per worker, each family once (the workers' bus counters
    # and the node's own merged into one)
    _, text = await node.get("/metrics", node.metrics_port)
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), sorted(t for t in types if types.count(t) > 1)
    assert any(line.startswith("basement_bus_requests_total{") and 'node_id="sfu0-w1"' in line
               for line in text.splitlines())
    for w in ("0", "1"):
        rooms = [line for line in text.splitlines() if line.startswith("basement_rooms{") and f'worker="{w}"' in line]
        assert len(rooms) == 1 and rooms[0].endswith(" 1.0"), rooms

    doomed = await placement(c, "wa")
    index = int(doomed.rsplit("-w", 1)[1])
    victim = worker_pids(node.tail(10_000))[index]
    frames = b_sink.frames
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    for cl in (a_pub, a_sub):
        msg = await cl.wait_message("removed", timeout=10)
        assert (msg["reason"], msg["rejoin"]) == ("node_lost", True), msg
    told = time.monotonic() - t0
    assert told < 3, f"told {told:.1f} s after the kill (a heartbeat lapse alone takes 5 s)"
    await call(holder, url, "wa")
    took = time.monotonic() - t0
    assert took < 10, f"media again {took:.1f} s after the kill"
    await b_sink.wait_frames(frames + 10, timeout=5)
    assert not [m for cl in (b_pub, b_sub) for m in cl.messages if m.get("type") in ("removed", "left")]
    deadline = time.monotonic() + 30
    while worker_pids(node.tail(10_000)).get(index) == victim:
        assert time.monotonic() < deadline, node.tail()
        await asyncio.sleep(0.2)
    # SIGTERM drains: both workers end when their rooms are empty (the clients leave), the node exits 0
    node.signal(signal.SIGTERM)
    for cl in clients:
        await cl.close()
    assert await node.wait_exit(30) == 0, node.tail()


async def participants_per_worker(s: Serve, want: list[float], timeout: float = 10.0) -> dict[str, float]:
    """Poll the workers' `basement_participants` until their sorted values are `want`."""
    deadline = time.monotonic() + timeout
    while sorted((got := await s.metric("basement_participants")).values()) != want:
        assert time.monotonic() < deadline, f"participants per worker {got}, wanted {want}"
        await asyncio.sleep(0.1)
    return got


async def message(c: Client, mtype: str, check, timeout: float = 5.0) -> dict:
    """The first message of `mtype` for which `check(message)` holds, waiting up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in c.messages if m.get("type") == mtype and check(m)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {mtype} as wanted; {c.participant['name']} got {c.messages[-5:]}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("datapath", ["native", "python"])
async def test_a_room_spans_both_workers_and_media_is_relayed_between_them(serve, datapath):
    """room_span_above 2: the room's third and fourth participants go to the other worker. Media
    published on either worker decodes on both, the room looks whole to everyone, and when the
    home worker dies, the other's subscribers see its participants leave and its tracks end, then
    decode the publisher again once it has rejoined."""
    s = await serve(workers=2, BASEMENT_ROOM_SPAN_ABOVE="2", BASEMENT_DATAPATH=datapath)
    pub, _ = await joined(serve, s.url, "big", "pub")
    home = next(w for w, n in (await participants_per_worker(s, [0, 1])).items() if n == 1)
    near, _ = await joined(serve, s.url, "big", "near")
    far, far_joined = await joined(serve, s.url, "big", "far")
    far2, _ = await joined(serve, s.url, "big", "far2")
    await participants_per_worker(s, [2, 2])
    # the room looks whole from the other worker: who is there, and who comes
    assert {p["name"] for p in far_joined["participants"]} == {"pub", "near"}, far_joined
    await message(near, "participant_joined", lambda m: m["participant"]["name"] == "far2")

    await pub.publish(video=CounterVideo(160, 120), data=True)
    await far.publish(video=CounterVideo(176, 144), data=True)
    sinks = {}
    for c, publisher in ((near, pub), (far, pub), (far2, pub), (pub, far), (near, far), (far2, far)):
        _, track = await c.wait_track(kind="video", participant=publisher.participant["id"], timeout=20)
        sinks[(c, publisher)] = Sink(track)
    for (c, publisher), sink in sinks.items():
        await sink.wait_frames(10, timeout=20)
        assert sink.sizes == ({(160, 120)} if publisher is pub else {(176, 144)}), (c.participant, sink.sizes)
    relayed = await s.metric("basement_relayed_packets_out_total")
    assert len(relayed) == 2 and min(relayed.values()) > 0, relayed  # each worker relays its publisher
    # chat crosses too: to everyone, and to one participant on the other worker
    for c in (pub, far):
        await c.wait_data_open()
    pub.send_data("hello from the home worker")
    far.send_data("only for pub", to=[pub.participant["id"]])
    await far.wait_for(lambda: [m["data"] for m in far.data_received("chat")] == ["hello from the home worker"])
    await pub.wait_for(lambda: [(m["data"], m["from"]) for m in pub.data_received("chat")]
                       == [("only for pub", far.participant["id"])])

    # the home worker dies: the far side sees pub and near leave and pub's track end
    os.kill(s.pids()[int(home)], signal.SIGKILL)
    for c in (pub, near):
        msg = await c.wait_message("removed", timeout=5)
        assert (msg["reason"], msg["rejoin"]) == ("node_lost", True), msg
    pub_id = pub.participant["id"]
    await message(far, "track_unpublished", lambda m: m["participant"] == pub_id)
    await message(far, "participant_left", lambda m: m["participant"] == pub_id and m["reason"] == "node_lost")
    # the publisher rejoins and publishes again: the far side decodes it again (no stuck m-line)
    pub2, _ = await joined(serve, s.url, "big", "pub")
    await pub2.publish(video=CounterVideo(160, 120))
    _, track = await far.wait_track(kind="video", participant=pub2.participant["id"], timeout=20)
    sink = Sink(track)
    await sink.wait_frames(10, timeout=20)
    assert sink.sizes == {(160, 120)}
    assert s.stop() == 0, s.tail()
