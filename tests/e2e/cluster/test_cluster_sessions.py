"""Sessions in the cluster (issue #17): media nodes track their rooms' sessions, a replica's chain writer
records them, and every finished session is on-chain exactly once, even when the writing replica is
SIGKILLed mid-way, and a session whose media node is SIGKILLed still ends (reason node_lost) and is
recorded. Real processes: redis-server, 3 `basement sfu` nodes, 2 `basement signal` replicas, anvil
with Basement deployed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from sfu import transport
from signalling.chain import contracts
from signalling.cluster.placement import Placer
from signalling.cluster.registry import Registry
from signalling.cluster.store import RedisStore
from signalling.protocol.client import Client
from signalling.sessions.cidstore import DirCidStore
from signalling.sessions.cli import fetch_records, verify_session
from tests.support.clusterfix import Cluster, Proc
from tests.support.redisproc import RedisProc
from tests.support.sessionfix import make_writer

ROOMS_PER_ROUND = 4


@pytest.fixture
async def recording_cluster(anvil_node, tmp_path):
    transport.configure_ice(["127.0.0.1"])
    w3 = anvil_node.anvil.w3()
    dep = anvil_node.deployment
    key = await make_writer(w3, dep.session_log, anvil_node.owner)
    redis = RedisProc().start()
    c = Cluster(redis)
    # what the chart gives every pod: one chain, one writer key (from a Secret), one document store
    # (here a shared directory; IPFS in production)
    env = {"BASEMENT_CHAIN": "rpc", "BASEMENT_RPC_URL": anvil_node.anvil.url, "BASEMENT_CHAIN_ID": "31337",
           "BASEMENT_SESSION_LOG_ADDRESS": dep.session_log, "BASEMENT_MULTICALL_ADDRESS": dep.multicall,
           "BASEMENT_WRITER_KEY": key, "BASEMENT_RECORD_SESSIONS": "all", "BASEMENT_SESSION_GRACE_S": "0.3",
           "BASEMENT_WRITER_BATCH_SIZE": "3", "BASEMENT_WRITER_BATCH_WAIT_S": "0.5",
           "BASEMENT_DATA_DIR": str(tmp_path / "data")}
    clients: list[Client] = []
    try:
        await c.start(3, 2, **env)
        yield c, w3, dep.session_log, tmp_path / "data" / "cids", clients
    finally:
        for cl in clients:
            await cl.close()
        c.stop()
        redis.stop()
        await w3.provider.disconnect()


async def _session(clients: list[Client], replicas: list[Proc], room: str) -> None:
    """Two participants meet in `room`, through different replicas when there are two, then leave."""
    a, b = Client(replicas[0].url), Client(replicas[-1].url)
    clients += [a, b]
    for cl, name in ((a, "ann"), (b, "bob")):
        await cl.connect()
        await cl.join(room, name)
    await a.leave()
    await b.leave()


async def _placement(c: Cluster, room: str) -> str | None:
    store = RedisStore(c.redis.url)
    await store.start()
    try:
        return await Placer(store, Registry(store)).current(room)
    finally:
        await store.close()


async def _recorded(w3, session_log: str) -> list:
    return await fetch_records(w3, session_log)


async def _wait_recorded(w3, session_log: str, n: int, c: Cluster, timeout: float = 60.0) -> list:
    deadline = time.monotonic() + timeout
    while len(recs := await _recorded(w3, session_log)) < n:
        assert time.monotonic() < deadline, f"{len(recs)} of {n} sessions on-chain:\n{c.logs()}"
        await asyncio.sleep(0.25)
    return recs


def _writing(c: Cluster) -> list[Proc]:
    return [p for p in c.replicas if "recorded at" in Path(p.log_path).read_text(errors="replace")]


async def test_every_finished_session_is_recorded_once_through_a_writer_kill(recording_cluster):
    c, w3, session_log, cids, clients = recording_cluster
    log = contracts.contract_at(w3, "SessionLog", session_log)
    for i in range(ROOMS_PER_ROUND):
        await _session(clients, c.replicas, f"rec-a{i}")
    first = await _wait_recorded(w3, session_log, ROOMS_PER_ROUND, c)
    # one replica wrote (the lock in Redis lets one send at a time): SIGKILL it, mid-flow
    [writer] = _writing(c)
    survivor = next(p for p in c.replicas if p is not writer)
    # a call in progress whose media node dies: no leave ever comes from it
    for name in ("ann", "bob"):
        cl = Client(c.replicas[len(clients) % 2].url)
        clients.append(cl)
        await cl.connect()
        await cl.join("rec-lost", name)
    lost_node = c.node(await _placement(c, "rec-lost"))
    lost_node.proc.kill()
    for cl in clients[-2:]:  # the replicas noticed (so no new room is placed on the dead node)
        assert (await cl.wait_message("removed", timeout=15))["reason"] == "node_lost"
    for i in range(ROOMS_PER_ROUND):
        await _session(clients, [survivor], f"rec-b{i}")
    writer.proc.kill()
    for i in range(ROOMS_PER_ROUND):
        await _session(clients, [survivor], f"rec-c{i}")
    total = 3 * ROOMS_PER_ROUND + 1
    recs = await _wait_recorded(w3, session_log, total, c, timeout=90.0)
    await asyncio.sleep(1.0)  # anything written twice would show up by now
    recs = await _recorded(w3, session_log)
    ids = [r.session_id for r in recs]
    assert len(ids) == len(set(ids)) == total, ids
    assert await log.functions.sessionCount().call() == total
    assert survivor in _writing(c)  # the survivor took over the lock and the dead writer's entries
    store = DirCidStore(cids)
    rooms, reasons = set(), {}
    for r in recs:
        res = await verify_session(w3, session_log, store, r.session_id)
        assert res.ok, res.line()
        fields = res.record.fields
        rooms.add(fields["roomId"])
        # both participants are in each summary, whichever replica they joined through
        assert fields["participantCount"] == 2, fields
        doc = json.loads(await store.get(fields["cid"]))
        reasons[doc["room"]] = doc.get("endReason", "")
        if doc["room"] == "rec-lost":
            assert [e["type"] for e in doc["events"]] == ["joined", "joined", "left", "left"], doc["events"]
            assert doc["endedAt"] >= doc["startedAt"]
    assert len(rooms) == total
    assert reasons.pop("rec-lost") == "node_lost"
    assert set(reasons.values()) == {""}, reasons
    assert {r.session_id for r in first} <= set(ids)
