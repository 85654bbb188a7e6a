"""SessionTracker: turns room events into finished-session Summaries in the Outbox.

A session starts with the first join to an empty room. When the room becomes empty a grace timer
starts; a join before it fires continues the same session, otherwise the session ends at the time
the last participant left. The summary is put in the outbox and only once `outbox.put` has returned
(durable) is the session dropped from memory; if the put fails it is retried with backoff, so a
session is never lost because the disk or Redis hiccupped.

Identities are participant addresses (any case; they are checksummed) or, in open rooms, guest ids,
which are counted but are not in the participants' Merkle tree. Timestamps (`at`) are unix
seconds as floats; the document keeps milliseconds, the on-chain fields whole seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from signalling.sessions.outbox import Outbox
from signalling.sessions.summary import Summary, build_document, make_summary, new_session_id, norm_identity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingPolicy:
    """Which finished sessions are written on-chain. Every write costs gas, and anyone can open an
    anonymous room, so by default only gated rooms (whose members are wallets) are recorded.

    `rooms`: "gated" (the room has a gate when the session ends), "all" or "none"; a session must
    also last `min_duration_s` and have `min_participants` distinct identities."""

    rooms: str = "gated"
    min_duration_s: float = 0.0
    min_participants: int = 1

    def skip_reason(self, summary: Summary, gated: bool) -> str | None:
        """Why `summary` is not recorded, or None to record it."""
        if self.rooms == "none":
            return "recording is off (record_sessions=none)"
        if self.rooms == "gated" and not gated:
            return "the room is not gated (record_sessions=gated)"
        duration = summary.ended_at - summary.started_at
        if duration < self.min_duration_s:
            return f"it lasted {duration} s, under record_min_duration_s={self.min_duration_s:g}"
        if summary.participant_count < self.min_participants:
            return (f"{summary.participant_count} participant(s), under "
                    f"record_min_participants={self.min_participants}")
        return None


RECORD_ALL = RecordingPolicy("all")


@dataclass
class _Session:
    room: str
    session_id: bytes
    started_at: float
    present: set[str] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)
    tracks: list[dict[str, Any]] = field(default_factory=list)
    media: dict[str, dict[str, int]] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)  # identity -> data messages sent
    emptied_at: float | None = None
    timer: asyncio.TimerHandle | None = None
    end_reason: str = ""
    ended: bool = False  # out of _live: no more journal saves
    dirty: bool = False  # changed since the journal last saved it
    saving: asyncio.Task | None = None

    def snapshot(self, node_id: str) -> dict[str, Any]:
        """What the journal keeps (times as unix seconds, floats allowed: not a canonical document)."""
        return {"node": node_id, "sessionId": self.session_id.hex(), "room": self.room,
                "startedAt": self.started_at, "present": sorted(self.present), "events": list(self.events),
                "tracks": list(self.tracks), "media": {k: dict(v) for k, v in self.media.items()},
                "messages": dict(self.messages), "savedAt": time.time()}

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> _Session:
        """ValueError naming the problem if `snap` is not what `snapshot` writes."""
        try:
            events = [{"atMs": int(e["atMs"]), "type": str(e["type"]), "identity": norm_identity(e["identity"])}
                      for e in snap.get("events") or ()]
            if any(e["type"] not in ("joined", "left") for e in events):
                raise ValueError("an event is neither joined nor left")
            tracks = [{"atMs": int(t["atMs"]), "identity": norm_identity(t["identity"]),
                       "trackId": str(t["trackId"]), "kind": str(t["kind"])} for t in snap.get("tracks") or ()]
            return cls(str(snap["room"]), bytes.fromhex(snap["sessionId"]), float(snap["startedAt"]),
                       present={norm_identity(p) for p in snap.get("present") or ()}, events=events, tracks=tracks,
                       media={norm_identity(k): {"bytes": int(v["bytes"]), "packets": int(v["packets"])}
                              for k, v in (snap.get("media") or {}).items()},
                       messages={norm_identity(k): int(v) for k, v in (snap.get("messages") or {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a session snapshot: {type(e).__name__}: {str(e)[:200]}") from None


class SessionTracker:
    def __init__(self, outbox: Outbox, *, grace_s: float = 30.0,
                 on_closed: Callable[[Summary], Awaitable[None] | None] | None = None,
                 retry_max_s: float = 30.0, policy: RecordingPolicy = RECORD_ALL,
                 is_gated: Callable[[str], Awaitable[bool]] | None = None, journal: Any = None) -> None:
        self.outbox = outbox
        self.grace_s = grace_s
        self.on_closed = on_closed
        self.retry_max_s = retry_max_s
        self.policy = policy
        self.is_gated = is_gated
        self.journal = journal  # SessionJournal (cluster media nodes): live sessions outlive the node
        self.skipped = 0  # sessions the policy kept off-chain
        self._live: dict[str, _Session] = {}
        self._closing: set[asyncio.Task] = set()

    # ------------------------------------------------ room manager API (never blocks)

    def participant_joined(self, room: str, identity: str, at: float | None = None) -> bytes:
        """Returns the session id the participant is now part of."""
        at = time.time() if at is None else at
        identity = norm_identity(identity)
        s = self._live.get(room)
        if s is None:
            s = _Session(room, new_session_id(room, int(at)), at)
            self._live[room] = s
            log.info("session %s started in room %r", s.session_id.hex()[:12], room)
        if s.timer is not None:  # rejoin within grace: same session
            s.timer.cancel()
            s.timer = None
            s.emptied_at = None
        s.present.add(identity)
        s.events.append({"atMs": _ms(at), "type": "joined", "identity": identity})
        self._changed(s)
        return s.session_id

    def participant_left(self, room: str, identity: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        identity = norm_identity(identity)
        s = self._live.get(room)
        if s is None or identity not in s.present:
            return
        s.present.discard(identity)
        s.events.append({"atMs": _ms(at), "type": "left", "identity": identity})
        self._changed(s)
        if not s.present:
            s.emptied_at = at
            s.timer = asyncio.get_running_loop().call_later(self.grace_s, self._grace_expired, room, s)

    def track_published(self, room: str, identity: str, track_id: str, kind: str,
                        at: float | None = None) -> None:
        at = time.time() if at is None else at
        s = self._live.get(room)
        if s is None or any(t["trackId"] == str(track_id) for t in s.tracks):
            return  # a track published again (a screen shared again) is one track of the session
        s.tracks.append({"atMs": _ms(at), "identity": norm_identity(identity),
                         "trackId": str(track_id), "kind": str(kind)})
        self._changed(s)

    def on_media_event(self, room: str, event: dict[str, Any]) -> None:
        """A room event of the media plane (`sfu.node.SfuNode`'s `on_event`, in this process or sent
        by a media node or worker): `track_published` and `media` count here, others are ignored."""
        if event["type"] == "track_published":
            self.track_published(room, event["identity"], event["track"], event["kind"])
        elif event["type"] == "media":
            self.add_media(room, event["identity"], event["bytes"], event["packets"], event.get("messages", 0))

    def add_media(self, room: str, identity: str, nbytes: int, packets: int, messages: int = 0) -> None:
        """What a participant received (media) and sent (data channel messages: counted, never kept)."""
        s = self._live.get(room)
        if s is None:
            return
        m = s.media.setdefault(norm_identity(identity), {"bytes": 0, "packets": 0})
        m["bytes"] += int(nbytes)
        m["packets"] += int(packets)
        if messages:
            s.messages[norm_identity(identity)] = s.messages.get(norm_identity(identity), 0) + int(messages)
        self._changed(s)

    # ------------------------------------------------ introspection / shutdown

    def session_id(self, room: str) -> bytes | None:
        s = self._live.get(room)
        return s.session_id if s else None

    @property
    def live_rooms(self) -> list[str]:
        return list(self._live)

    async def drain(self) -> None:
        """Wait until every session whose grace expired is safely in the outbox."""
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    async def close_all(self, at: float | None = None) -> None:
        """Shutdown: end every live session now (participants still present leave at `at`)."""
        at = time.time() if at is None else at
        for room, s in list(self._live.items()):
            for identity in sorted(s.present):
                s.events.append({"atMs": _ms(at), "type": "left", "identity": identity})
            if s.present:
                s.present.clear()
                s.emptied_at = at
            if s.timer is not None:
                s.timer.cancel()
            self._grace_expired(room, s)
        await self.drain()

    # ------------------------------------------------ journal (cluster)

    def _changed(self, s: _Session) -> None:
        """Save `s` to the journal soon; saves of one session run one at a time, the last state last."""
        if self.journal is None or s.ended:
            return
        s.dirty = True
        if s.saving is None:
            s.saving = asyncio.get_running_loop().create_task(self._save(s), name=f"session-journal-{s.room}")

    async def _save(self, s: _Session) -> None:
        delay = 0.1
        try:
            while s.dirty and not s.ended:
                s.dirty = False
                try:
                    await self.journal.save(s.session_id.hex(), s.snapshot(self.journal.node_id))
                    delay = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the store is briefly away: the next save carries everything
                    log.warning("journal save of session %s failed: %s", s.session_id.hex()[:12], e)
                    s.dirty = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max_s)
        finally:
            s.saving = None

    async def beat(self) -> None:
        """Heartbeat of a cluster node: tells the journal it is alive while it has live sessions."""
        if self.journal is not None and self._live:
            await self.journal.beat()

    async def end_lost(self, snapshot: dict[str, Any], ended_at: float, reason: str = "node_lost") -> None:
        """End a session another process journaled (its node died): everyone still present leaves at
        `ended_at`, and the summary goes to the outbox under the same recording policy. Returns once
        it is there (or the policy skipped it); ValueError if `snapshot` is malformed."""
        s = _Session.from_snapshot(snapshot)
        for identity in sorted(s.present):
            s.events.append({"atMs": _ms(ended_at), "type": "left", "identity": identity})
        s.present.clear()
        s.emptied_at, s.end_reason, s.ended = max(ended_at, s.started_at), reason, True
        await self._persist(s)

    async def _forget(self, s: _Session) -> None:
        """The session is in the outbox (or skipped): its journal entry has done its job."""
        if self.journal is None:
            return
        if s.saving is not None:
            await asyncio.gather(s.saving, return_exceptions=True)
        try:
            await self.journal.drop(s.session_id.hex())
        except Exception as e:  # left behind, it can only make a dead node's reaper put it again:
            log.warning("journal drop of session %s failed: %s", s.session_id.hex()[:12], e)  # same id, once

    # ------------------------------------------------ ending

    def _grace_expired(self, room: str, s: _Session) -> None:
        if self._live.get(room) is not s or s.present:
            return
        # Drop from _live first so a join from now on starts a fresh session, while this one is
        # still being persisted.
        del self._live[room]
        s.ended = True
        t = asyncio.get_running_loop().create_task(self._persist(s), name=f"session-close-{room}")
        self._closing.add(t)
        t.add_done_callback(self._closing.discard)

    def build_summary(self, s: _Session) -> Summary:
        ended = s.emptied_at if s.emptied_at is not None else time.time()
        doc = build_document(session_id=s.session_id, room=s.room, started_at=int(s.started_at),
                             ended_at=max(int(ended), int(s.started_at)), events=s.events,
                             tracks=s.tracks, media=s.media, messages=s.messages, end_reason=s.end_reason)
        return make_summary(doc)

    async def _persist(self, s: _Session) -> None:
        summary = self.build_summary(s)
        gated = False
        if self.policy.rooms == "gated" and self.is_gated is not None:
            try:
                gated = await self.is_gated(s.room)
            except Exception:
                # unknown: record it (losing a gated room's record is worse than one extra write)
                log.exception("cannot tell whether room %r is gated; recording its session", s.room)
                gated = True
        why = self.policy.skip_reason(summary, gated)
        if why is not None:
            self.skipped += 1
            log.info("session %s in room %r not recorded: %s", summary.session_id.hex()[:12], s.room, why)
            await self._forget(s)
            return
        delay = 0.1
        while True:
            try:
                await self.outbox.put(summary)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox put failed for session %s; retrying in %.1fs",
                              summary.session_id.hex()[:12], delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
        log.info("session %s closed (room %r, %d participants, cid %s)", summary.session_id.hex()[:12],
                 s.room, summary.participant_count, summary.cid)
        await self._forget(s)
        if self.on_closed is not None:
            res = self.on_closed(summary)
            if asyncio.iscoroutine(res):
                await res


def _ms(at: float) -> int:
    return int(round(at * 1000))
