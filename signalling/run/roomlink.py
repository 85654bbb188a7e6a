"""RoomLink: the control plane of rooms that span media nodes (the nodes' side; sfu.cascade).

Every node of a span group (the media workers of one host) that holds part of a room registers in
the store hash `room_nodes:<room>`: node id -> [relay host, relay port, its participants of the
room, group]. The placer reads the counts (signalling.cluster.placement); the nodes read the
addresses. A node entering a room says `hello` to the others registered there, each answers with
`state` (its participants and tracks), and from then on every change goes to them as it happens,
on their `node:<id>` channels as one-way `room` requests. A node leaving a room says `bye`; a node
that dies is found by the registry check and dropped from the room everywhere (its participants
leave, its tracks are unpublished).

Messages from the bus are checked where they enter (`receive`): a malformed one is counted and
dropped, and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from sfu.cascade import Cascade
from sfu.relay import Address, RelayError
from signalling.cluster.bus import Bus
from signalling.cluster.placement import room_nodes_key
from signalling.cluster.remote import node_channel
from signalling.cluster.store import Store

log = logging.getLogger("basement.cluster.roomlink")

HELLO_WAIT_S = 5.0  # how long a node entering a room waits for the others' state before admitting
LOOPBACK = ("127.0.0.1", "::1")


def _session_event(event: Any) -> dict[str, Any]:
    """A session event as NodeAgent sends them, or RelayError."""
    if not isinstance(event, dict) or not isinstance(event.get("identity"), str) or len(event["identity"]) > 256:
        raise RelayError("session: an event with an identity")
    kind = event.get("type")
    if kind in ("joined", "left"):
        if not isinstance(event.get("at"), int | float):
            raise RelayError("session: joined/left need a time")
        return {"type": kind, "identity": event["identity"], "at": float(event["at"])}
    if kind == "track_published":
        if not isinstance(event.get("track"), str) or event.get("kind") not in ("audio", "video"):
            raise RelayError("session: track_published needs a track and its kind")
        return {"type": kind, "identity": event["identity"], "track": event["track"][:64], "kind": event["kind"]}
    if kind == "media":
        counts = [event.get(k, 0) for k in ("bytes", "packets", "messages")]
        if not all(isinstance(c, int) and 0 <= c < 2**63 for c in counts):
            raise RelayError("session: media counts are integers")
        return {"type": kind, "identity": event["identity"], "bytes": counts[0], "packets": counts[1],
                "messages": counts[2]}
    raise RelayError(f"session: unknown event {kind!r}"[:100])


def _ip(host: Any) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def member_entry(value: Any) -> tuple[Address, int, str] | None:
    """(relay address, participants, group) of a `room_nodes` entry, or None if it is not one."""
    if (isinstance(value, list) and len(value) == 4 and isinstance(value[0], str) and isinstance(value[1], int)
            and 0 < value[1] < 65536 and isinstance(value[2], int) and isinstance(value[3], str)):
        return (value[0], value[1]), value[2], value[3]
    return None


class RoomLink:
    def __init__(self, node_id: str, group: str, bus: Bus, store: Store, cascade: Cascade) -> None:
        self.id = node_id
        self.group = group
        self.bus = bus
        self.store = store
        self.cascade = cascade
        self._waiting: dict[tuple[str, str], asyncio.Event] = {}  # (room, node) -> its state came
        # session events from another node's part of a room homed here (NodeAgent: to the tracker)
        self.on_session: Callable[[str, dict[str, Any]], None] = lambda room, event: None
        self.stats = {"malformed": 0}

    @property
    def address(self) -> Address:
        assert self.cascade.port.address is not None
        return self.cascade.port.address

    def _entry(self, count: int) -> list[Any]:
        return [self.address[0], self.address[1], count, self.group]

    # --- this node enters and leaves rooms ------------------------------------------------------------
    async def enter(self, room: str, live: set[str]) -> None:
        """This node is about to hold part of `room` (its Router exists, empty): link it with the
        other live nodes of the group holding part of it, and wait (a while) for their state, so
        the first participant here is told the room as it is."""
        await self.store.hset(room_nodes_key(room), self.id, self._entry(0))
        others = await self.store.hgetall(room_nodes_key(room))
        waits = []
        for other, value in others.items():
            entry = member_entry(value)
            if other == self.id or entry is None or entry[2] != self.group or other not in live:
                continue
            done = self._waiting[(room, other)] = asyncio.Event()
            waits.append(asyncio.ensure_future(done.wait()))
            # its key comes with its state; until then nothing is relayed to it, nor heard from it
            self._send(other, room, self._greeting("hello", []))
        if waits:
            await asyncio.wait(waits, timeout=HELLO_WAIT_S)
            for w in waits:
                w.cancel()
        for other in others:
            self._waiting.pop((room, other), None)

    async def count(self, room: str, participants: int) -> None:
        """This node's participants of `room` now (what placement reads)."""
        await self.store.hset(room_nodes_key(room), self.id, self._entry(participants))

    def closed(self, room: str, members: list[str]) -> None:
        """sfu.cascade's on_closed: the room closed here; the nodes it was linked with hear so."""
        for other in members:
            self._send(other, room, {"type": "bye"})

    async def forget(self, room: str) -> int:
        """This node holds no part of `room` any more: its entry goes (placement stops counting it).
        Returns how many other nodes still hold part of the room."""
        await self.store.hdel(room_nodes_key(room), self.id)
        return len(await self.store.hgetall(room_nodes_key(room)))

    def session(self, home: str, room: str, event: dict[str, Any]) -> None:
        """A session event of this node's part of `room` for the room's home, whose tracker records
        the session (joined/left with identity and time, track_published, media)."""
        self._send(home, room, {"type": "session", "event": event})

    async def check(self, live: set[str]) -> None:
        """Linked nodes that died, or whose entry in `room_nodes` is gone or names another relay
        address (a new life of a worker under the same id), leave the room here: their participants
        leave, their tracks end. The store entry of a dead one goes too."""
        for room, members in list(self.cascade.members.items()):
            entries = await self.store.hgetall(room_nodes_key(room))
            for other, m in list(members.items()):
                entry = member_entry(entries.get(other))
                if other in live and entry is not None and entry[0] == m.address:
                    continue
                log.warning("node %s of room %s is gone: its participants leave, its tracks end", other, room)
                self.cascade.member_gone(room, other, "node_lost")
                if other not in live:
                    with contextlib.suppress(Exception):
                        await self.store.hdel(room_nodes_key(room), other)

    # --- the bus --------------------------------------------------------------------------------------
    def announce(self, room: str, event: dict[str, Any], to: str | None) -> None:
        """sfu.cascade's announce: a local event for one other node of the room, or all of them."""
        for other in [to] if to is not None else list(self.cascade.members.get(room, {})):
            self._send(other, room, event)

    def _send(self, other: str, room: str, event: dict[str, Any]) -> None:
        self.bus.publish(node_channel(other), {"op": "room", "args": {"room": room, "origin": self.id,
                                                                     "event": event}, "replica": ""})

    def receive(self, args: dict[str, Any]) -> None:
        """A `room` request from another node (args room and origin are strings, checked before)."""
        room, origin, event = args["room"], args["origin"], args.get("event")
        try:
            if not isinstance(event, dict):
                raise RelayError("event: a map")
            kind = event.get("type")
            if kind in ("hello", "state"):
                self._linked(room, origin, event)
            elif kind == "session":
                self.on_session(room, _session_event(event.get("event")))
            elif kind == "bye":
                self.cascade.member_gone(room, origin, "left")
                self._done(room, origin)
            else:
                self.cascade.apply(room, origin, event)
        except RelayError as e:
            self.stats["malformed"] += 1
            log.info("room event from %s refused: %s", origin, e)

    def _linked(self, room: str, origin: str, event: dict[str, Any]) -> None:
        addr, events, key = event.get("addr"), event.get("events"), event.get("key")
        try:
            if (not isinstance(addr, list) or len(addr) != 2 or not _ip(addr[0])
                    or not isinstance(addr[1], int) or not 0 < addr[1] < 65536):
                raise RelayError("hello/state: addr is [IP address, port]")
            if not self.cascade.port.secure and addr[0] not in LOOPBACK:
                # plain relays stay on the host: another worker's relay address is a loopback one
                raise RelayError("hello/state: a relay without SRTP is on loopback only")
            if not isinstance(events, list) or len(events) > 20_000:
                raise RelayError("hello/state: events is a list")
            if not self.cascade.hosts(room):
                # this node holds no part of the room (any more): the other must not wait for it
                self._send(origin, room, {"type": "bye"})
                return
            if event["type"] == "hello":
                # a hello from a node already linked is a new link all the same (its `bye` may have
                # been lost, or it restarted): what it had is forgotten, it hears the room anew
                self.cascade.member_gone(room, origin, "left")
            mine = self.cascade.member(room, origin, (addr[0], addr[1]), key)
            if event["type"] == "hello":
                self._send(origin, room, self._greeting("state", mine))
            for ev in events:
                try:
                    self.cascade.apply(room, origin, ev)
                except RelayError as e:  # one bad event does not cost the others
                    self.stats["malformed"] += 1
                    log.info("room event from %s refused: %s", origin, e)
        finally:
            self._done(room, origin)

    def _greeting(self, kind: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        greeting = {"type": kind, "addr": list(self.address), "events": events}
        if self.cascade.port.key is not None:
            greeting["key"] = self.cascade.port.key
        return greeting

    def _done(self, room: str, origin: str) -> None:
        done = self._waiting.get((room, origin))
        if done is not None:
            done.set()
