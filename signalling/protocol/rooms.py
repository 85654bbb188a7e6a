"""Rooms and participants on the control plane: admission, presence events, delivery.

The media plane (`sfu.node.SfuNode`) knows peers and tracks; this module knows who is in which room
under which name and identity, and owns every participant's outbound message queue.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sfu.api import MediaNode
from signalling.protocol.edge import EDGE_STATS

log = logging.getLogger("basement.rooms")

DEFAULT_SEND_QUEUE = 1024

# Room events that describe a *state* (the latest value is all a client needs): while one is still
# queued for a client, a newer one for the same thing replaces it. One member toggling mute 6,000
# times then costs each other member one queued message, not 6,000 (which used to overflow their
# queues and disconnect everyone but the sender).
_STATE_EVENTS = {"track_muted": "track", "layer_changed": "track", "paused": "track", "dynacast": "track",
                 "active_speaker": None}


def state_key(msg: dict[str, Any]) -> tuple | None:
    """What a state event is about (its coalescing key), or None for events that must all arrive."""
    mtype = msg.get("type")
    if mtype not in _STATE_EVENTS or "id" in msg:  # a reply to a request is never merged
        return None
    about = _STATE_EVENTS[mtype]
    return (mtype, msg.get(about)) if about else (mtype,)


class SendQueue:
    """One client's outbound messages: bounded, state events coalesced, `None` ends the stream.

    `put` refuses (returns False) when `limit` messages are waiting: the client is not reading, and
    the caller disconnects it rather than grow memory. Any other event is a barrier: a state event
    after it is queued after it, never merged into an older one before it, so order is kept.
    """

    def __init__(self, limit: int = DEFAULT_SEND_QUEUE) -> None:
        self.limit = limit
        self._items: deque[list] = deque()  # one-element lists, so a pending state can be replaced in place
        self._pending: dict[tuple, list] = {}
        self._ready = asyncio.Event()
        self.high_water = 0  # the longest it has been (tests, debugging)
        self.overflowed = False
        self.on_overflow: Callable[[], None] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def put(self, msg: dict[str, Any]) -> bool:
        if self.overflowed:
            return False
        key = state_key(msg)
        if key is None:
            self._pending.clear()
        else:
            entry = self._pending.get(key)
            if entry is not None:
                entry[0] = msg
                EDGE_STATS.coalesced += 1
                return True
        if len(self._items) >= self.limit:
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow()
            return False
        entry = [msg]
        self._items.append(entry)
        if key is not None:
            self._pending[key] = entry
        self.high_water = max(self.high_water, len(self._items))
        self._ready.set()
        return True

    def end(self) -> None:
        """Queue the end of the stream (beyond the limit: it frees, it does not grow)."""
        self._pending.clear()
        self._items.append([None])
        self._ready.set()

    def put_nowait(self, msg: dict[str, Any] | None) -> None:
        """asyncio.Queue-compatible: None ends the stream; a message over the limit is refused."""
        if msg is None:
            self.end()
        else:
            self.put(msg)

    async def get(self) -> dict[str, Any] | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        entry = self._items.popleft()
        msg = entry[0]
        if msg is not None:
            key = state_key(msg)
            if key is not None and self._pending.get(key) is entry:
                del self._pending[key]
        return msg


@dataclass
class Admission:
    identity: str  # checksummed address, or a guest id for open rooms
    can_publish: bool = True
    can_subscribe: bool = True
    max_participants: int = 0  # the room's own limit; 0 = the server default
    max_seats: int = 0  # seats this identity may hold in the room; a join past it replaces the oldest; 0 = any


# (room, grant token or None) -> Admission, raising ProtocolError to refuse
Admit = Callable[[str, str | None], Awaitable[Admission]]


async def admit_everyone(room: str, grant: str | None) -> Admission:
    return Admission(identity="guest-" + secrets.token_hex(4))


@dataclass
class Participant:
    id: str
    room: str
    name: str
    identity: str
    can_publish: bool
    can_subscribe: bool
    queue: SendQueue = field(default_factory=SendQueue)
    joined_at: float = field(default_factory=time.time)
    closed: bool = False

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "identity": self.identity}

    def send(self, msg: dict[str, Any]) -> None:
        """Queue a message for the client; never raises (room broadcasts and the speaker loop call it)."""
        if self.closed:
            return
        if not self.queue.put(msg):
            # a client that stops reading must not grow our memory without bound
            log.warning("participant %s is not reading (%d messages queued); disconnecting",
                        self.id, self.queue.qsize())
            self.close()

    def close(self) -> None:
        """Ask the connection's writer to close the WebSocket after what is queued."""
        if not self.closed:
            self.closed = True
            self.queue.end()


class RoomManager:
    def __init__(self, node: MediaNode, admit: Admit = admit_everyone, max_participants: int = 50,
                 observer: Any = None) -> None:
        self.node = node
        self.admit = admit
        self.max_participants = max_participants
        self.participants: dict[str, Participant] = {}  # the ones connected to this process
        self.observer = observer  # optional: session tracking (participant_joined / participant_left)

    def deliver(self, participant_id: str, msg: dict[str, Any]) -> None:
        """Called from the media node's loops (speaker, layers): must not raise into them."""
        p = self.participants.get(participant_id)
        if p is None:
            return
        try:
            p.send(msg)
        except Exception:
            log.exception("delivering %s to %s failed", msg.get("type"), participant_id)

    async def join(self, room: str, name: str, grant: str | None, queue: SendQueue | None = None,
                   ref: Any = None) -> tuple[Participant, dict]:
        """Admit, then place on the media node; presence events come from the node (one per room)."""
        admission = await self.admit(room, grant)
        pid = "PA_" + secrets.token_urlsafe(9)
        p = Participant(pid, room, name or admission.identity, admission.identity,
                        admission.can_publish, admission.can_subscribe, queue or SendQueue())
        self.participants[pid] = p
        if admission.max_seats:
            # Newest join wins (a reconnect must not wait for the dead socket's timeout); dict
            # order is join order, so of concurrent joins exactly the last max_seats stay.
            seats = [q for q in self.participants.values() if q.room == room and q.identity == p.identity]
            for old in seats[:-admission.max_seats]:
                await self.remove(old.id, "replaced: this identity joined the room from another connection")
        try:
            state = await self.node.join(room, pid, p.name, p.can_publish, p.can_subscribe, p.identity,
                                         admission.max_participants or self.max_participants)
        except Exception:
            self.participants.pop(pid, None)
            raise
        if self.observer is not None:
            self.observer.participant_joined(room, p.identity, time.time())
        joined = {
            "type": "joined",
            "room": room,
            "participant": p.public(),
            "participants": state["participants"],
            "tracks": state["tracks"],
            "permissions": {"publish": p.can_publish, "subscribe": p.can_subscribe},
        }
        return p, joined

    async def leave(self, p: Participant, reason: str = "left") -> None:
        if self.participants.pop(p.id, None) is None:
            return
        try:
            await self.node.leave(p.id, reason)
        finally:
            if self.observer is not None:
                self.observer.participant_left(p.room, p.identity, time.time())

    def in_room(self, room: str) -> list[Participant]:
        return [p for p in self.participants.values() if p.room == room]

    async def remove(self, participant_id: str, reason: str) -> None:
        """Remove a participant on the server's initiative (e.g. tokens left the wallet)."""
        p = self.participants.get(participant_id)
        if p is None:
            return
        p.send({"type": "removed", "reason": reason})
        await self.leave(p, reason)
        p.close()
