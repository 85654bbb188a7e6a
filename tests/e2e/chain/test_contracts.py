"""Committed artifacts match their sources; SessionLog and Multicall3 behave on both chains."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from eth_account import Account
from web3 import AsyncWeb3
from web3.logs import DISCARD

from signalling.chain import contracts
from tests.support.chainfix import AnvilNode, ChainHandle

CONTRACTS_DIR = Path(__file__).resolve().parents[3] / "contracts"


async def _node(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(CONTRACTS_DIR / "compile.js"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_committed_artifacts_match_sources(tmp_path: Path) -> None:
    # A tampered copy must be caught (proves the check can fail) while the real artifacts pass;
    # both compiles run concurrently because each takes a few seconds of solc-js.
    tampered = tmp_path / "artifacts"
    shutil.copytree(CONTRACTS_DIR / "artifacts", tampered)
    victim = tampered / "Multicall3.json"
    victim.write_text(victim.read_text().replace('"bytecode": "0x60', '"bytecode": "0x61', 1))
    (rc, out), (bad_rc, bad_out) = await asyncio.gather(
        _node("--check"), _node("--check", "--artifacts", str(tampered))
    )
    assert rc == 0, out
    assert bad_rc == 1, bad_out
    assert "artifact differs from sources: Multicall3.json" in bad_out
    assert "SessionLog.json" not in bad_out


def _args(sid: bytes, started: int = 100, ended: int = 200, cid: str = "bafkreiexample") -> tuple:
    return (sid, AsyncWeb3.keccak(text="room-1"), started, ended, 7, 9, b"\x11" * 32, 123_456, 789, cid)


def _sid(label: str) -> bytes:
    return AsyncWeb3.keccak(text=f"{label}-{Account.create().address}")


async def _revert(awaitable: object) -> str | None:
    try:
        await awaitable  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001 - the point is to classify whatever the backend raised
        name = contracts.revert_name(exc)
        assert name is not None, f"not a revert: {exc!r}"
        return name
    return None


async def _record(chain_w3, log, sender, sid: bytes) -> dict:
    seq = await log.functions.sessionCount().call()
    return await contracts.send(chain_w3, log.functions.recordSession(seq, *_args(sid)), sender)


async def test_record_session_and_event(chain: ChainHandle) -> None:
    log = chain.contract("SessionLog")
    sid = _sid("s")
    before = await log.functions.sessionCount().call()
    receipt = await _record(chain.w3, log, chain.writer, sid)
    (ev,) = log.events.SessionRecorded().process_receipt(receipt, errors=DISCARD)
    assert ev.args.sessionId == sid
    assert ev.args.writer == chain.writer.address
    assert (ev.args.participantCount, ev.args.mediaBytes, ev.args.mediaPackets) == (9, 123_456, 789)
    assert ev.args.cid == "bafkreiexample"
    assert await log.functions.sessionCount().call() == before + 1
    s = await log.functions.getSession(sid).call()
    assert s[0] == AsyncWeb3.keccak(text="room-1")
    assert tuple(s[1:5]) == (100, 200, 7, 9)
    assert s[8] == chain.writer.address and s[9] == "bafkreiexample"
    assert 0 <= await log.functions.deployedBlock().call() < receipt["blockNumber"]


async def test_record_session_reverts(chain: ChainHandle) -> None:
    log = chain.contract("SessionLog")
    sid = _sid("dup")
    await _record(chain.w3, log, chain.writer, sid)
    seq = await log.functions.sessionCount().call()
    w = {"from": chain.writer.address}
    assert await _revert(log.functions.recordSession(seq, *_args(sid)).call(w)) == "DuplicateSession"
    # a record must name the position it appends at: a stale or future one is refused
    for wrong in (seq - 1, seq + 1):
        assert await _revert(log.functions.recordSession(wrong, *_args(_sid("p"))).call(w)) == "SeqMismatch"
    stranger = chain.accounts[5]
    assert await _revert(log.functions.recordSession(seq, *_args(_sid("x"))).call({"from": stranger})) \
        == "NotWriter"
    assert await _revert(
        log.functions.recordSession(seq, *_args(_sid("t"), started=300, ended=200)).call(w)
    ) == "BadTimes"
    assert await _revert(log.functions.setWriter(stranger, True).call({"from": stranger})) == "NotAdmin"
    assert await log.functions.isWriter(chain.writer.address).call()
    assert not await log.functions.isWriter(stranger).call()


async def test_record_batch(chain: ChainHandle) -> None:
    log = chain.contract("SessionLog")
    ids = [_sid(f"b{i}") for i in range(3)]
    root = _sid("root")
    seq = await log.functions.sessionCount().call()
    receipt = await contracts.send(chain.w3, log.functions.recordBatch(seq, root, ids, "bafkreimanifest"),
                                   chain.writer)
    batched = log.events.SessionBatched().process_receipt(receipt, errors=DISCARD)
    assert [e.args.sessionId for e in batched] == ids
    assert {e.args.batchRoot for e in batched} == {root}
    (done,) = log.events.BatchRecorded().process_receipt(receipt, errors=DISCARD)
    assert (done.args.batchRoot, done.args.firstSeq, done.args.count, done.args.writer, done.args.manifestCid) \
        == (root, seq, 3, chain.writer.address, "bafkreimanifest")
    assert tuple(await log.functions.getBatch(root).call()) == (chain.writer.address, seq, 3)
    assert await log.functions.sessionCount().call() == seq + 3
    w = {"from": chain.writer.address}
    # the same write again (a writer that did not see its first transaction land) is refused
    assert await _revert(log.functions.recordBatch(seq, root, ids, "x").call(w)) == "SeqMismatch"
    assert await _revert(log.functions.recordBatch(seq + 3, root, [_sid("n")], "x").call(w)) == "DuplicateBatch"
    assert await _revert(log.functions.recordBatch(seq + 3, _sid("r3"), [], "x").call(w)) == "EmptyBatch"
    assert await _revert(log.functions.recordBatch(seq + 3, _sid("r2"), ids, "x").call({"from": chain.accounts[5]})) \
        == "NotWriter"
    assert tuple(await log.functions.getBatch(_sid("none")).call())[0] == "0x" + "00" * 20


async def test_multicall_aggregate3(chain: ChainHandle) -> None:
    holder = chain.fresh_account().address
    token_id = await chain.mint_pass(holder)
    mc = chain.contract("Multicall3")
    nft = chain.contract("MembershipPass")
    calls = [
        (nft.address, True, nft.encode_abi("ownerOf", [token_id])),
        (nft.address, True, nft.encode_abi("ownerOf", [token_id + 10**9])),  # nonexistent: reverts
    ]
    ok, missing = await mc.functions.aggregate3(calls).call()
    assert ok[0] and AsyncWeb3.to_checksum_address(ok[1][-20:]) == holder
    assert not missing[0]
    strict = [(c[0], False, c[2]) for c in calls]
    with pytest.raises(Exception) as info:
        await mc.functions.aggregate3(strict).call()
    rev = contracts.decode_revert(info.value)
    assert rev is not None and rev.name == "Error" and rev.args == ("Multicall3: call failed",)


async def test_anvil_restart_keeps_state(fresh_anvil: AnvilNode) -> None:
    node = fresh_anvil
    sid = _sid("persist")
    w3 = node.anvil.w3()
    log = contracts.contract_at(w3, "SessionLog", node.deployment.session_log)
    await _record(w3, log, node.writer, sid)
    await w3.provider.disconnect()
    port = node.anvil.port
    node.anvil.restart()
    assert node.anvil.port == port and node.anvil.running
    w3 = node.anvil.w3()
    try:
        log = contracts.contract_at(w3, "SessionLog", node.deployment.session_log)
        assert (await log.functions.getSession(sid).call())[8] == node.writer.address
        assert await log.functions.isWriter(node.writer.address).call()
    finally:
        await w3.provider.disconnect()
