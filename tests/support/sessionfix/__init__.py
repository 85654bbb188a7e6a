"""Helpers for the session tests: a real redis-server, writer accounts, synthetic summaries."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import AsyncWeb3

from signalling.chain import contracts
from signalling.sessions.summary import Summary, build_document, make_summary, new_session_id
from tests.support.redisproc import RedisProc


@pytest.fixture
def redis_server() -> Iterator[RedisProc]:
    """redis-server with AOF fsync always (the durability the outbox relies on), one per test."""
    r = RedisProc(durable=True).start()
    try:
        yield r
    finally:
        r.stop()


async def make_writer(w3: AsyncWeb3, session_log: str, admin: str) -> str:
    """A fresh key, allowed to write to `session_log` and funded by `admin` (an unlocked account)."""
    acct = Account.create()
    log_c = contracts.contract_at(w3, "SessionLog", session_log)
    await contracts.send(w3, log_c.functions.setWriter(acct.address, True), admin)
    await contracts.transfer_eth(w3, admin, acct.address, 10**19)
    return "0x" + acct.key.hex().removeprefix("0x")


def random_address(rng: random.Random) -> str:
    return AsyncWeb3.to_checksum_address("0x" + rng.randbytes(20).hex())


def synthetic_summary(rng: random.Random, room: str | None = None, *, start: int | None = None,
                      end: int | None = None) -> Summary:
    """A plausible finished session: 1–6 participants with joins/leaves, a track each, media counters."""
    room = room or f"room-{rng.randrange(10**6)}"
    start = 1_700_000_000 + rng.randrange(10**6) if start is None else start
    people = [random_address(rng) for _ in range(rng.randint(1, 6))]
    events, tracks, media = [], [], {}
    t = start * 1000
    for p in people:
        t += rng.randrange(1, 5000)
        events.append({"atMs": t, "type": "joined", "identity": p})
        tracks.append({"atMs": t + 10, "identity": p, "trackId": f"t-{rng.randrange(10**9)}", "kind": "audio"})
        media[p] = {"bytes": rng.randrange(10**9), "packets": rng.randrange(10**6)}
    for p in people:
        t += rng.randrange(1, 5000)
        events.append({"atMs": t, "type": "left", "identity": p})
    end = t // 1000 + 1 if end is None else end
    doc = build_document(session_id=new_session_id(room, start, rng.randbytes(16)), room=room,
                         started_at=start, ended_at=end, events=events, tracks=tracks, media=media)
    return make_summary(doc)


REPO = Path(__file__).resolve().parents[3]


async def spawn_outbox_worker(*args: str) -> asyncio.subprocess.Process:
    """tests.support.sessionfix.outbox_worker in a child process (so it can be SIGKILLed mid-write)."""
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.support.sessionfix.outbox_worker", *args,
                                                cwd=REPO, stdout=subprocess.PIPE)


async def read_ids(proc: asyncio.subprocess.Process, n: int, until: str | None = None) -> list[str]:
    """Up to `n` ids the worker printed (one a line), stopping early at the line `until`."""
    ids: list[str] = []
    while len(ids) < n:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert line, "worker exited early"
        if line == until:
            break
        ids.append(line)
    return ids
