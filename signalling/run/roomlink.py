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
import logging
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
            events = self.cascade.member(room, other, entry[0])
            done = self._waiting[(room, other)] = asyncio.Event()
            waits.append(asyncio.ensure_future(done.wait()))
            self._send(other, room, {"type": "hello", "addr": list(self.address), "events": events})
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

    async def forget(self, room: str) -> None:
        """This node holds no part of `room` any more: its entry goes (placement stops counting it)."""
        await self.store.hdel(room_nodes_key(room), self.id)

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
            elif kind == "bye":
                self.cascade.member_gone(room, origin, "left")
                self._done(room, origin)
            else:
                self.cascade.apply(room, origin, event)
        except RelayError as e:
            self.stats["malformed"] += 1
            log.info("room event from %s refused: %s", origin, e)

    def _linked(self, room: str, origin: str, event: dict[str, Any]) -> None:
        addr, events = event.get("addr"), event.get("events")
        try:
            # relays stay on the host: another node's relay address is a loopback one
            if (not isinstance(addr, list) or len(addr) != 2 or addr[0] not in LOOPBACK
                    or not isinstance(addr[1], int) or not 0 < addr[1] < 65536):
                raise RelayError("hello/state: addr is [loopback host, port]")
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
            mine = self.cascade.member(room, origin, (addr[0], addr[1]))
            if event["type"] == "hello":
                self._send(origin, room, {"type": "state", "addr": list(self.address), "events": mine})
            for ev in events:
                try:
                    self.cascade.apply(room, origin, ev)
                except RelayError as e:  # one bad event does not cost the others
                    self.stats["malformed"] += 1
                    log.info("room event from %s refused: %s", origin, e)
        finally:
            self._done(room, origin)

    def _done(self, room: str, origin: str) -> None:
        done = self._waiting.get((room, origin))
        if done is not None:
            done.set()
