"""Outbox durability: SQLite across a SIGKILLed writer process, Redis across a dead consumer and server."""

from __future__ import annotations

import random
import sqlite3

from signalling.sessions.outbox import SqliteOutbox
from signalling.sessions.summary import hex32
from tests.support.sessionfix import read_ids, spawn_outbox_worker

RNG = random.Random(99)



async def test_sqlite_acknowledged_puts_survive_sigkill(tmp_path):
    db = tmp_path / "outbox.db"
    acked: list[str] = []
    for _round in range(3):  # kill it at a different moment each time, same file
        proc = await spawn_outbox_worker("put", str(db))
        acked += await read_ids(proc, RNG.randint(5, 60))
        proc.kill()
        await proc.wait()
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ob = SqliteOutbox(db)
    stored = set(await ob.session_ids())
    assert set(acked) <= stored
    # at most one put per round was in flight when the process died
    assert len(stored) - len(acked) <= 3
    entries = await ob.claim(1000)
    assert {hex32(e.summary.session_id) for e in entries} == stored  # every row still parses
    await ob.close()
