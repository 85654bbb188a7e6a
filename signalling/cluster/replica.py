"""A signalling replica: the stock signalling app whose RoomManager drives SFU nodes over the bus.

Besides proxying, a replica heartbeats (so nodes can drop participants of a dead replica) and
watches the node registry: when a node goes silent, every participant of this replica on that node
is told `{"type": "removed", "reason": "node_lost", "rejoin": true}` and the node's room placements
are cleared (idempotent, any replica may do it), so rejoining places the room on a live node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from signalling.access.turn import TurnCredentials
from signalling.cluster.bus import Bus
from signalling.cluster.placement import Placer
from signalling.cluster.registry import HEARTBEAT_S, Registry
from signalling.cluster.remote import RemoteNode
from signalling.cluster.roaming import Roaming
from signalling.cluster.store import Store
from signalling.config import Settings
from signalling.protocol.app import STATE_KEY, create_app, drop_sockets
from signalling.protocol.edge import EdgeCollector
from signalling.protocol.rooms import Admit, RoomManager, admit_everyone

log = logging.getLogger("basement.cluster.replica")

WATCH_S = 1.0


class Replica:
    def __init__(self, replica_id: str, bus: Bus, store: Store, admit: Admit = admit_everyone,
                 max_participants: int = 50, rooms_observer: Any = None, settings: Settings | None = None) -> None:
        self.id = replica_id
        self.bus = bus
        self.store = store
        self.nodes = Registry(store, "node")
        self.replicas = Registry(store, "replica")
        self.placer = Placer(store, self.nodes)
        self.remote = RemoteNode(replica_id, bus, self.placer, self._deliver,
                                 span_above=settings.room_span_above if settings else 0)
        turn = TurnCredentials(settings.turn_urls, settings.turn_secret, settings.turn_credential_ttl_s) \
            if settings else None
        self.roaming = Roaming(replica_id, bus, store, self.remote, self.replicas)
        self.rooms = RoomManager(self.remote, admit, max_participants, rooms_observer,
                                 resume_grace_s=settings.resume_grace_s if settings else 0.0,
                                 ice_servers=turn.ice_servers if turn else None,
                                 max_detached_per_address=settings.ws_max_per_address if settings else 0,
                                 roaming=self.roaming,
                                 ping=(settings.client_ping_interval_s, settings.client_ping_timeout_s)
                                 if settings else (15.0, 5.0))
        # the process's settings give the edge (Host/Origin checks, per-address and rate limits) the
        # same names and limits as `basement serve`
        self.app = create_app(self.rooms, settings)
        self.state: dict[str, Any] = self.app[STATE_KEY]
        self.live_nodes = 0
        # called with the live node ids after every check (the session reaper, when recording)
        self.on_nodes_checked: Callable[[set[str]], Awaitable[Any]] | None = None
        self._tasks: list[asyncio.Task] = []

    def _deliver(self, pid: str, msg: dict[str, Any]) -> None:
        self.rooms.deliver(pid, msg)

    async def start(self) -> None:
        """Bus and store must be started; begins heartbeating and watching nodes."""
        await self.remote.start()
        await self.roaming.start()
        await self.heartbeat()
        self.state["connected"] = True
        self._tasks = [asyncio.ensure_future(self._every(HEARTBEAT_S, self.heartbeat)),
                       asyncio.ensure_future(self._every(WATCH_S, self.check_nodes))]

    async def _every(self, period: float, fn: Any) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await fn()
                self.state["connected"] = self.bus.connected
            except Exception as e:
                self.state["connected"] = False
                log.warning("%s failed: %s", fn.__name__, e)

    async def heartbeat(self) -> None:
        await self.replicas.beat({"id": self.id, "participants": len(self.rooms.participants)})

    async def check_nodes(self) -> None:
        live = await self.nodes.live()
        self.live_nodes = len(live)
        for node_id in await self.nodes.dead():
            rooms = await self.placer.forget_node(node_id)
            await self.nodes.forget(node_id)
            log.warning("node %s stopped heartbeating; its rooms %s are lost", node_id, rooms)
        await self._remove(self.remote.lost(set(live)))
        if self.on_nodes_checked is not None:
            try:
                await self.on_nodes_checked(set(live))
            except Exception as e:  # e.g. the outbox briefly away: the next check tries again
                log.warning("ending the sessions of dead nodes failed: %s", e)

    async def node_lost(self, node_id: str) -> None:
        """`node_id` is known dead now (a worker process that exited): no waiting for its heartbeat
        to lapse. Its placements go first, so a rejoin lands on a live node; then its participants
        here are told to rejoin, as `check_nodes` tells them."""
        rooms = await self.placer.forget_node(node_id)
        await self.nodes.forget(node_id)
        log.warning("node %s is gone; its rooms %s are lost", node_id, rooms)
        await self._remove(self.remote.lost(set(await self.nodes.live()) - {node_id}))

    async def _remove(self, pids: list[str]) -> None:
        for pid in pids:
            p = self.rooms.participants.get(pid)
            if p is None:
                continue
            p.send({"type": "removed", "reason": "node_lost", "rejoin": True})
            await self.rooms.leave(p, "node_lost")
            p.close()

    async def shutdown(self, hand_over_s: float | None = None) -> None:
        """Stop taking clients and give the connected ones to other replicas.

        With resumption on, every socket is dropped as a network failure would drop it: each
        client resumes through another replica, which takes its participant from here (nothing
        lost, nobody in the room notices), for up to `hand_over_s` (default: `resume_grace_s`).
        Whoever is still here then is told to reconnect (`removed`, `rejoin`) and leaves."""
        self.state["draining"] = True
        wait = self.rooms.resume_grace_s if hand_over_s is None else hand_over_s
        if wait > 0 and self.rooms.participants:
            dropped = drop_sockets(self.app)
            log.info("shutting down: %d sockets dropped; waiting up to %g s for %d participants to resume "
                     "elsewhere", dropped, wait, len(self.rooms.participants))
            deadline = asyncio.get_running_loop().time() + wait
            # participants go on many paths (handed over, left, expired): polled, once, at shutdown
            while self.rooms.participants and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        self.rooms.close()
        for t in self._tasks:
            t.cancel()
        for p in list(self.rooms.participants.values()):
            p.send({"type": "removed", "reason": "server_shutdown", "rejoin": True})
            with contextlib.suppress(Exception):
                await self.rooms.leave(p, "server_shutdown")
            p.close()
        with contextlib.suppress(Exception):
            await self.replicas.forget(self.id)

    def metrics(self) -> CollectorRegistry:
        registry = CollectorRegistry()
        registry.register(_ReplicaCollector(self))
        registry.register(EdgeCollector())  # refusals at the edge, as `basement serve` exports them
        return registry


class _ReplicaCollector:
    def __init__(self, replica: Replica) -> None:
        self.r = replica

    def collect(self) -> Iterable[Any]:
        labels, values = ["node_id"], [self.r.id]
        gauges = {"participants": ("participants connected to this replica", len(self.r.rooms.participants)),
                  "cluster_live_nodes": ("SFU nodes heard from within 5 s", self.r.live_nodes)}
        for name, (doc, value) in gauges.items():
            g = GaugeMetricFamily(f"basement_{name}", doc, labels=labels)
            g.add_metric(values, value)
            yield g
        yield from BusCollector(self.r.bus, self.r.store, self.r.id).collect()


class BusCollector:
    """`basement_bus_*` counters of one bus endpoint (requests, timeouts, malformed, dropped, …) and
    `basement_store_malformed`, labelled with the member's id only (no per-channel labels)."""

    def __init__(self, bus: Bus, store: Store, member_id: str) -> None:
        self.bus, self.store, self.member_id = bus, store, member_id

    def collect(self) -> Iterable[Any]:
        labels, values = ["node_id"], [self.member_id]
        for name, value in self.bus.stats.items():
            c = CounterMetricFamily(f"basement_bus_{name}", f"bus messages/requests: {name}", labels=labels)
            c.add_metric(values, value)
            yield c
        c = CounterMetricFamily("basement_store_malformed", "store values that were not valid msgpack (ignored)",
                                labels=labels)
        c.add_metric(values, getattr(self.store, "stats", {}).get("malformed", 0))
        yield c

