"""Sessions in the cluster (issue #17's acceptance): media nodes track their rooms' sessions, a replica's
chain writer records them, and every finished session is on-chain exactly once, even when the writing
replica is SIGKILLed mid-way; a session whose media node is SIGKILLed still ends (reason node_lost) and
is recorded; documents are on IPFS under the on-chain CIDs, every session verifies from IPFS alone, and a
signed-in participant proves their presence. Real processes: redis-server, 3 `basement sfu` nodes, 2
`basement signal` replicas, anvil with Basement deployed, a js-ipfs node."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from sfu import transport
from signalling.access.siwe import SiweMessage
from signalling.chain import contracts
from signalling.protocol.client import Client
from signalling.sessions.cidstore import IpfsHttpCidStore
from signalling.sessions.cli import fetch_records, prove_participant, verify_session
from tests.support.clusterfix import Cluster, Proc, placement
from tests.support.redisproc import RedisProc
from tests.support.sessionfix import REPO, make_writer

ROOMS = {"a": 7, "b": 6, "c": 6}  # + the call whose node dies: 20 sessions


@pytest.fixture
async def recording_cluster(fresh_anvil, ipfs_node, tmp_path):
    # A chain of its own: the session-wide anvil's SessionLog holds other tests' sessions, and this
    # test counts every record on it.
    anvil_node = fresh_anvil
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
           "BASEMENT_DATA_DIR": str(tmp_path / "data"), "BASEMENT_IPFS_API": ipfs_node.url}
    clients: list[Client] = []
    try:
        await c.start(3, 2, **env)
        yield c, w3, dep.session_log, ipfs_node, clients, anvil_node.anvil.url
    finally:
        for cl in clients:
            await cl.close()
        c.stop()
        redis.stop()
        await w3.provider.disconnect()


async def _grant(replica: Proc, wallet, room: str) -> str:
    """Sign in with Ethereum at `replica` and get a grant for `room` (the join then carries the address)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{replica.url}/auth/nonce") as r:
            n = await r.json()
        msg = SiweMessage(domain=n["domain"], address=wallet.address, uri=n["uri"], version="1",
                          chain_id=n["chainId"], nonce=n["nonce"], statement="Sign in to Basement",
                          issued_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")).to_text()
        signed = {"message": msg, "signature": wallet.sign_message(encode_defunct(text=msg)).signature.hex()}
        async with http.post(f"{replica.url}/auth/siwe", json=signed) as r:
            token = (await r.json())["signInToken"]
        async with http.post(f"{replica.url}/auth/grant", json={"room": room, "signInToken": token}) as r:
            return (await r.json())["grant"]


async def _session(clients: list[Client], replicas: list[Proc], room: str, grant: str | None = None) -> None:
    """Two participants meet in `room`, through different replicas when there are two, then leave."""
    a, b = Client(replicas[0].url), Client(replicas[-1].url)
    clients += [a, b]
    for cl, name, g in ((a, "ann", grant), (b, "bob", None)):
        await cl.connect()
        await cl.join(room, name, g)
    await a.leave()
    await b.leave()


async def _recorded(w3, session_log: str) -> list:
    return await fetch_records(w3, session_log)


async def _wait_recorded(w3, session_log: str, n: int, c: Cluster, timeout: float = 60.0) -> list:
    deadline = time.monotonic() + timeout
    while len(recs := await _recorded(w3, session_log)) < n:
        assert time.monotonic() < deadline, f"{len(recs)} of {n} sessions on-chain:\n{c.logs()}"
        await asyncio.sleep(0.25)
    return recs


async def _active_writer(c: Cluster, timeout: float = 10.0) -> Proc:
    """The replica holding the writer lock, as its metrics say (exactly one may)."""
    deadline = time.monotonic() + timeout
    while True:
        active = [p for p in c.replicas if p.proc.poll() is None
                  and await p.metric("basement_sessions_writer_active") == 1]
        if len(active) == 1:
            return active[0]
        assert len(active) < 2, "two replicas hold the writer lock"
        assert time.monotonic() < deadline, f"no replica holds the writer lock:\n{c.logs()}"
        await asyncio.sleep(0.2)


async def test_every_finished_session_is_recorded_once_through_a_writer_kill(recording_cluster):
    c, w3, session_log, ipfs_node, clients, rpc_url = recording_cluster
    log = contracts.contract_at(w3, "SessionLog", session_log)
    wallet = Account.create()  # one participant signs in, so the session has an address to prove
    await _session(clients, c.replicas, "rec-a0", await _grant(c.replicas[0], wallet, "rec-a0"))
    for i in range(1, ROOMS["a"]):
        await _session(clients, c.replicas, f"rec-a{i}")
    first = await _wait_recorded(w3, session_log, ROOMS["a"], c)
    # one replica wrote (the lock in Redis lets one send at a time): SIGKILL it, mid-flow
    writer = await _active_writer(c)
    survivor = next(p for p in c.replicas if p is not writer)
    # a call in progress whose media node dies: no leave ever comes from it
    for name in ("ann", "bob"):
        cl = Client(c.replicas[len(clients) % 2].url)
        clients.append(cl)
        await cl.connect()
        await cl.join("rec-lost", name)
    lost_node = c.node(await placement(c, "rec-lost"))
    lost_node.proc.kill()
    for cl in clients[-2:]:  # the replicas noticed (so no new room is placed on the dead node)
        assert (await cl.wait_message("removed", timeout=15))["reason"] == "node_lost"
    for i in range(ROOMS["b"]):
        await _session(clients, [survivor], f"rec-b{i}")
    writer.proc.kill()
    for i in range(ROOMS["c"]):
        await _session(clients, [survivor], f"rec-c{i}")
    total = sum(ROOMS.values()) + 1
    recs = await _wait_recorded(w3, session_log, total, c, timeout=90.0)
    await asyncio.sleep(1.0)  # anything written twice would show up by now
    recs = await _recorded(w3, session_log)
    ids = [r.session_id for r in recs]
    assert len(ids) == len(set(ids)) == total, ids
    assert await log.functions.sessionCount().call() == total
    # the survivor took over the lock and the dead writer's entries, and says so on its metrics port
    assert await _active_writer(c) is survivor
    assert 0 < await survivor.metric("basement_sessions_recorded_total") <= total
    # (the backlog is counted at most once a second)
    deadline = time.monotonic() + 10
    while await survivor.metric("basement_sessions_outbox_pending") != 0:
        assert time.monotonic() < deadline, "the outbox backlog metric never came down to 0"
        await asyncio.sleep(0.2)
    store = IpfsHttpCidStore(ipfs_node.url)  # documents and manifests from the IPFS node alone
    rooms, reasons, sessions = set(), {}, {}
    for r in recs:
        res = await verify_session(w3, session_log, store, r.session_id)
        assert res.ok, res.line()
        fields = res.record.fields
        rooms.add(fields["roomId"])
        # both participants are in each summary, whichever replica they joined through
        assert fields["participantCount"] == 2, fields
        doc = json.loads(await store.get(fields["cid"]))
        reasons[doc["room"]] = doc.get("endReason", "")
        sessions[doc["room"]] = r.session_id
        if doc["room"] == "rec-lost":
            assert [e["type"] for e in doc["events"]] == ["joined", "joined", "left", "left"], doc["events"]
            assert doc["endedAt"] >= doc["startedAt"]
    assert len(rooms) == total
    assert reasons.pop("rec-lost") == "node_lost"
    assert set(reasons.values()) == {""}, reasons
    # the signed-in participant proves they were there: address → participantsRoot → leaf → batch root
    proof = await prove_participant(w3, session_log, store, sessions["rec-a0"], wallet.address)
    assert proof["valid"] and proof["participant"] == wallet.address
    await store.close()
    # and what an auditor runs: `basement sessions verify` / `prove` against the chain and IPFS only
    env = {**os.environ, "BASEMENT_RPC_URL": rpc_url, "BASEMENT_SESSION_LOG_ADDRESS": session_log,
           "BASEMENT_DATA_DIR": str(Path(c.logdir) / "auditor")}
    base = [sys.executable, "-m", "signalling.cli", "sessions"]
    out = await asyncio.to_thread(subprocess.run, [*base, "verify", "--store-dir", ipfs_node.url, *ids],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.count("PASS") == total, out.stdout + out.stderr
    out = await asyncio.to_thread(subprocess.run, [*base, "prove", "--store-dir", ipfs_node.url,
                                                   sessions["rec-a0"], wallet.address],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["proof"] == proof["proof"], out.stderr
    assert {r.session_id for r in first} <= set(ids)
