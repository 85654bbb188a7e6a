"""Session documents on IPFS (#17 "Documents on IPFS"), with a real IPFS node (js-ipfs, Kubo RPC API)
and a real chain (anvil): published and pinned under the CID the chain holds, fetched back by it,
verified from IPFS alone; an IPFS outage never holds a chain write longer than its setting, and the
document is published once the node is back."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time

import aiohttp
import pytest

from signalling.sessions.cidstore import IpfsHttpCidStore, IpfsMirroredStore, cid_of
from signalling.sessions.cli import fetch_records, prove_participant, verify_session
from signalling.sessions.outbox import SqliteOutbox
from signalling.sessions.pinning import PinningService
from signalling.sessions.summary import hex32
from signalling.sessions.writer import ChainWriter, WriterConfig
from tests.support.ipfsnode import IpfsNode
from tests.support.sessionfix import REPO, make_writer, synthetic_summary

pytestmark = pytest.mark.timeout(180)


async def _writer(node, tmp_path, ipfs_url: str, *, batch: int = 1, timeout_s: float = 10.0,
                  pinning: PinningService | None = None):
    w3 = node.anvil.w3()
    key = await make_writer(w3, node.deployment.session_log, node.owner)
    store = IpfsMirroredStore(tmp_path / "cids", IpfsHttpCidStore(ipfs_url), publish_timeout_s=timeout_s,
                              retry_initial_s=0.2, retry_max_s=1.0, pinning=pinning)
    cfg = WriterConfig(batch_size=batch, batch_wait_s=0.05, idle_wait_s=0.05)
    return w3, ChainWriter(w3, node.deployment.session_log, key, SqliteOutbox(tmp_path / "o.db"), store, config=cfg)


async def _pinned(ipfs_url: str, cid: str) -> bool:
    async with aiohttp.ClientSession() as http, http.post(f"{ipfs_url}/api/v0/pin/ls",
                                                          params={"arg": cid, "type": "recursive"}) as r:
        return r.status == 200 and "Keys" in await r.json()


async def test_documents_are_published_pinned_and_verified_from_ipfs(anvil_node, ipfs_node, tmp_path):
    w3, writer = await _writer(anvil_node, tmp_path, ipfs_node.url)
    ipfs = IpfsHttpCidStore(ipfs_node.url)
    try:
        rng = random.Random()
        summaries = [synthetic_summary(rng) for _ in range(3)]
        for s in summaries:
            await writer.outbox.put(s)
        for _ in summaries:
            assert await writer.step() == 1
        assert writer.store.published == 3 and writer.store.pending() == []
        for s in summaries:
            [rec] = await fetch_records(w3, anvil_node.deployment.session_log, s.session_id)
            onchain = rec.fields["cid"]
            assert onchain == s.cid == cid_of(s.document)
            assert await ipfs.get(onchain) == s.document  # fetched from the IPFS node by the on-chain CID
            assert await _pinned(ipfs_node.url, onchain)
            res = await verify_session(w3, anvil_node.deployment.session_log, ipfs, s.session_id)
            assert res.ok, res.reasons
        # `basement sessions verify` reading documents from IPFS only (no local copy: another directory)
        env = {**os.environ, "BASEMENT_RPC_URL": anvil_node.anvil.url,
               "BASEMENT_SESSION_LOG_ADDRESS": anvil_node.deployment.session_log,
               "BASEMENT_DATA_DIR": str(tmp_path / "elsewhere")}
        cmd = [sys.executable, "-m", "signalling.cli", "sessions", "verify", "--store-dir", ipfs_node.url,
               *(hex32(s.session_id) for s in summaries)]
        out = await asyncio.to_thread(subprocess.run, cmd, cwd=REPO, env=env, capture_output=True, text=True,
                                      timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.count("PASS") == 3
    finally:
        await ipfs.close()
        await writer.store.close()
        await w3.provider.disconnect()


async def test_a_batch_verifies_and_proves_from_ipfs_alone(anvil_node, ipfs_node, tmp_path):
    """A batched session: the manifest named on-chain and the document both come from IPFS."""
    w3, writer = await _writer(anvil_node, tmp_path, ipfs_node.url, batch=4)
    ipfs = IpfsHttpCidStore(ipfs_node.url)
    try:
        summaries = [synthetic_summary(random.Random()) for _ in range(4)]
        for s in summaries:
            await writer.outbox.put(s)
        assert await writer.step() == 4
        assert writer.store.pending() == []  # four documents and the manifest, all published
        for s in summaries:
            res = await verify_session(w3, anvil_node.deployment.session_log, ipfs, s.session_id)
            assert res.ok and res.record.kind == "batch", res.reasons
            assert await _pinned(ipfs_node.url, res.record.manifest_cid)
        who = json.loads(summaries[2].document)["participants"][0]
        proof = await prove_participant(w3, anvil_node.deployment.session_log, ipfs, summaries[2].session_id, who)
        assert proof["valid"] and proof["session"]["manifestCid"] == res.record.manifest_cid
    finally:
        await ipfs.close()
        await writer.store.close()
        await w3.provider.disconnect()


async def test_documents_and_manifests_are_pinned_on_a_pinning_service(anvil_node, ipfs_node, pinning_service,
                                                                      tmp_path):
    """The IPFS Pinning Service API (what Pinata and other hosted services speak): every document and
    the batch manifest are pinned there once the node holds them, each asked for once."""
    pinning = PinningService(pinning_service.url, pinning_service.token)
    w3, writer = await _writer(anvil_node, tmp_path, ipfs_node.url, batch=3, pinning=pinning)
    try:
        summaries = [synthetic_summary(random.Random()) for _ in range(3)]
        for s in summaries:
            await writer.outbox.put(s)
        assert await writer.step() == 3
        [rec] = await fetch_records(w3, anvil_node.deployment.session_log, summaries[0].session_id)
        want = {s.cid for s in summaries} | {rec.manifest_cid}
        pins = pinning_service.pins()
        assert set(pins) == want and set(pins.values()) <= {"queued", "pinning", "pinned"}, pins
        assert writer.store.pending() == [] and pinning.requested == 4
        # the same document again (a re-put after a crash): the service already has it, no new request
        await writer.store.put(summaries[0].document)
        assert pinning.requested == 4 and len(pinning_service.pins()) == 4
    finally:
        await writer.store.close()
        await w3.provider.disconnect()


async def test_a_refused_pinning_token_keeps_documents_pending_and_never_holds_the_chain(
        anvil_node, ipfs_node, pinning_service, tmp_path, caplog):
    pinning = PinningService(pinning_service.url, "not-the-token")
    w3, writer = await _writer(anvil_node, tmp_path, ipfs_node.url, pinning=pinning)
    try:
        s = synthetic_summary(random.Random())
        await writer.outbox.put(s)
        assert await writer.step() == 1  # recorded on-chain all the same
        [rec] = await fetch_records(w3, anvil_node.deployment.session_log, s.session_id)
        assert rec.fields["cid"] == s.cid
        assert writer.store.pending() == [s.cid] and pinning_service.pins() == {}
        assert "refused the access token" in caplog.text
        assert "not-the-token" not in caplog.text and "not-the-token" not in repr(pinning)
    finally:
        await writer.store.close()
        await w3.provider.disconnect()


async def test_an_ipfs_outage_never_holds_the_chain_write_and_publication_catches_up(anvil_node, tmp_path):
    node = IpfsNode(repo=tmp_path / "ipfs" / "repo").start()
    try:
        w3, writer = await _writer(anvil_node, tmp_path, node.url, timeout_s=1.0)
        await asyncio.to_thread(node.stop)  # IPFS is down before the session ends
        s = synthetic_summary(random.Random())
        await writer.outbox.put(s)
        await writer.start()
        started = time.monotonic()
        while await writer.outbox.pending():
            assert time.monotonic() - started < 20, "the chain write waited on IPFS"
            await asyncio.sleep(0.05)
        [rec] = await fetch_records(w3, anvil_node.deployment.session_log, s.session_id)
        assert rec.fields["cid"] == s.cid
        assert writer.store.pending() == [s.cid] and writer.store.failed >= 1
        await asyncio.sleep(1.5)
        assert writer.store.pending() == [s.cid]  # retried, still not published, not forgotten

        await asyncio.to_thread(node.start)  # the same repo and port: IPFS is back
        ipfs = IpfsHttpCidStore(node.url)
        try:
            started = time.monotonic()
            while writer.store.pending():
                assert time.monotonic() - started < 30, "the document was never published after IPFS came back"
                await asyncio.sleep(0.1)
            assert await ipfs.get(s.cid) == s.document and await _pinned(node.url, s.cid)
            assert (await verify_session(w3, anvil_node.deployment.session_log, ipfs, s.session_id)).ok
        finally:
            await ipfs.close()
            await writer.stop()
            await w3.provider.disconnect()
    finally:
        node.close()


async def test_a_restarted_writer_publishes_what_an_earlier_one_could_not(anvil_node, tmp_path):
    """The marker survives the process: a new store over the same directory finds and publishes it."""
    node = IpfsNode(repo=tmp_path / "ipfs" / "repo")
    s = synthetic_summary(random.Random())
    first = IpfsMirroredStore(tmp_path / "cids", IpfsHttpCidStore(node.url), publish_timeout_s=0.5)
    assert await first.put(s.document) == s.cid  # IPFS not running: stored locally, marked
    assert first.pending() == [s.cid]
    await first.close()
    node.start()
    second = IpfsMirroredStore(tmp_path / "cids", IpfsHttpCidStore(node.url), retry_initial_s=0.2)
    ipfs = IpfsHttpCidStore(node.url)
    try:
        await second.start()
        started = time.monotonic()
        while second.pending():
            assert time.monotonic() - started < 30
            await asyncio.sleep(0.1)
        assert await ipfs.get(s.cid) == s.document
    finally:
        await ipfs.close()
        await second.close()
        node.close()


async def test_basement_serve_publishes_a_finished_session_to_ipfs(make_server, ipfs_node):
    """The all-in-one wiring with `ipfs_api`: a call ends, its summary is on-chain and on IPFS."""
    from signalling.protocol.client import Client

    server = await make_server(ipfs_api=ipfs_node.url, record_sessions="all", session_grace_s=0.2)
    chain = server.control.embedded
    c = Client(server.url)
    await c.connect()
    await c.join("ipfs-room", "ada")
    await c.close()
    ipfs = IpfsHttpCidStore(ipfs_node.url)
    try:
        deadline = time.monotonic() + 30
        while not (recs := await fetch_records(chain.w3, chain.deployment.session_log)):
            assert time.monotonic() < deadline, "no session recorded"
            await asyncio.sleep(0.1)
        [rec] = recs
        doc = await ipfs.get(rec.fields["cid"])
        assert cid_of(doc) == rec.fields["cid"] and b'"ipfs-room"' in doc
        assert (await verify_session(chain.w3, chain.deployment.session_log, ipfs, rec.session_id)).ok
    finally:
        await ipfs.close()


async def test_a_hanging_ipfs_holds_a_batch_at_most_one_timeout(anvil_node, tmp_path):
    """An IPFS API that accepts connections and never answers: the first document of a batch waits its
    timeout, the others do not wait at all (unbounded, 5 documents would take 5 timeouts)."""
    import socket

    hole = socket.create_server(("127.0.0.1", 0), backlog=64)  # listens, never accepts or answers
    try:
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        w3, writer = await _writer(anvil_node, tmp_path, url, batch=5, timeout_s=2.0)
        try:
            rng = random.Random()
            summaries = [synthetic_summary(rng) for _ in range(5)]
            for s in summaries:
                await writer.outbox.put(s)
            started = time.monotonic()
            assert await writer.step() == 5
            took = time.monotonic() - started
            assert took < 2.0 * 3, f"the batch waited {took:.1f} s on IPFS"
            recs = [await fetch_records(w3, anvil_node.deployment.session_log, s.session_id) for s in summaries]
            assert all(len(r) == 1 and r[0].kind == "batch" for r in recs)
            # the batch manifest is a document too: waiting its turn with the summaries, not lost
            manifests = {r[0].manifest_cid for r in recs}
            assert len(manifests) == 1
            assert sorted(writer.store.pending()) == sorted([*(s.cid for s in summaries), *manifests])
        finally:
            await writer.store.close()
            await w3.provider.disconnect()
    finally:
        hole.close()
