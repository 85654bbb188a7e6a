"""Rooms and participants on the control plane: admission, presence events, delivery.

The media plane (`sfu.node.SfuNode`) knows peers and tracks; this module knows who is in which room
under which name and identity, and owns every participant's outbound message queue.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("basement.rooms")


@dataclass
class Admission:
    identity: str  # checksummed address, or a guest id for open rooms
    can_publish: bool = True
    can_subscribe: bool = True
    max_participants: int = 0  # the room's own limit; 0 = the server default


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
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    joined_at: float = field(default_factory=time.time)
    closed: bool = False

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "identity": self.identity}

    MAX_QUEUED = 1024

    def send(self, msg: dict[str, Any]) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= self.MAX_QUEUED:
            # a client that stops reading must not grow our memory without bound
            log.warning("participant %s is not reading; disconnecting", self.id)
            self.close()
            return
        self.queue.put_nowait(msg)

    def close(self) -> None:
        """Ask the connection's writer to close the WebSocket after what is queued."""
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class RoomManager:
    def __init__(self, node: Any, admit: Admit = admit_everyone, max_participants: int = 50,
                 observer: Any = None) -> None:
        self.node = node
        self.admit = admit
        self.max_participants = max_participants
        self.participants: dict[str, Participant] = {}  # the ones connected to this process
        self.observer = observer  # optional: session tracking (participant_joined / participant_left)

    def deliver(self, participant_id: str, msg: dict[str, Any]) -> None:
        p = self.participants.get(participant_id)
        if p is not None:
            p.send(msg)

    async def join(self, room: str, name: str, grant: str | None, queue: asyncio.Queue | None = None,
                   ref: Any = None) -> tuple[Participant, dict]:
        """Admit, then place on the media node; presence events come from the node (one per room)."""
        admission = await self.admit(room, grant)
        pid = "PA_" + secrets.token_urlsafe(9)
        p = Participant(pid, room, name or admission.identity, admission.identity,
                        admission.can_publish, admission.can_subscribe, queue or asyncio.Queue())
        self.participants[pid] = p
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
