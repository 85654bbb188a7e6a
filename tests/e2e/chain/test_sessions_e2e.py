"""End to end on real anvil: exactly-once through writer SIGKILLs and an RPC outage; verify / prove."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from signalling.chain import contracts
from signalling.chain.evm import Anvil
from signalling.sessions.cidstore import DirCidStore
from signalling.sessions.cli import fetch_records, prove_participant, verify_session
from signalling.sessions.outbox import SqliteOutbox
from signalling.sessions.summary import hex32, verify_proof
from signalling.sessions.writer import ChainWriter, WriterConfig, batch_manifest
from tests.support.chainfix import AnvilNode
from tests.support.sessionfix import REPO, make_writer, synthetic_summary


class WriterProc:
    """`basement sessions writer` as a separate process we can SIGKILL."""

    def __init__(self, tmp: Path, rpc_url: str, session_log: str, key: str) -> None:
        self.tmp, self.rpc_url, self.session_log, self.key = tmp, rpc_url, session_log, key
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self, batch_size: int = 1) -> None:
        self.runs += 1
        env = {**os.environ, "BASEMENT_WRITER_KEY": self.key}
        logf = open(self.tmp / f"writer-{self.runs}.log", "wb")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "signalling.cli", "sessions", "writer", "--outbox", str(self.tmp / "outbox.db"),
             "--rpc-url", self.rpc_url, "--session-log-address", self.session_log,
             "--store-dir", str(self.tmp / "cids"), "--writer-batch-size", str(batch_size),
             "--writer-batch-wait-s", "0.3", "--backoff-max-s", "1.5"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        logf.close()

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.log_tail()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def log_tail(self) -> str:
        return (self.tmp / f"writer-{self.runs}.log").read_text(errors="replace")[-3000:]


async def _wait_pending(outbox: SqliteOutbox, at_most: int, timeout_s: float, writer: WriterProc) -> None:
    deadline = time.monotonic() + timeout_s
    while await outbox.pending() > at_most:
        assert writer.proc is not None and writer.proc.poll() is None, "writer died:\n" + writer.log_tail()
        assert time.monotonic() < deadline, f"outbox still has {await outbox.pending()}:\n" + writer.log_tail()
        await asyncio.sleep(0.02)


async def test_200_sessions_exactly_once_through_kills_and_outage(tmp_path):
    seed = int(os.environ.get("BASEMENT_TEST_SEED", random.randrange(10**9)))
    print("seed", seed)
    rng = random.Random(seed)
    anvil = Anvil(state_path=tmp_path / "anvil-state.json")
    anvil.start()
    w3 = anvil.w3()
    try:
        owner = (await w3.eth.accounts)[0]
        log_c = await contracts.deploy(w3, "SessionLog", owner, sender=owner)
        key = await make_writer(w3, log_c.address, owner)
        outbox = SqliteOutbox(tmp_path / "outbox.db")
        summaries = [synthetic_summary(rng) for _ in range(200)]
        waves = [summaries[0:50], summaries[50:100], summaries[100:150], summaries[150:200]]
        writer = WriterProc(tmp_path, anvil.url, log_c.address, key)

        # 1: single-session mode, SIGKILL at a random moment once it is under way
        for s in waves[0]:
            await outbox.put(s)
        writer.start(batch_size=1)
        await _wait_pending(outbox, 50 - rng.randint(3, 30), 60, writer)
        await asyncio.sleep(rng.uniform(0, 0.2))
        writer.kill()

        # 2: batch mode picks up the leftovers plus new sessions; killed mid-way
        for s in waves[1]:
            await outbox.put(s)
        writer.start(batch_size=10)
        left = await outbox.pending()
        await _wait_pending(outbox, left - rng.randint(10, 40), 60, writer)
        await asyncio.sleep(rng.uniform(0, 0.3))
        writer.kill()

        # 3: the node goes away for 10 s while sessions keep ending; the writer is also killed and
        #    restarted during the outage (it must start up against a dead RPC endpoint)
        for s in waves[2]:
            await outbox.put(s)
        writer.start(batch_size=1)
        left = await outbox.pending()
        await _wait_pending(outbox, left - rng.randint(1, 20), 60, writer)
        anvil.stop()  # SIGTERM: anvil dumps its state
        outage_start = time.monotonic()
        for s in waves[3]:
            await outbox.put(s)
        await asyncio.sleep(rng.uniform(2, 5))
        writer.kill()
        writer.start(batch_size=rng.choice([1, 10]))
        await asyncio.sleep(max(0.0, 10 - (time.monotonic() - outage_start)))
        assert writer.proc.poll() is None, writer.log_tail()
        anvil.start()  # same port, state loaded

        # 4: the tracker re-puts sessions that are already on-chain (its put "timed out")
        for s in rng.sample(summaries[:100], 10):
            await outbox.put(s)
        await _wait_pending(outbox, 0, 60, writer)
        writer.kill()

        # exactly once, none missing
        records = await fetch_records(w3, log_c.address)
        per_id: dict[str, int] = {}
        for r in records:
            per_id[r.session_id] = per_id.get(r.session_id, 0) + 1
        expected = {hex32(s.session_id) for s in summaries}
        missing = expected - set(per_id)
        assert not missing, (f"{len(missing)} acked sessions have no event: {sorted(missing)[:3]}; writer log:\n"
                             + writer.log_tail())
        assert set(per_id) == expected
        assert [sid for sid, n in per_id.items() if n != 1] == []
        # the log's position counts every record, visible or not: state and events agree
        assert await log_c.functions.sessionCount().call() == len(records) == 200
        assert {r.kind for r in records} == {"single", "batch"}  # both paths were exercised

        store = DirCidStore(tmp_path / "cids")
        results = [await verify_session(w3, log_c.address, store, s.session_id) for s in summaries]
        assert [r.line() for r in results if not r.ok] == []

        # and through the real command line, one batched and one single session
        batched = next(r.session_id for r in records if r.kind == "batch")
        single = next(r.session_id for r in records if r.kind == "single")
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "signalling.cli", "sessions", "verify", batched, single, "--rpc-url", anvil.url,
             "--session-log-address", log_c.address, "--store-dir", str(tmp_path / "cids")],
            cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.count("PASS") == 2
        await outbox.close()
    finally:
        await w3.provider.disconnect()
        anvil.close()


async def _one_recorded(node: AnvilNode, tmp_path, batch: bool = False):
    w3 = node.anvil.w3()
    key = await make_writer(w3, node.deployment.session_log, node.owner)
    cfg = WriterConfig(batch_size=5 if batch else 1, batch_wait_s=0.05, idle_wait_s=0.05)
    writer = ChainWriter(w3, node.deployment.session_log, key, SqliteOutbox(tmp_path / "o.db"),
                         DirCidStore(tmp_path / "cids"), config=cfg)
    rng = random.Random()
    summaries = [synthetic_summary(rng) for _ in range(3 if batch else 1)]
    for s in summaries:
        await writer.outbox.put(s)
    assert await writer.step() == len(summaries)
    return w3, writer, summaries


def _cli(node: AnvilNode, tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASEMENT_RPC_URL": node.anvil.url,
           "BASEMENT_SESSION_LOG_ADDRESS": node.deployment.session_log, "BASEMENT_DATA_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "signalling.cli", "sessions", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


async def test_tampered_document_fails_verify(anvil_node, tmp_path):
    w3, writer, [s] = await _one_recorded(anvil_node, tmp_path)
    try:
        res = await verify_session(w3, anvil_node.deployment.session_log, writer.store, s.session_id)
        assert res.ok, res.reasons
        # someone edits the stored document: more media, same everything else
        path = writer.store.path_for(s.cid)
        doc = json.loads(path.read_bytes())
        first = sorted(doc["media"]["perParticipant"])[0]
        doc["media"]["perParticipant"][first]["bytes"] += 1
        doc["media"]["bytes"] += 1
        path.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
        res = await verify_session(w3, anvil_node.deployment.session_log, writer.store, s.session_id)
        assert not res.ok
        assert any("does not match its CID" in r for r in res.reasons), res.reasons
        assert any(r.startswith("mediaBytes: on-chain") for r in res.reasons), res.reasons
        out = _cli(anvil_node, tmp_path, "verify", hex32(s.session_id))
        assert out.returncode == 1 and out.stdout.startswith("FAIL") and "does not match its CID" in out.stdout
        path.unlink()
        res = await verify_session(w3, anvil_node.deployment.session_log, writer.store, s.session_id)
        assert not res.ok and "not found in the CID store" in res.reasons[0]
    finally:
        await w3.provider.disconnect()


async def test_unknown_session_fails_verify(anvil_node, tmp_path):
    w3 = anvil_node.anvil.w3()
    try:
        res = await verify_session(w3, anvil_node.deployment.session_log, DirCidStore(tmp_path), b"\x42" * 32)
        assert not res.ok and "not recorded on-chain" in res.reasons[0]
    finally:
        await w3.provider.disconnect()


async def test_tampered_batch_manifest_fails_verify(anvil_node, tmp_path):
    w3, writer, summaries = await _one_recorded(anvil_node, tmp_path, batch=True)
    log = contracts.contract_at(w3, "SessionLog", anvil_node.deployment.session_log)
    try:
        for s in summaries:
            assert (await verify_session(w3, anvil_node.deployment.session_log, writer.store, s.session_id)).ok
        [done] = await log.events.BatchRecorded().get_logs(from_block=0,
                                                           argument_filters={"writer": writer.key.address})
        mpath = writer.store.path_for(done.args.manifestCid)
        manifest = json.loads(mpath.read_text())
        manifest["sessions"][0]["participantCount"] += 1
        mpath.write_text(json.dumps(manifest))
        sid = manifest["sessions"][0]["sessionId"]
        res = await verify_session(w3, anvil_node.deployment.session_log, writer.store, sid)
        assert not res.ok and "batch manifest does not match its CID" in res.reasons[0], res.reasons
        # A manifest that is what its CID says but whose proof does not reach the recorded root
        # (a writer bug, or a writer that lies): the proof check is what catches it.
        s = synthetic_summary(random.Random())
        await writer.store.put(s.document)
        cid = await writer.store.put(json.dumps(batch_manifest([s])).encode())
        seq = await log.functions.sessionCount().call()
        await contracts.send(w3, log.functions.recordBatch(seq, b"\x07" * 32, [s.session_id], cid),
                             writer.key._account)
        res = await verify_session(w3, anvil_node.deployment.session_log, writer.store, s.session_id)
        assert not res.ok and "does not reach the on-chain batch root" in res.reasons[0], res.reasons
    finally:
        await w3.provider.disconnect()


async def test_prove_participant(anvil_node, tmp_path):
    w3, writer, [s] = await _one_recorded(anvil_node, tmp_path)
    try:
        who = json.loads(s.document)["participants"][0]
        proof = await prove_participant(w3, anvil_node.deployment.session_log, writer.store, s.session_id, who)
        assert proof["valid"] and proof["participantsRoot"] == hex32(s.participants_root)
        out = _cli(anvil_node, tmp_path, "prove", hex32(s.session_id), who.lower())
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["proof"] == proof["proof"]
        out = _cli(anvil_node, tmp_path, "prove", hex32(s.session_id), "0x" + "11" * 20)
        assert out.returncode == 1 and "did not take part" in out.stderr
        out = _cli(anvil_node, tmp_path, "list")
        assert out.returncode == 0 and hex32(s.session_id) in out.stdout
    finally:
        await w3.provider.disconnect()


async def test_prove_participant_of_batched_session(anvil_node, tmp_path):
    """address → participantsRoot → session leaf → batch root stored on-chain, from the CLI."""
    w3, writer, summaries = await _one_recorded(anvil_node, tmp_path, batch=True)
    try:
        s = summaries[1]
        who = json.loads(s.document)["participants"][-1]
        out = _cli(anvil_node, tmp_path, "prove", hex32(s.session_id), who)
        assert out.returncode == 0, out.stderr
        proof = json.loads(out.stdout)
        assert proof["valid"] and proof["participantsRoot"] == hex32(s.participants_root)
        step = proof["session"]
        assert step["leaf"] == hex32(s.leaf())
        root = bytes.fromhex(step["batchRoot"][2:])
        assert verify_proof([bytes.fromhex(p[2:]) for p in step["proof"]], root, s.leaf())
        log = contracts.contract_at(w3, "SessionLog", anvil_node.deployment.session_log)
        batch = await log.functions.getBatch(root).call()
        assert batch[0] == writer.key.address and batch[2] == len(summaries)
        # the proof is specific: the same path does not lift another session's leaf to the root
        assert not verify_proof([bytes.fromhex(p[2:]) for p in step["proof"]], root, summaries[0].leaf())
    finally:
        await w3.provider.disconnect()


async def test_all_in_one_tracker_to_chain_on_embedded(embedded, tmp_path):
    """The all-in-one wiring: tracker → SQLite outbox → writer task → embedded chain → verify."""
    from signalling import config
    from signalling.sessions import writer as chainwriter
    from signalling.sessions.tracker import SessionTracker

    key = await make_writer(embedded.w3, embedded.deployment.session_log, embedded.owner)
    settings = config.load(env={}, data_dir=str(tmp_path), session_grace_s=0.05)
    writer = chainwriter.from_settings(settings, w3=embedded.w3, key=key,
                                       session_log=embedded.deployment.session_log,
                                       config=WriterConfig(idle_wait_s=0.05))
    outbox, store = writer.outbox, writer.store
    assert isinstance(outbox, SqliteOutbox) and outbox.path == tmp_path / "outbox.sqlite3"
    await writer.start()
    closed = []
    tracker = SessionTracker(outbox, grace_s=settings.session_grace_s, on_closed=closed.append)
    alice, bob = "0x" + "a1" * 20, "0x" + "b2" * 20
    now = time.time()
    tracker.participant_joined("demo", alice, now)
    tracker.participant_joined("demo", bob, now + 1)
    tracker.track_published("demo", alice, "mic", "audio", now + 1.5)
    tracker.add_media("demo", alice, 5000, 40)
    tracker.participant_left("demo", alice, now + 2)
    tracker.participant_left("demo", bob, now + 3)
    deadline = time.monotonic() + 30
    while not closed or await outbox.pending():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await writer.stop()
    [s] = closed
    res = await verify_session(embedded.w3, embedded.deployment.session_log, store, s.session_id)
    assert res.ok, res.reasons
    assert res.record.fields["participantCount"] == 2 and res.record.fields["mediaBytes"] == 5000
    await outbox.close()


async def test_cluster_two_writers_one_key_redis_outbox(anvil_node, redis_server, tmp_path):  # noqa: F811
    """Two writer replicas with the same key share a Redis outbox; the lock serialises them."""
    import redis.asyncio as aioredis

    from signalling.sessions.outbox import RedisOutbox
    from signalling.sessions.writer import RedisWriterLock

    w3 = anvil_node.anvil.w3()
    key = await make_writer(w3, anvil_node.deployment.session_log, anvil_node.owner)
    store = DirCidStore(tmp_path / "cids")
    writers = []
    for name in ("a", "b"):
        r = aioredis.from_url(redis_server.url)
        writers.append(ChainWriter(
            w3, anvil_node.deployment.session_log, key,
            RedisOutbox(r, consumer=name, min_idle_ms=500), store,
            config=WriterConfig(idle_wait_s=0.05, batch_size=3 if name == "b" else 1, batch_wait_s=0.05),
            lock=RedisWriterLock(r, "basement:chainwriter:test", ttl_ms=1500)))
    rng = random.Random()
    summaries = [synthetic_summary(rng) for _ in range(30)]
    for s in summaries[:15]:
        await writers[0].outbox.put(s)
    for w in writers:
        await w.start()
    for s in summaries[15:]:
        await writers[1].outbox.put(s)
    deadline = time.monotonic() + 60
    while await writers[0].outbox.pending():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    first = writers[0] if writers[0].written else writers[1]
    await first.stop()  # releases the lock: the other replica takes over
    more = [synthetic_summary(rng) for _ in range(5)]
    for s in more:
        await first.outbox.put(s)
    while await writers[0].outbox.pending():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    for w in writers:
        await w.stop()
    assert writers[0].written > 0 and writers[1].written > 0
    records = await fetch_records(w3, anvil_node.deployment.session_log)
    ours = {hex32(s.session_id) for s in summaries + more}
    counts = {}
    for r in records:
        if r.session_id in ours:
            counts[r.session_id] = counts.get(r.session_id, 0) + 1
    assert counts == dict.fromkeys(ours, 1)
    for w in writers:
        await w.outbox.close()
    await w3.provider.disconnect()
