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


async def test_record_session_and_event(chain: ChainHandle) -> None:
    log = chain.contract("SessionLog")
    sid = _sid("s")
    receipt = await contracts.send(chain.w3, log.functions.recordSession(*_args(sid)), chain.writer)
    (ev,) = log.events.SessionRecorded().process_receipt(receipt, errors=DISCARD)
    assert ev.args.sessionId == sid
    assert ev.args.writer == chain.writer.address
    assert (ev.args.participantCount, ev.args.mediaBytes, ev.args.mediaPackets) == (9, 123_456, 789)
    assert ev.args.cid == "bafkreiexample"
    assert await log.functions.isRecorded(sid).call()
    s = await log.functions.getSession(sid).call()
    assert s[0] == AsyncWeb3.keccak(text="room-1")
    assert tuple(s[1:5]) == (100, 200, 7, 9)
    assert s[8] == chain.writer.address and s[9] == "bafkreiexample"


async def test_record_session_reverts(chain: ChainHandle) -> None:
    log = chain.contract("SessionLog")
    sid = _sid("dup")
    await contracts.send(chain.w3, log.functions.recordSession(*_args(sid)), chain.writer)
    assert await _revert(log.functions.recordSession(*_args(sid)).call({"from": chain.writer.address})) \
        == "DuplicateSession"
    stranger = chain.accounts[5]
    assert await _revert(log.functions.recordSession(*_args(_sid("x"))).call({"from": stranger})) == "NotWriter"
    assert await _revert(
        log.functions.recordSession(*_args(_sid("t"), started=300, ended=200)).call({"from": chain.writer.address})
    ) == "BadTimes"
    assert await _revert(log.functions.setWriter(stranger, True).call({"from": stranger})) == "NotAdmin"
    assert await log.functions.isWriter(chain.writer.address).call()
    assert not await log.functions.isWriter(stranger).call()


async def test_record_batch(chain: ChainHandle) -> None:
    log = chain.contract("SessionLog")
    single = _sid("single")
    await contracts.send(chain.w3, log.functions.recordSession(*_args(single)), chain.writer)
    ids = [_sid(f"b{i}") for i in range(3)]
    root = _sid("root")
    receipt = await contracts.send(chain.w3, log.functions.recordBatch(root, [*ids, single]), chain.writer)
    batched = log.events.SessionBatched().process_receipt(receipt, errors=DISCARD)
    assert [e.args.sessionId for e in batched] == ids  # the already-recorded id is skipped
    (done,) = log.events.BatchRecorded().process_receipt(receipt, errors=DISCARD)
    assert (done.args.batchRoot, done.args.count, done.args.writer) == (root, 3, chain.writer.address)
    for sid in ids:
        assert await log.functions.isRecorded(sid).call()
        assert await log.functions.batchOf(sid).call() == root
    assert await _revert(log.functions.recordBatch(root, [_sid("n")]).call({"from": chain.writer.address})) \
        == "DuplicateBatch"
    assert await _revert(log.functions.recordSession(*_args(ids[0])).call({"from": chain.writer.address})) \
        == "DuplicateSession"
    assert await _revert(log.functions.recordBatch(_sid("r2"), ids).call({"from": chain.accounts[5]})) \
        == "NotWriter"


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
    await contracts.send(w3, log.functions.recordSession(*_args(sid)), node.writer)
    await w3.provider.disconnect()
    port = node.anvil.port
    node.anvil.restart()
    assert node.anvil.port == port and node.anvil.running
    w3 = node.anvil.w3()
    try:
        log = contracts.contract_at(w3, "SessionLog", node.deployment.session_log)
        assert await log.functions.isRecorded(sid).call()
        assert await log.functions.isWriter(node.writer.address).call()
    finally:
        await w3.provider.disconnect()
