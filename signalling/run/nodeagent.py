"""NodeAgent: puts one SfuNode on the bus.

It answers requests on `node:<id>` by calling the SfuNode, sends the node's events for a participant
to the channel of the replica that joined it, heartbeats its load to the registry, keeps the room
placements it hosts truthful, and drains on request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sfu.api import MediaError, SdpError
from sfu.cascade import Cascade
from sfu.metrics import STATS
from sfu.node import SfuNode
from sfu.presence import BATCH_ABOVE as PRESENCE_BATCH_ABOVE
from sfu.presence import INTERVAL as PRESENCE_INTERVAL
from sfu.relay import RelayPort
from signalling.cluster.bus import Bus
from signalling.cluster.placement import Placer, node_rooms_key, room_key
from signalling.cluster.registry import HEARTBEAT_S, Registry
from signalling.cluster.remote import node_channel, replica_channel
from signalling.cluster.roaming import record_key
from signalling.run.roomlink import RoomLink

log = logging.getLogger("basement.cluster.node")

CLUSTER_GROUP = "cluster"  # the span group of `basement sfu` nodes given a relay_host


class Load:
    """CPU share of this process and packet rate since the previous sample."""

    MIN_WINDOW_S = 0.5

    def __init__(self) -> None:
        self._t = time.monotonic()
        self._cpu = time.process_time()
        self._packets = STATS.packets_in + STATS.packets_out
        self._last = (0.0, 0.0)

    def sample(self) -> tuple[float, float]:
        t, cpu, packets = time.monotonic(), time.process_time(), STATS.packets_in + STATS.packets_out
        dt = t - self._t
        if dt < self.MIN_WINDOW_S:
            # The first heartbeat comes right after start-up: a few ms of CPU over a few ms would
            # read as 100 % and keep the node out of placement until the next beat.
            return self._last
        self._last = (100.0 * (cpu - self._cpu) / dt, (packets - self._packets) / dt)
        self._t, self._cpu, self._packets = t, cpu, packets
        return self._last


# Arguments each request must carry as strings; everything else is checked by the SfuNode itself.
STRING_ARGS = {"join": ("room", "pid"), "leave": ("pid",), "publish": ("pid",), "answer": ("pid",),
               "candidate": ("pid", "target"), "mute": ("pid", "track"), "subscription": ("pid", "track"),
               "unpublish": ("pid", "track"), "restart_ice": ("pid", "target"), "adopt": ("pid",),
               "p2p_signal": ("pid", "to"), "metrics": (), "room": ("room", "origin"), "allocation": ("pid",)}


def request_parts(body: Any) -> tuple[str, dict[str, Any]]:
    """(op, args) of a node request, or MediaError("bad_request") naming what is wrong with it."""
    if not isinstance(body, dict):
        raise MediaError("bad_request", "a node request must be a map")
    op, args = body.get("op"), body.get("args") or {}
    if not isinstance(op, str) or op not in STRING_ARGS:
        raise MediaError("unknown_op", f"unknown node request {op!r}"[:200])
    if not isinstance(args, dict):
        raise MediaError("bad_request", f"{op}: args must be a map")
    for name in STRING_ARGS[op]:
        if not isinstance(args.get(name), str):
            raise MediaError("bad_request", f"{op}: {name} must be a string")
    if not isinstance(body.get("replica", ""), str):
        raise MediaError("bad_request", "replica must be a string")
    return op, args


def agent_options(settings: Any) -> dict[str, Any]:
    """The NodeAgent arguments that come from Settings, alike for every kind of media node."""
    return {"capacity": settings.node_capacity, "speaker_interval": settings.speaker_interval_ms / 1000,
            "presence": (settings.presence_batch_above, settings.presence_interval_ms / 1000)}


class NodeAgent:
    """`tracker` (optional): the SessionTracker of this node's rooms. A room lives on exactly one node,
    which sees every participant of it whichever replica they came through, so the node is where a
    session's truth is; it puts finished sessions in the cluster's outbox (a Redis stream) and the
    replicas' chain writer records them."""

    def __init__(self, node_id: str, bus: Bus, placer: Placer, nodes: Registry, replicas: Registry,
                 address: str = "", capacity: int = 0, speaker_interval: float = 0.5,
                 on_state: Callable[[], None] | None = None, tracker: Any = None,
                 presence: tuple[int, float] | None = None, events: str | None = None,
                 metrics: Callable[[], bytes] | None = None, span_group: str | None = None,
                 relay: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.id = node_id
        self.bus = bus
        self.placer = placer
        self.nodes = nodes
        self.replicas = replicas
        self.address = address
        self.capacity = capacity
        self.tracker = tracker
        # events: a channel that gets the node's session events instead of `tracker` (a worker sends
        # them to its parent, which tracks sessions as `basement serve` does); metrics: this
        # process's Prometheus exposition, answered to a `metrics` request (the parent's /metrics)
        self.events = events
        self.metrics = metrics
        # presence: (presence_batch_above, presence_interval in s); None: sfu.presence's defaults
        batch_above, interval = presence or (PRESENCE_BATCH_ABOVE, PRESENCE_INTERVAL)
        self.node = SfuNode(self._deliver, speaker_interval=speaker_interval,
                            on_event=self._on_event if tracker is not None or events else None,
                            presence_batch_above=batch_above, presence_interval=interval)
        # span_group: nodes of one group (the media workers of one host, or the nodes of a cluster
        # given a relay address) may hold parts of one room, linked by RoomLink and relaying tracks
        # (sfu.cascade): on loopback, or SRTP-protected from `relay` (host, port) between nodes;
        # None: rooms stay whole
        self.span_group = span_group
        self.relay_at = relay
        self.link: RoomLink | None = None
        if span_group:
            # between nodes SRTP; the workers of one host relay plain RTP on loopback
            port = RelayPort(secure=span_group == CLUSTER_GROUP)
            cascade = Cascade(port, lambda room, event, to: self.link.announce(room, event, to),  # type: ignore[union-attr]
                              self.node.rooms.get, lambda room, members: self.link.closed(room, members))  # type: ignore[union-attr]
            self.node.cascade = cascade
            self.link = RoomLink(node_id, span_group, bus, placer.store, cascade)
        self.spanned: set[str] = set()  # rooms this node holds part of, placed on another node
        # a room's session has one tracker, its home node's: the part of a room spanning here sends
        # its session events there (room -> the home's node id)
        self.home_of: dict[str, str] = {}
        if self.link is not None:
            self.link.on_session = self._session_in
        self.draining = False
        self.on_state = on_state or (lambda: None)
        self.replica_of: dict[str, str] = {}  # participant -> replica id that joined it
        self._locks: dict[str, list[Any]] = {}  # room -> [Lock, users]
        self._load = Load()
        self._tasks: list[asyncio.Task] = []
        self._missing: dict[str, int] = {}  # replica id -> consecutive checks it was not live
        self._empty = asyncio.Event()  # set whenever the last room closes

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.link is not None:
            await self.link.cascade.port.open(*self.relay_at)
        await self.heartbeat()
        await self.bus.serve(node_channel(self.id), self.handle)
        await self.bus.subscribe(node_channel(self.id), self._on_message)
        self._tasks = [asyncio.ensure_future(self._every(HEARTBEAT_S, self.heartbeat)),
                       asyncio.ensure_future(self._every(HEARTBEAT_S, self.check_replicas))]
        if self.link is not None:
            self._tasks.append(asyncio.ensure_future(self._every(HEARTBEAT_S, self.check_links)))

    async def _every(self, period: float, fn: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await fn()
            except Exception as e:  # Redis hiccups must not stop the heartbeat for good
                log.warning("%s failed: %s", getattr(fn, "__name__", fn), e)

    def record(self) -> dict[str, Any]:
        cpu, pps = self._load.sample()
        g = self.node.gauges()
        record = {"id": self.id, "address": self.address, "capacity": self.capacity, "draining": self.draining,
                  "cpu": round(cpu, 1), "pps": round(pps, 1), "rooms": g["rooms"],
                  "participants": g["participants"], "tracks": g["tracks"], "at": time.time()}
        if self.span_group:
            record["group"] = self.span_group
        return record

    async def heartbeat(self) -> None:
        await self.nodes.beat(self.record())
        if self.tracker is not None:
            await self.tracker.beat()
        await self.fence()

    async def fence(self) -> None:
        """Close rooms whose placement is no longer this node.

        That only happens when the replicas declared this node dead (it could not heartbeat, e.g. a
        network partition) and told its participants to rejoin elsewhere: carrying on would leave
        the room split over two nodes once the partition heals.
        """
        rooms = list(self.node.rooms)
        if not rooms:
            return
        owners = await self.placer.store.mget([room_key(r) for r in rooms])
        for room, owner in zip(rooms, owners):
            if owner == self.id or room in self.spanned:
                continue
            router = self.node.rooms.get(room)
            if router is None:
                continue
            log.warning("room %s was placed elsewhere (%s) while this node was unreachable: closing it", room, owner)
            for pid in list(router.peers):
                await self._leave(pid, "node_lost")

    def mark_draining(self) -> None:
        """From now on, joins for rooms this node does not host are refused (the registry follows)."""
        self.draining = True
        self.on_state()

    async def drain(self, timeout: float) -> None:
        """Take no new rooms; return once every room has ended, or close what is left at the deadline."""
        self.mark_draining()
        with contextlib.suppress(Exception):
            await self.heartbeat()
        if self.node.rooms:
            self._empty.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), timeout)
        if self.node.rooms:
            log.warning("drain deadline: closing %d rooms", len(self.node.rooms))

    async def stop(self) -> None:
        """Leave the cluster: every replica sees this node gone at its next check (no 5 s wait)."""
        for t in self._tasks:
            t.cancel()
        await self.bus.unsubscribe(node_channel(self.id))
        rooms = list(self.node.rooms)
        await self.node.close()
        if self.link is not None:
            self.link.cascade.port.close()
        with contextlib.suppress(Exception):
            await self.nodes.forget(self.id)
            for room in rooms:
                await self.placer.release(room, self.id)
                if self.link is not None:
                    await self.link.forget(room)
            await self.placer.forget_node(self.id)
        await self.bus.flush()

    # --- events ----------------------------------------------------------------------------------
    def _deliver(self, participant_id: str, msg: dict[str, Any]) -> None:
        replica = self.replica_of.get(participant_id)
        if replica is not None:
            self.bus.publish(replica_channel(replica), {"op": "deliver", "pid": participant_id, "msg": msg})

    def _on_event(self, room: str, event: dict[str, Any]) -> None:
        if self.events is not None:
            if event["type"] in ("track_published", "media"):
                self.bus.publish(self.events, {"room": room, "event": event})
            return
        self._track(room, event)

    def _track(self, room: str, event: dict[str, Any]) -> None:
        """A session event of `room` (track_published, media, joined, left): to this node's tracker,
        or, for a room spanning here from another home, to the home's."""
        home = self.home_of.get(room)
        if home is not None and self.link is not None:
            self.link.session(home, room, event)
        else:
            self._session_in(room, event)

    def _session_in(self, room: str, event: dict[str, Any]) -> None:
        """A session event from the part of `room` on another node (checked by RoomLink): recorded
        here, never passed on (two nodes that each took the other for the home must not bounce it)."""
        if self.tracker is None:
            return
        if event["type"] == "joined":
            self.tracker.participant_joined(room, event["identity"], event["at"])
        elif event["type"] == "left":
            self.tracker.participant_left(room, event["identity"], event["at"])
        else:
            self.tracker.on_media_event(room, event)

    # --- requests ---------------------------------------------------------------------------------
    async def _on_message(self, body: Any) -> None:
        """A one-way request (no reply wanted, e.g. a leave after a join that timed out)."""
        try:
            await self.handle(body)
        except MediaError as e:
            if e.code in ("bad_request", "unknown_op"):
                self.bus.reject(node_channel(self.id), e.message)
            else:
                log.info("one-way request failed: %s", e)
        except Exception as e:
            log.info("one-way request failed: %s", e)

    async def handle(self, body: Any) -> Any:
        op, a = request_parts(body)
        if op == "room":  # (first, and without an await before it: a node's events apply in order)
            if self.link is not None:
                self.link.receive(a)
            return None
        try:
            if op == "join":
                return await self._join(a, body.get("replica") or "")
            if op == "leave":
                return await self._leave(a["pid"], a.get("reason") or "left")
            if op == "publish":
                # (a caller of the previous release sends no encryption: its tracks are not encrypted)
                return await self.node.publish(a["pid"], a["sdp"], a.get("sources"), a.get("encryption") or "none")
            if op == "unpublish":
                return await self.node.unpublish(a["pid"], a["track"])
            if op == "answer":
                return await self.node.answer(a["pid"], a["sdp"])
            if op == "candidate":
                return await self.node.candidate(a["pid"], a["target"], a["candidate"])
            if op == "restart_ice":
                return await self.node.restart_ice(a["pid"], a["target"])
            if op == "p2p_signal":
                if not isinstance(a.get("data"), dict):
                    raise MediaError("bad_request", "p2p_signal: data must be a map")
                return await self.node.p2p_signal(a["pid"], a["to"], a["data"])
            if op == "adopt":
                return await self._adopt(a["pid"], body.get("replica") or "")
            if op == "mute":
                return await self.node.mute(a["pid"], a["track"], a["muted"])
            if op == "metrics":
                return self.metrics() if self.metrics is not None else b""
            if op == "subscription":
                pinned = a.get("pinned")
                return await self.node.subscription(a["pid"], a["track"], a.get("layer"), a.get("width"),
                                                    a.get("height"), pinned if isinstance(pinned, bool) else None)
            if op == "allocation":
                return await self.node.allocation(a["pid"])
        except SdpError as e:
            raise MediaError(getattr(e, "code", "invalid_sdp"), str(e)) from None
        raise MediaError("unknown_op", f"unknown node request {op!r}")

    @contextlib.asynccontextmanager
    async def _room(self, room: str) -> AsyncIterator[None]:
        """One room's joins and leaves run one at a time (the lock lives while anyone uses it)."""
        entry = self._locks.setdefault(room, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(room, None)

    async def _join(self, a: dict[str, Any], replica: str) -> dict[str, Any]:
        room, pid = a["room"], a["pid"]
        # serialised per room, so "room closed -> placement released" can never interleave with a
        # join re-creating the room under a released placement
        span = a.get("span") is True  # the placer sent it here though the room's home is another node
        async with self._room(room):
            hosted = room in self.node.rooms
            if self.draining and not hosted:
                await self.placer.release(room, self.id)
                raise MediaError("node_draining", f"node {self.id} is draining and takes no new rooms")
            if span and self.link is None:
                raise MediaError("room_moved", f"room {room!r} is placed on another node, and node {self.id} "
                                               f"holds no parts of rooms")
            if span:
                home = await self.placer.current(room)
                if not isinstance(home, str) or home == self.id:
                    raise MediaError("room_moved", f"room {room!r} has no home to span from")
                self.spanned.add(room)
                self.home_of[room] = home
                # listed with the node's rooms, so a replica that finds it dead clears its part too
                await self.placer.store.hset(node_rooms_key(self.id), room, 1)
            elif not await self.placer.claim(room, self.id):
                raise MediaError("room_moved", f"room {room!r} is placed on another node")
            self.replica_of[pid] = replica
            try:
                if self.link is not None and not hosted:
                    self.node.open_room(room)
                    await self.link.enter(room, set(await self.nodes.live()))
                state = await self.node.join(room, pid, a.get("name") or "", a.get("can_publish", True),
                                             a.get("can_subscribe", True), a.get("identity") or "",
                                             a.get("max_participants") or 0, p2p=a.get("p2p") is True)
                if self.tracker is not None:
                    self._track(room, {"type": "joined", "identity": self.node.peers[pid].identity,
                                       "at": time.time()})
                if self.link is not None:
                    await self.link.count(room, len(self.node.rooms[room].peers))
                return state
            except Exception:
                if self.node.peers.get(pid) is None:
                    self.replica_of.pop(pid, None)
                self.node.close_if_empty(room)
                if room not in self.node.rooms:
                    await self._room_gone(room)
                raise

    async def _adopt(self, pid: str, replica: str) -> Any:
        """Another replica resumed `pid` (its client reconnected there): its events go there from
        now on. Returns the room as `pid` should see it, for when messages were lost on the way."""
        if pid not in self.node.peers:
            raise MediaError("not_joined", "this participant is no longer on this node")
        if not replica:
            raise MediaError("bad_request", "adopt: the request names no replica")
        self.replica_of[pid] = replica
        return await self.node.resync(pid)

    async def _leave(self, pid: str, reason: str) -> None:
        peer = self.node.peers.get(pid)
        if peer is None:
            self.replica_of.pop(pid, None)
            return
        room = peer.room.name
        async with self._room(room):
            try:
                await self.node.leave(pid, reason)
            finally:
                if self.tracker is not None:
                    self._track(room, {"type": "left", "identity": peer.identity, "at": time.time()})
            self.replica_of.pop(pid, None)
            # its resume record (signalling.cluster.roaming): the replica that held it may be dead
            with contextlib.suppress(Exception):
                await self.placer.store.delete(record_key(pid))
            if room not in self.node.rooms:
                await self._room_gone(room)
            elif self.link is not None:
                await self.link.count(room, len(self.node.rooms[room].peers))
            if not self.node.rooms:
                self._empty.set()

    async def _room_gone(self, room: str) -> None:
        """Nobody of `room` is left here: its entry among the room's nodes goes (the linked nodes were
        told `bye` as the room closed: sfu.cascade), and its placement if nobody holds part of the
        room any more. The home keeps it while other nodes do: the room stays one session, tracked
        at the home (and new joins go there first)."""
        home = self.home_of.pop(room, self.id)
        self.spanned.discard(room)
        others = await self.link.forget(room) if self.link is not None else 0
        if not others:
            await self.placer.release(room, home)

    async def check_links(self) -> None:
        """Rooms linked with nodes that died drop those nodes' parts (sfu.cascade)."""
        if self.link is not None and self.link.cascade.members:
            await self.link.check(set(await self.nodes.live()))

    async def check_replicas(self) -> None:
        """Participants whose replica died (its WebSocket went with it) leave after two missed checks."""
        if not self.replica_of:
            return
        live = set(await self.replicas.live())
        wanted = set(self.replica_of.values())
        for r in wanted:
            self._missing[r] = 0 if r in live else self._missing.get(r, 0) + 1
        self._missing = {r: n for r, n in self._missing.items() if r in wanted}
        for pid, r in list(self.replica_of.items()):
            if self._missing.get(r, 0) >= 2:
                log.info("replica %s is gone: removing %s", r, pid)
                await self._leave(pid, "disconnected")
