"""Rooms and participants on the control plane: admission, presence events, delivery.

The media plane (`sfu.node.SfuNode`) knows peers and tracks; this module knows who is in which room
under which name and identity, and owns every participant's outbound message queue.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sfu.api import MediaNode
from signalling.protocol.edge import EDGE_STATS
from signalling.protocol.messages import ProtocolError
from signalling.protocol.replay import Replay

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

    def prepend(self, msgs: list[dict[str, Any]]) -> None:
        """Put messages before everything queued (those another replica had not written yet when it
        handed the participant over). Never refused, never merged: they were accepted there."""
        for msg in reversed(msgs):
            self._items.appendleft([msg])
        if msgs:
            self._pending.clear()  # a later state event must not be merged into one before these
            self._ready.set()

    def drain(self) -> list[dict[str, Any]]:
        """Take every queued message (the end of the stream, if queued, is dropped)."""
        msgs = [entry[0] for entry in self._items if entry[0] is not None]
        self._items.clear()
        self._pending.clear()
        return msgs

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
    p2p: bool = False  # the room lets two participants send their media peer to peer (sfu.pairing)
    e2ee: str = "optional"  # the room's end-to-end encryption: required, optional or off (docs/e2ee.md)


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
    e2ee: str = "optional"  # the room's end-to-end encryption when this participant joined (Admission)
    joined_at: float = field(default_factory=time.time)
    closed: bool = False
    # --- resumption (docs/protocol.md "Reconnecting") ---
    # what was written to the client, numbered; None when resumption is off (nothing to keep)
    replay: Replay | None = None
    received: int = 0  # client messages read since the join, over every socket it used
    resume_secret: str = ""
    # the secret `resumed` replaced, still good until the client is heard on the new socket: a
    # socket that drops again before `resumed` arrives leaves the client holding only this one
    previous_secret: str = ""
    detached_at: float | None = None  # its socket dropped; it waits for a resume until the grace ends
    # the connection serving it, told to step aside when a resume arrives on another socket
    on_takeover: Callable[[], None] | None = None
    detached_from: str | None = None  # the address whose dropped socket it waits on (max_detached_per_address)
    # one message of this participant applied at a time, whichever socket it came on (after a
    # takeover the old socket's message may still be running when the new one's arrive)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _expiry: asyncio.Task | None = None

    @property
    def resume_token(self) -> str:
        return f"{self.id}.{self.resume_secret}"

    def heard(self) -> None:
        """A message from the client on its current socket: it has the newest resume token."""
        self.previous_secret = ""


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
                 observer: Any = None, resume_grace_s: float = 0.0,
                 ice_servers: Callable[[str], list[dict[str, Any]]] | None = None,
                 max_detached_per_address: int = 0, roaming: Any = None,
                 ping: tuple[float, float] = (15.0, 5.0)) -> None:
        self.node = node
        # (interval, timeout) in s of the clients' pings, as `joined` tells them (client_ping_*)
        self.ping = ping
        # in a cluster (signalling.cluster.roaming): resumes of participants of other replicas
        self.roaming = roaming
        if roaming is not None:
            roaming.rooms = self
        self.admit = admit
        self.max_participants = max_participants
        self.participants: dict[str, Participant] = {}  # the ones connected to this process
        self.observer = observer  # optional: session tracking (participant_joined / participant_left)
        # how long a participant whose socket dropped stays, waiting for `resume` (0: it leaves at once)
        self.resume_grace_s = resume_grace_s
        self.closed = False  # shutting down: a dropped socket leaves at once
        # participants waiting for a resume, by the address their socket dropped from: at most this
        # many each (0 = any), or one address could keep any number in rooms by joining and dropping
        # (its open sockets are capped, ws_max_per_address, but a dropped one frees its place)
        self.max_detached_per_address = max_detached_per_address
        self.detached_by: dict[str, int] = {}
        # identity -> the RTCIceServers (STUN/TURN with credentials) its client connects through
        self.ice_servers = ice_servers

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
                   ref: Any = None, p2p: bool = False) -> tuple[Participant, dict]:
        """`p2p`: the client can send its media peer to peer (it goes so if the room allows it)."""
        """Admit, then place on the media node; presence events come from the node (one per room)."""
        admission = await self.admit(room, grant)
        pid = "PA_" + secrets.token_urlsafe(9)
        p = Participant(pid, room, name or admission.identity, admission.identity,
                        admission.can_publish, admission.can_subscribe, queue or SendQueue(),
                        replay=Replay() if self.resume_grace_s else None, e2ee=admission.e2ee)
        self.participants[pid] = p
        if admission.max_seats:
            # Newest join wins (a reconnect must not wait for the dead socket's timeout); dict
            # order is join order, so of concurrent joins exactly the last max_seats stay.
            seats = [q for q in self.participants.values() if q.room == room and q.identity == p.identity]
            for old in seats[:-admission.max_seats]:
                await self.remove(old.id, "replaced: this identity joined the room from another connection")
        try:
            state = await self.node.join(room, pid, p.name, p.can_publish, p.can_subscribe, p.identity,
                                         admission.max_participants or self.max_participants,
                                         p2p=p2p and admission.p2p)
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
            "e2ee": p.e2ee,
            "ice_servers": self.ice_servers(p.id) if self.ice_servers else [],
            "ping": {"interval_s": self.ping[0], "timeout_s": self.ping[1]},
            **await self._resume_offer(p),
        }
        return p, joined

    async def _resume_offer(self, p: Participant) -> dict[str, Any]:
        """A new resume token for `p` (each one works once), as the `resume` field of joined/resumed."""
        if not self.resume_grace_s:
            return {}
        p.resume_secret = secrets.token_urlsafe(24)
        if self.roaming is not None:
            await self.roaming.issued(p)  # before the client has the token: any replica takes it
        return {"resume": {"token": p.resume_token, "grace_s": self.resume_grace_s}}

    async def leave(self, p: Participant, reason: str = "left") -> None:
        if self.participants.pop(p.id, None) is None:
            return
        if p._expiry is not None and p._expiry is not asyncio.current_task():
            p._expiry.cancel()
        p.resume_secret = p.previous_secret = ""
        self._attached(p)
        try:
            if self.roaming is not None:
                try:
                    await self.roaming.left(p.id)
                except Exception as e:  # the store briefly away: the record expires on its own
                    log.warning("forgetting the resume record of %s failed: %s", p.id, e)
            await self.node.leave(p.id, reason)
        finally:
            if self.observer is not None:
                # a participant whose socket dropped left when it dropped, not when the grace ended
                self.observer.participant_left(p.room, p.identity, p.detached_at or time.time())

    # --- resumption ---------------------------------------------------------------------------
    def detach(self, p: Participant, address: str = "") -> bool:
        """`p`'s socket (from `address`) dropped without a close: keep it for `resume_grace_s` (True),
        or not (False: the caller makes it leave). Nothing is sent to the room; its media flows on."""
        if not self.resume_grace_s or self.closed or p.closed or self.participants.get(p.id) is not p:
            return False
        held = self.detached_by.get(address, 0)
        if self.max_detached_per_address and held >= self.max_detached_per_address:
            EDGE_STATS.resume["over_cap"] += 1
            log.warning("%d participants from %s already wait for a resume: %s leaves", held, address, p.id)
            return False
        self.detached_by[address] = held + 1
        p.detached_from = address
        p.detached_at = time.time()
        p.on_takeover = None
        p.queue.on_overflow = None  # no connection to abort: Participant.send closes it instead
        p._expiry = asyncio.ensure_future(self._expire(p))
        EDGE_STATS.detached += 1
        return True

    def _attached(self, p: Participant) -> None:
        """`p` no longer waits for a resume (resumed, or gone): uncount it from its address."""
        address, p.detached_from = p.detached_from, None
        if address is not None:
            left = self.detached_by.get(address, 1) - 1
            if left > 0:
                self.detached_by[address] = left
            else:
                self.detached_by.pop(address, None)

    def close(self) -> None:
        """The server stops: no more waiting for resumes (the media node ends every participant)."""
        self.closed = True
        for p in self.participants.values():
            if p._expiry is not None:
                p._expiry.cancel()

    async def _expire(self, p: Participant) -> None:
        await asyncio.sleep(self.resume_grace_s)
        if p.detached_at is not None and self.participants.get(p.id) is p:
            log.info("participant %s did not resume within %g s (resume_grace_s): it leaves",
                     p.id, self.resume_grace_s)
            EDGE_STATS.resume["expired"] += 1
            await self.leave(p, "disconnected")
            p.close()

    async def resume(self, token: str, n: int) -> tuple[Participant, dict[str, Any], list[str]]:
        """Give a participant back to a client that lost its socket: the participant, the `resumed`
        reply and the messages after `n` to write again. Raises `resume_failed` (the client joins
        again) for a token that is unknown, used or expired, or when messages after `n` are gone."""
        pid, _, secret = token.partition(".")
        p = self.participants.get(pid)
        if p is None and self.roaming is not None and secret and self.resume_grace_s and not self.closed:
            return await self.roaming.resume(pid, secret, n)
        proves = (lambda known: hmac.compare_digest(secret.encode(), known.encode())) if secret else None
        p, held = await self._claim(p, proves, n)
        p.detached_at = None
        p.on_takeover = None
        return p, await self.resumed(p), [text for _, text in held]

    async def _claim(self, p: Participant | None, proves: Callable[[str], bool] | None,
                     n: int) -> tuple[Participant, list[tuple[int, str]]]:
        """A resume of `p` from message `n` (here, or handed over to another replica): the token
        proves it (`proves(secret)` for each secret we accept), the participant was not ended while
        away and the messages after `n` are still held. Then its old socket, if it still looks open,
        is ended, it no longer waits to expire, and the messages after `n` come back numbered.
        Otherwise `resume_failed` (and a participant that was found leaves)."""
        if p is None or p.replay is None or proves is None or not any(
                known and proves(known) for known in (p.resume_secret, p.previous_secret)):
            EDGE_STATS.resume["unknown_token"] += 1
            raise ProtocolError("resume_failed", "unknown, used or expired resume token: join again")
        if p.closed:
            EDGE_STATS.resume["closed"] += 1
            await self.leave(p, "disconnected")
            raise ProtocolError("resume_failed", "the server ended this participant while it was away "
                                                 "(more messages waited for it than ws_send_queue): join again")
        held = p.replay.export(n)
        if held is None:
            EDGE_STATS.resume["gap"] += 1
            await self.leave(p, "disconnected")
            p.close()
            kept_after = p.replay.n - p.replay.held
            raise ProtocolError("resume_failed", f"message n={n} is not one the server can continue from "
                                                 f"(it wrote up to {p.replay.n} and holds those after {kept_after}): "
                                                 "join again")
        if p.detached_at is None and p.on_takeover is not None:
            p.on_takeover()  # the old socket has not noticed it is dead yet (or is a stolen one): end it
        if p._expiry is not None:
            p._expiry.cancel()
            p._expiry = None
        self._attached(p)
        return p, held

    async def resumed(self, p: Participant) -> dict[str, Any]:
        """The `resumed` reply for `p`, with its next resume token."""
        EDGE_STATS.resume["resumed"] += 1
        p.previous_secret = p.previous_secret or p.resume_secret
        return {"type": "resumed", "room": p.room, "participant": p.public(), "received": p.received,
                # fresh TURN credentials, for the connections the client makes from now on
                "ice_servers": self.ice_servers(p.id) if self.ice_servers else [],
                **await self._resume_offer(p)}

    def adopted(self, participant_id: str, room: str, name: str, identity: str, can_publish: bool,
                can_subscribe: bool) -> Participant:
        """A participant another replica joined, resumed here (signalling.cluster.roaming): from now
        on this process serves it. Its replay ring is restored by the caller."""
        p = Participant(participant_id, room, name, identity, can_publish, can_subscribe, SendQueue(),
                        replay=Replay())
        self.participants[participant_id] = p
        return p

    async def hand_over(self, participant_id: str, proves: Callable[[str], bool], n: int) -> dict[str, Any]:
        """Give a participant of ours to the replica its client resumed through: no leave (the node
        already sends its events there); what that replica needs to carry on comes back: the messages
        after `n` (numbered), those not yet written and how many client messages were read. `proves`
        says whether the client's token matched a resume secret (given each one we accept). Raises
        `resume_failed` as `resume` does (and then the participant leaves)."""
        p, held = await self._claim(self.participants.get(participant_id), proves, n)
        async with p.lock:  # a message it was applying finishes first (its reply is then queued)
            if self.participants.pop(participant_id, None) is None:
                raise ProtocolError("resume_failed", "this participant left meanwhile: join again")
            queued = p.queue.drain()
            p.closed = True  # nothing more is written here
            p.resume_secret = p.previous_secret = ""
        return {"n": p.replay.n, "held": [list(h) for h in held], "queued": queued, "received": p.received}

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
