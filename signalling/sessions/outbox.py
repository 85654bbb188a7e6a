"""Durable queue of finished sessions waiting to be written on-chain.

Contract shared by both backends:
* `put(summary)` returns only once the summary is durable (the tracker treats a session as closed
  only after that). Putting the same session twice is harmless: the chain writer skips recorded ids.
* `claim(n)` hands out entries that are not yet acknowledged; an entry stays in the outbox, and is
  handed out again (after a restart, or to another consumer once idle), until `ack`.
* `ack(entries)` is called by the chain writer only after the chain write is confirmed.
* `dead_letter(entry, reason)` parks an entry the chain will never accept (e.g. BadTimes) so it
  stops blocking the queue; it is kept for an operator, never silently dropped.

Backends: `SqliteOutbox` (WAL, synchronous=FULL) for the all-in-one server; `RedisOutbox` (a stream
with a consumer group, XAUTOCLAIM of entries idle too long) for a cluster. Redis is only as durable
as its persistence: run it with `appendonly yes` and `appendfsync always` for the guarantee above.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from signalling.sessions.summary import Summary, hex32


@dataclass(frozen=True)
class OutboxEntry:
    entry_id: str
    summary: Summary


class Outbox(Protocol):
    async def put(self, summary: Summary) -> None: ...

    async def claim(self, max_n: int, wait_s: float = 0.0) -> list[OutboxEntry]: ...

    async def ack(self, entries: Sequence[OutboxEntry]) -> None: ...

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None: ...

    async def pending(self) -> int: ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id TEXT NOT NULL UNIQUE,
  payload TEXT NOT NULL,
  created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
  session_id TEXT PRIMARY KEY,
  payload TEXT NOT NULL,
  reason TEXT NOT NULL,
  at REAL NOT NULL
);
"""


class SqliteOutbox:
    """One SQLite file; safe to share between the server process and a writer subprocess."""

    RECHECK_S = 5.0  # an idle outbox is queried at least this often, whatever the files say

    def __init__(self, path: str | os.PathLike[str], *, poll_s: float = 0.1) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._poll_s = poll_s
        self._lock = threading.Lock()
        # autocommit mode: every statement group below runs in an explicit transaction.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit fsyncs the WAL, so an acknowledged put survives power loss, not just a crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._wakeup = asyncio.Event()
        self._files = (self.path, self.path.with_name(self.path.name + "-wal"))
        # the files' state when a query last found the outbox empty: until they change (or a put here
        # wakes us), the next claim knows the answer without asking SQLite in a worker thread
        self._empty_at: tuple[tuple[int, int, int] | None, ...] | None = None
        self._queried_at: tuple[tuple[int, int, int] | None, ...] | None = None  # the state at the last query
        self._empty_since = 0.0  # ... and when: file times are only as fine as the kernel's clock tick, so a
        # commit by another process could in principle leave the same (inode, size, mtime); asking again
        # every RECHECK_S bounds how late such an entry can be seen

    def __repr__(self) -> str:
        return f"SqliteOutbox({str(self.path)!r})"

    def _run(self, fn, *args):
        with self._lock:
            return fn(*args)

    async def _call(self, fn, *args):
        return await asyncio.to_thread(self._run, fn, *args)

    def _put(self, sid: str, payload: str) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT OR IGNORE INTO outbox(session_id, payload, created_at) VALUES (?,?,?)",
                             (sid, payload, time.time()))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    async def put(self, summary: Summary) -> None:
        await self._call(self._put, hex32(summary.session_id), summary.to_json())
        self._wakeup.set()

    def _claim(self, n: int) -> list[tuple[int, str]]:
        return self._db.execute("SELECT seq, payload FROM outbox ORDER BY seq LIMIT ?", (n,)).fetchall()

    def _files_state(self) -> tuple[tuple[int, int, int] | None, ...]:
        """What a commit by any process changes: the WAL grows or is reset, the database file is
        checkpointed into. Two stat calls, no thread hop."""
        out: list[tuple[int, int, int] | None] = []
        for f in self._files:
            try:
                st = os.stat(f)
            except OSError:
                out.append(None)
            else:
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    async def claim(self, max_n: int, wait_s: float = 0.0) -> list[OutboxEntry]:
        # A put in this process wakes us at once; another process's put is seen at the next poll,
        # which queries only when the files changed. An idle node used to run a query in a worker
        # thread ten times a second, and then once per claim (3-4 % of a busy SFU's samples).
        deadline = time.monotonic() + wait_s
        while True:
            seen = self._files_state()
            now = time.monotonic()
            if self._wakeup.is_set() or seen != self._empty_at or now - self._empty_since > self.RECHECK_S:
                self._wakeup.clear()
                rows = await self._call(self._claim, max_n)
                # "empty at this state" is trusted only once two queries in a row saw it: another
                # process's commit grows the WAL a moment before readers can see the rows (CI caught
                # a stat that saw the final WAL and a query that still found nothing)
                confirmed = seen == self._queried_at
                self._queried_at = seen
                if rows:
                    self._empty_at = None
                    return [OutboxEntry(str(seq), Summary.from_json(p)) for seq, p in rows]
                self._empty_at, self._empty_since = (seen if confirmed else None), now
            if time.monotonic() >= deadline:
                return []
            changed = False
            while not changed and time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(min(self._poll_s, max(0.0, deadline - time.monotonic()))):
                        await self._wakeup.wait()
                    changed = True
                except TimeoutError:
                    changed = self._files_state() != self._empty_at  # unconfirmed (None): ask again
            if not changed:
                return []

    def _ack(self, seqs: list[int]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    async def ack(self, entries: Sequence[OutboxEntry]) -> None:
        if entries:
            await self._call(self._ack, [int(e.entry_id) for e in entries])

    def _dead(self, seq: int, sid: str, payload: str, reason: str) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT OR REPLACE INTO dead_letter VALUES (?,?,?,?)",
                             (sid, payload, reason, time.time()))
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None:
        await self._call(self._dead, int(entry.entry_id), hex32(entry.summary.session_id),
                         entry.summary.to_json(), reason)

    async def dead_letters(self) -> list[tuple[str, str]]:
        return await self._call(lambda: self._db.execute(
            "SELECT session_id, reason FROM dead_letter ORDER BY at").fetchall())

    async def pending(self) -> int:
        return (await self._call(lambda: self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()))[0]

    async def session_ids(self) -> list[str]:
        rows = await self._call(lambda: self._db.execute("SELECT session_id FROM outbox").fetchall())
        return [r[0] for r in rows]

    async def close(self) -> None:
        await self._call(self._db.close)


# ---------------------------------------------------------------- Redis Streams

class RedisOutbox:
    """A Redis stream consumed through one consumer group.

    claim() returns, in order: entries this consumer already holds but has not acked (a failed
    attempt), entries other consumers have held longer than `min_idle_ms` (XAUTOCLAIM: the holder
    died; 10 s, the writer lock's lease, so the writer that takes over the lock takes over its
    predecessor's entries as soon as it may send), then new entries. Taking entries from a writer
    that is in fact alive costs no duplicate: SessionLog's compare-and-append refuses a second
    record. ack() is XACK + XDEL in one transaction, so the stream length is the number of sessions
    not yet on-chain.
    """

    def __init__(self, redis, *, stream: str = "basement:sessions:outbox", group: str = "chain-writers",
                 consumer: str | None = None, min_idle_ms: int = 10_000) -> None:
        self.redis = redis
        self.stream = stream
        self.dead_stream = stream + ":dead"
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.min_idle_ms = min_idle_ms
        self._group_ready = False

    def __repr__(self) -> str:
        return f"RedisOutbox(stream={self.stream!r}, group={self.group!r}, consumer={self.consumer!r})"

    @classmethod
    def from_url(cls, url: str, **kw) -> RedisOutbox:
        import redis.asyncio as aioredis

        return cls(aioredis.from_url(url), **kw)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        import redis.exceptions

        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    async def put(self, summary: Summary) -> None:
        await self.redis.xadd(self.stream, {"sid": hex32(summary.session_id), "payload": summary.to_json()})

    @staticmethod
    def _entries(messages) -> list[OutboxEntry]:
        out = []
        for mid, fields in messages or []:
            if not fields:  # deleted while pending: nothing left to write
                continue
            mid = mid.decode() if isinstance(mid, bytes) else mid
            payload = fields.get(b"payload", fields.get("payload"))
            out.append(OutboxEntry(mid, Summary.from_json(payload)))
        return out

    async def claim(self, max_n: int, wait_s: float = 0.0) -> list[OutboxEntry]:
        await self._ensure_group()
        mine = await self.redis.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=max_n)
        entries = self._entries(mine[0][1]) if mine else []
        if len(entries) < max_n:
            res = await self.redis.xautoclaim(self.stream, self.group, self.consumer, self.min_idle_ms,
                                              start_id="0-0", count=max_n - len(entries))
            entries += self._entries(res[1])
        if len(entries) < max_n:
            block = int(wait_s * 1000) if not entries and wait_s > 0 else None
            new = await self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                              count=max_n - len(entries), block=block)
            if new:
                entries += self._entries(new[0][1])
        return entries

    async def ack(self, entries: Sequence[OutboxEntry]) -> None:
        if not entries:
            return
        ids = [e.entry_id for e in entries]
        async with self.redis.pipeline(transaction=True) as p:
            p.xack(self.stream, self.group, *ids)
            p.xdel(self.stream, *ids)
            await p.execute()

    async def dead_letter(self, entry: OutboxEntry, reason: str) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            p.xadd(self.dead_stream, {"sid": hex32(entry.summary.session_id),
                                      "payload": entry.summary.to_json(), "reason": reason})
            p.xack(self.stream, self.group, entry.entry_id)
            p.xdel(self.stream, entry.entry_id)
            await p.execute()

    async def pending(self) -> int:
        return await self.redis.xlen(self.stream)

    async def close(self) -> None:
        await self.redis.aclose()


# ---------------------------------------------------------------- factories

def open_outbox(spec: str, **kw) -> Outbox:
    """`redis://…` / `rediss://…` → RedisOutbox; `sqlite:PATH` or a plain path → SqliteOutbox."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisOutbox.from_url(spec, **kw)
    if spec.startswith("sqlite:"):
        spec = spec.removeprefix("sqlite:").removeprefix("//")
    return SqliteOutbox(spec, **kw)


def outbox_for_settings(settings) -> Outbox:
    """Cluster (redis_url set) → Redis stream; otherwise `<data_dir>/outbox.sqlite3`."""
    if settings.redis_url:
        from signalling.cluster.redisconn import target_from_settings

        # the same password/TLS as the bus: a password-protected Redis refuses a bare URL
        return RedisOutbox(target_from_settings(settings).client())
    return SqliteOutbox(Path(settings.data_dir) / "outbox.sqlite3")
