"""WorkerPool: the media workers of `basement serve --workers N`: started, watched, restarted.

Each worker is a process (signalling.run.worker) holding an SfuNode; the parent keeps signalling
and places each room on a worker by load through the same Placer a cluster uses (docs/cluster.md
"Workers"). The parent and a worker talk over a socket pair made for that worker (localwire): the
parent's MemoryHub and MemoryStore are the bus and store of both.

A worker that exits (crash, kill -9, out of memory) is noticed at once (its process ends), its
participants are told to rejoin (`on_lost`, before anything else can be placed on it), and it is
started again: at once the first time, then with a backoff while it keeps dying young. A worker
that is alive but silent (no heartbeat for the registry's LIVE_S: a blocked event loop) is killed
and handled the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from signalling.cluster.bus import Bus, MemoryBus, MemoryHub, RemoteError
from signalling.cluster.localhub import LocalHubPeer
from signalling.cluster.registry import HEARTBEAT_S, Registry
from signalling.cluster.remote import node_channel, replica_channel
from signalling.cluster.replica import BusCollector, Replica
from signalling.cluster.store import MemoryStore, Store
from signalling.config import ENV_PREFIX, ConfigError, Settings, group_fields
from signalling.run.worker import EVENTS_CHANNEL, node_id

log = logging.getLogger("basement.workers")

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# a worker that lived shorter than this is dying young: its restarts back off (1, 2, 4 … 30 s)
YOUNG_S = 10.0
MAX_BACKOFF_S = 30.0


# The settings a `serve` worker takes from its parent: a cluster node's (`basement sfu`), without Redis.
WORKER_GROUPS = ("logging", "media", "node", "recording")


def worker_settings(settings: Settings, index: int, count: int, node: str, groups: tuple[str, ...] = WORKER_GROUPS,
                    with_secrets: bool = False) -> dict[str, Any]:
    """What worker `index` of `count` runs with: the parent's settings of `groups` (by default its
    media and room settings, and no secret: a `serve` worker needs none), node id `node`, its own
    ports (single-port mode: port + index; a port range: its slice of it), no HTTP or metrics server
    of its own (the parent serves /metrics for all), its share of `node_capacity`."""
    values = {f.name: getattr(settings, f.name) for f in group_fields(groups)
              if with_secrets or not f.metadata.get("secret")}
    # a worker is one media process: it must not check (or act on) the parent's worker count
    values.update(node_id=node, port=0, metrics_port=0, workers="1")
    if settings.node_capacity:
        values["node_capacity"] = max(1, settings.node_capacity // count)
    if settings.ice_udp_port:
        values["ice_udp_port"] = settings.ice_udp_port + index
    if settings.ice_tcp_port:
        values["ice_tcp_port"] = settings.ice_tcp_port + index
    if settings.rtp_port_min:
        span = (settings.rtp_port_max - settings.rtp_port_min + 1) // count
        values["rtp_port_min"] = settings.rtp_port_min + index * span
        values["rtp_port_max"] = values["rtp_port_min"] + span - 1
    return values


@dataclasses.dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    peer: LocalHubPeer | None = None
    started_at: float = 0.0
    seen_live: bool = False
    restarts: int = 0
    backoff: float = 0.0
    refused: int = 0  # the wire counters of this worker's earlier processes (a restart makes a new wire)
    dropped: int = 0


class WorkerPool:
    """`count` worker processes; worker `i` gets `config(i)` as its first frame and heartbeats as
    `node_ids(i)` in `registry_store`. `on_lost(node_id)`: a worker ended, its participants must
    rejoin (the composition root wires it). `bus`: the parent's own bus, for the workers' metrics.
    `hub`/`hub_store`: what the workers' wires serve (`serve`: their bus and store; `sfu`: unused,
    the workers are on Redis, and the wire only tells each side when the other is gone)."""

    def __init__(self, count: int, config: Callable[[int], dict[str, Any]], node_ids: Callable[[int], str],
                 registry_store: Store, bus: Bus, on_lost: Callable[[str], Awaitable[Any]],
                 hub: MemoryHub | None = None, hub_store: MemoryStore | None = None, watch: bool = True,
                 restart_delay: float = 0.0) -> None:
        self.count = count
        self.config = config
        self.node_id = node_ids
        self.hub = hub or MemoryHub()
        self.hub_store = hub_store or MemoryStore()
        self.bus = bus
        self.nodes = Registry(registry_store, "node")
        self.on_lost = on_lost
        # kill a worker whose heartbeat lapsed: with the store in this process a lapse can only be the
        # worker's; on Redis (`basement sfu`) an outage lapses them all, and fencing handles it instead
        self.watch = watch
        self.restart_delay = restart_delay  # at least this long between a worker's exit and its restart
        self.workers = [_Worker(i) for i in range(self.count)]
        self.stopping = False
        self._tasks: list[asyncio.Task] = []

    @property
    def ids(self) -> list[str]:
        return [self.node_id(w.index) for w in self.workers]

    # --- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every worker and return once all of them heartbeat; a worker that exits first (a port
        in use, a bad setting) fails the start with its exit status (its log says why)."""
        for w in self.workers:
            await self._spawn(w)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for w in self.workers:
                if w.proc is not None and w.proc.returncode is not None:
                    await self.stop()
                    what = f"media worker {w.index} exited with status {w.proc.returncode} while starting " \
                           f"(its log lines above, tagged [{self.node_id(w.index)}], say why)"
                    raise ConfigError(what) if w.proc.returncode == 2 else RuntimeError(what)
            live = await self.nodes.live()
            if all(i in live for i in self.ids):
                break
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"media workers not ready within {START_TIMEOUT_S:g} s")
            await asyncio.sleep(0.05)
        for w in self.workers:
            w.seen_live = True
        self._tasks = [asyncio.ensure_future(self._supervise(w)) for w in self.workers]
        if self.watch:
            self._tasks.append(asyncio.ensure_future(self._watch()))

    def signal(self, sig: int) -> None:
        """Send `sig` to every running worker (a `basement sfu` passes its drain signals on)."""
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every worker (each closes its rooms and leaves; in a cluster it drains), SIGKILL
        what is left after `timeout` s. No worker is restarted from now on."""
        self.stopping = True
        for t in self._tasks:
            t.cancel()
        running = {w.index: w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None}
        self.signal(signal.SIGTERM)
        if running:  # one deadline for all of them
            _, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in running.values()], timeout=timeout)
            for index, proc in running.items():
                if proc.returncode is None:
                    log.warning("media worker %d did not stop within %g s: killing it", index, timeout)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            for t in late:
                t.cancel()
        for w in self.workers:
            if w.peer is not None:
                w.peer.close()

    async def _spawn(self, w: _Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # the settings a worker needs come on its wire; the parent's BASEMENT_* variables (grant, admin,
        # TURN and chain writer keys among them) stay out of the process that faces the internet
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        try:
            try:
                w.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "signalling.run.worker", "--fd", str(theirs.fileno()),
                    pass_fds=[theirs.fileno()], stdin=asyncio.subprocess.DEVNULL, env=env)
            finally:
                theirs.close()
            reader, writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 16)
        except BaseException:
            ours.close()
            raise
        w.peer = LocalHubPeer(self.node_id(w.index), self.hub, self.hub_store, reader, writer)
        w.peer.start(self.config(w.index))
        w.started_at = time.monotonic()
        w.seen_live = False
        log.info("media worker %d started (pid %d)", w.index, w.proc.pid)

    async def _supervise(self, w: _Worker) -> None:
        while not self.stopping:
            assert w.proc is not None
            status = await w.proc.wait()
            if self.stopping:
                return
            lived = time.monotonic() - w.started_at
            log.error("media worker %d (pid %d) exited with status %d after %.1f s; its participants are told "
                      "to rejoin and it is started again", w.index, w.proc.pid, status, lived)
            if w.peer is not None:
                w.peer.close()
                w.refused += w.peer.stats["malformed"]
                w.dropped += w.peer.stats["dropped"]
                w.peer = None
            try:
                await self.on_lost(self.node_id(w.index))
            except Exception:
                log.exception("handling the loss of media worker %d failed", w.index)
            w.backoff = min(MAX_BACKOFF_S, max(1.0, 2 * w.backoff)) if lived < YOUNG_S else 0.0
            # the new process heartbeats under the same node id: in a cluster every replica must have
            # seen the old one gone first (they check every second), or its participants are never told
            delay = max(w.backoff, self.restart_delay)
            while True:
                await asyncio.sleep(delay)
                if self.stopping:
                    return
                try:
                    await self._spawn(w)
                    break
                except Exception:  # e.g. out of file descriptors: wait longer each time, never spin
                    log.exception("restarting media worker %d failed; trying again", w.index)
                    w.backoff = delay = min(MAX_BACKOFF_S, max(1.0, 2 * delay))
            w.restarts += 1

    async def _watch(self) -> None:
        """Kill a worker whose heartbeats stopped while its process runs (it would hold its rooms'
        media hostage); its supervisor then handles it as any exit."""
        while not self.stopping:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                live = await self.nodes.live()
            except Exception as e:
                log.warning("checking the workers' heartbeats failed: %s", e)
                continue
            for w in self.workers:
                if w.proc is None or w.proc.returncode is not None:
                    continue
                if self.node_id(w.index) in live:
                    w.seen_live = True
                elif w.seen_live or time.monotonic() - w.started_at > START_TIMEOUT_S:
                    log.error("media worker %d stopped heartbeating: killing it", w.index)
                    w.seen_live = False
                    with contextlib.suppress(ProcessLookupError):
                        w.proc.kill()

    # --- metrics ---------------------------------------------------------------------------------------
    async def metrics(self, timeout: float = 2.0) -> dict[int, bytes]:
        """Each running worker's Prometheus exposition (a worker that does not answer is left out)."""
        async def one(w: _Worker) -> tuple[int, bytes | None]:
            try:
                text = await self.bus.request(node_channel(self.node_id(w.index)), {"op": "metrics", "args": {}},
                                              timeout)
            except RemoteError:
                return w.index, None
            return w.index, text if isinstance(text, bytes) else None

        answers = await asyncio.gather(*(one(w) for w in self.workers))
        return {i: text for i, text in answers if text}


class WorkerMetrics:
    """A Prometheus collector of the workers' metrics, each series labelled `worker` (0 … N-1) by the
    worker itself; `refresh()` (awaited by the /metrics handler before each scrape) fetches them.
    `own`: the parent's collectors whose families the workers may have too (the bus counters of
    `basement sfu`): merged into the same families, since a name may appear only once."""

    def __init__(self, pool: WorkerPool, own: list[Any] | None = None) -> None:
        self.pool = pool
        self.texts: dict[int, bytes] = {}
        self.own = CollectorRegistry()
        for collector in own or []:
            self.own.register(collector)

    async def refresh(self) -> None:
        self.texts = await self.pool.metrics()

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        texts = [generate_latest(self.own)] + [text for _, text in sorted(self.texts.items())]
        for text in texts:
            for family in text_string_to_metric_families(text.decode()):
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type)
                merged.samples.extend(family.samples)
        yield from families.values()


class PoolCollector:
    """`basement_worker_restarts_total`, `basement_worker_wire_refused_total` (malformed frames from
    a worker) and `basement_worker_wire_dropped_total` (messages to a worker that was not reading),
    by worker index (bounded by the worker count)."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def collect(self) -> Iterable[Metric]:
        restarts = CounterMetricFamily("basement_worker_restarts", "media worker processes started again after "
                                       "one exited or stopped heartbeating", labels=["worker"])
        refused = CounterMetricFamily("basement_worker_wire_refused", "malformed frames from a media worker (each "
                                      "ends that worker's wire)", labels=["worker"])
        dropped = CounterMetricFamily("basement_worker_wire_dropped", "messages to a media worker dropped because "
                                      "it was not reading", labels=["worker"])
        for w in self.pool.workers:
            label = [str(w.index)]
            restarts.add_metric(label, w.restarts)
            refused.add_metric(label, w.refused + (w.peer.stats["malformed"] if w.peer else 0))
            dropped.add_metric(label, w.dropped + (w.peer.stats["dropped"] if w.peer else 0))
        yield from (restarts, refused, dropped)


PARENT = "parent"  # the parent's replica id: node events for its participants go to replica:parent


@dataclasses.dataclass
class Workers:
    """The all-in-one server's media, when it runs in worker processes: the parent's Replica (its
    RoomManager drives the workers through the bus), the pool, and what they share."""

    replica: Replica
    pool: WorkerPool
    bus: MemoryBus
    store: MemoryStore
    metrics: WorkerMetrics

    def metrics_registry(self) -> CollectorRegistry:
        """The workers' media metrics (label `worker`) and the parent's bus counters."""
        registry = CollectorRegistry()
        registry.register(self.metrics)
        registry.register(BusCollector(self.bus, self.store, PARENT))
        registry.register(PoolCollector(self.pool))
        return registry

    async def stop(self) -> None:
        await self.replica.shutdown(hand_over_s=0)
        await self.pool.stop()
        await self.bus.close()


async def start_workers(settings: Settings, admit: Any, tracker: Any,
                        on_event: Callable[[str, dict[str, Any]], None]) -> Workers:
    """Start `settings.worker_count` workers and the Replica that places rooms on them; returns once
    every worker heartbeats. `on_event(room, event)`: the workers' session events (track published,
    media totals), as an in-process SfuNode would call it."""
    hub, store = MemoryHub(), MemoryStore()
    bus = MemoryBus(hub, inbox=replica_channel(PARENT))
    await bus.start()
    replica = Replica(PARENT, bus, store, admit=admit, max_participants=settings.max_participants_per_room,
                      rooms_observer=tracker, settings=settings)

    def event(body: Any) -> None:
        if not (isinstance(body, dict) and isinstance(body.get("room"), str) and isinstance(body.get("event"), dict)
                and body["event"].get("type") in ("track_published", "media")):
            bus.reject(EVENTS_CHANNEL, "not a {room, event} session event")
            return
        try:
            on_event(body["room"], body["event"])
        except (KeyError, TypeError) as e:
            bus.reject(EVENTS_CHANNEL, f"session event without {e}")

    await bus.subscribe(EVENTS_CHANNEL, event)
    count = settings.worker_count

    def config(index: int) -> dict[str, Any]:
        return {"index": index, "node_id": node_id(index), "mode": "serve",
                "settings": worker_settings(settings, index, count, node_id(index))}

    pool = WorkerPool(count, config, node_id, store, bus, replica.node_lost, hub=hub, hub_store=store)
    try:
        await pool.start()
        await replica.start()
    except BaseException:
        await pool.stop()
        await bus.close()
        raise
    return Workers(replica, pool, bus, store, WorkerMetrics(pool))
