"""The `basement sfu` and `basement signal` processes: Redis, HTTP probes, metrics, signals.

Both serve /healthz at once and /readyz only once Redis answers (and not while draining), so a pod
becomes ready when it can actually take work, matching the probes in helm/basement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from redis.exceptions import AuthenticationError, RedisError

from sfu.metrics import media_registry
from signalling.cluster.bus import RedisBus
from signalling.cluster.locallink import LocalLink
from signalling.cluster.placement import Placer
from signalling.cluster.redisconn import target_from_settings
from signalling.cluster.registry import Registry
from signalling.cluster.remote import replica_channel
from signalling.cluster.replica import WATCH_S, BusCollector, Replica
from signalling.cluster.shared import StoreNonceStore, StoreRoomRegistry
from signalling.cluster.store import RedisStore
from signalling.config import ConfigError, Settings
from signalling.protocol.app import metrics_app
from signalling.run.control import build_control_plane, mount, session_tracker
from signalling.run.heap import settle_after_startup
from signalling.run.http import start_app
from signalling.run.media import close_node_media, open_node_media
from signalling.run.nodeagent import CLUSTER_GROUP, NodeAgent, agent_options
from signalling.run.tls import server_tls
from signalling.sessions.journal import SessionJournal, end_journal, reap
from signalling.sessions.outbox import outbox_for_settings
from signalling.sessions.writer import WriterCollector

log = logging.getLogger("basement.cluster")



def member_id(settings: Settings) -> str:
    return settings.node_id or f"{socket.gethostname()}-{os.getpid()}"


def drain_timeout(settings: Settings) -> float:
    return float(settings.drain_timeout_s)


async def connect(settings: Settings, inbox: str) -> tuple[RedisBus, RedisStore]:
    """Connect to Redis, retrying while it is unreachable: in a cluster Redis may come up after us.

    A refused password is not something retrying fixes: it stops the process with a ConfigError
    naming the settings (exit 2). Only the redacted URL is ever logged.
    """
    target = target_from_settings(settings)
    while True:
        bus, store = RedisBus(target, inbox=inbox), RedisStore(target)
        try:
            await store.start()
            await bus.start()
            return bus, store
        except AuthenticationError as e:
            with contextlib.suppress(Exception):
                await bus.close()
                await store.close()
            hint = ("set BASEMENT_REDIS_PASSWORD or BASEMENT_REDIS_PASSWORD_FILE" if not target.password
                    else "check BASEMENT_REDIS_PASSWORD / BASEMENT_REDIS_PASSWORD_FILE")
            raise ConfigError(f"redis_password: Redis at {target.safe_url} refused authentication "
                              f"({e}); {hint}") from None
        except (RedisError, OSError) as e:
            log.warning("Redis at %s unreachable (%s); retrying", target.safe_url, e)
        with contextlib.suppress(Exception):
            await bus.close()
            await store.close()
        await asyncio.sleep(1.0)


def _stop_signals(on_signal: Any, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)


# --- basement sfu -----------------------------------------------------------------------------------

def _probe_app(state: dict[str, Any]) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(request: web.Request) -> web.Response:
        if state.get("draining"):
            return web.json_response({"ready": False, "reason": "draining"}, status=503)
        if not state.get("connected"):
            return web.json_response({"ready": False, "reason": "cluster store unreachable"}, status=503)
        return web.json_response({"ready": True, "node_id": state.get("node_id")})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def run_sfu(settings: Settings, parent: LocalLink | None = None, worker: int | None = None) -> int:
    """`basement sfu`: one media node. With `workers` > 1 it is the parent of that many node
    processes (`run_sfu_workers`); each of them runs this with `parent`, the wire to it, and
    `worker`, its index: no probes or metrics server of its own (the parent has them), and it ends
    when the wire does."""
    if parent is None and settings.worker_count > 1:
        return await run_sfu_workers(settings)
    node_id = member_id(settings)
    await open_node_media(settings)
    timeout = drain_timeout(settings)
    state: dict[str, Any] = {"node_id": node_id, "connected": False, "draining": False}
    term = asyncio.Event()
    # a worker drains on its parent's SIGTERM only: a Ctrl-C reaches the whole process group, and the
    # parent's SIGTERM after it would count as the second signal that cuts the drain short
    _stop_signals(term.set, (signal.SIGTERM,) if parent is not None else (signal.SIGINT, signal.SIGTERM))
    runners = []
    port = 0
    if parent is None:
        runner, port = await start_app(_probe_app(state), settings.host, settings.port)
        runners.append(runner)
        registry = media_registry(const_labels={"node_id": node_id})
    else:
        registry = media_registry(const_labels={"node_id": node_id, "worker": str(worker)})
        # the parent gone: nobody supervises this worker any more; it drains and ends as on SIGTERM
        orphaned = asyncio.ensure_future(parent.closed.wait())
        orphaned.add_done_callback(lambda _: term.set())
    if settings.metrics_port and parent is None:
        mrunner, _ = await start_app(metrics_app(registry), settings.metrics_host, settings.metrics_port)
        runners.append(mrunner)
    bus, store = await connect(settings, f"inbox:{node_id}")
    # the node's bus counts what it refused (malformed, dropped) like a replica's does
    registry.register(BusCollector(bus, store, node_id))
    # The node sees every participant of its rooms, so it tracks their sessions; the summaries go to
    # the cluster's outbox (a Redis stream) and a replica's chain writer records them.
    outbox = outbox_for_settings(settings) if settings.record_sessions != "none" else None
    tracker = None
    if outbox is not None:
        tracker = session_tracker(settings, outbox, StoreRoomRegistry(store))
        tracker.journal = SessionJournal(store, node_id)  # so a replica can end them if this node dies
        await end_journal(store, node_id, tracker.end_lost)  # what a previous life of this node left
    # with a relay address, rooms may span this node and the cluster's others (SRTP relays)
    relay_port = settings.relay_port + (worker or 0) if settings.relay_port else 0
    agent = NodeAgent(node_id, bus, Placer(store, Registry(store, "node")), Registry(store, "node"),
                      Registry(store, "replica"), address=f"{settings.public_ip or settings.host}:{port}",
                      tracker=tracker, metrics=lambda: generate_latest(registry),
                      span_group=CLUSTER_GROUP if settings.relay_host else None,
                      relay=(settings.relay_host or "127.0.0.1", relay_port), **agent_options(settings))
    await agent.start()
    state["connected"] = True
    settle_after_startup()
    if parent is None:
        log.info("SFU node %s ready (probes on port %d)", node_id, port)
        print(f"basement sfu {node_id} ready on port {port}", flush=True)
    await term.wait()
    log.info("draining: no new rooms; waiting up to %.0f s for %d rooms to end", timeout, len(agent.node.rooms))
    # refuse new rooms before /readyz says so: whoever sees 503 can rely on it
    agent.mark_draining()
    state["draining"] = True
    # a second signal cuts the drain short
    drained = asyncio.ensure_future(agent.drain(timeout))
    term.clear()
    again = asyncio.ensure_future(term.wait())
    await asyncio.wait([drained, again], return_when=asyncio.FIRST_COMPLETED)
    again.cancel()
    drained.cancel()
    await agent.stop()
    if tracker is not None:
        await tracker.close_all()  # the rooms the drain deadline cut short end now, and are recorded
    if outbox is not None:
        await outbox.close()
    await bus.close()
    await store.close()
    for r in runners:
        await r.cleanup()
    close_node_media(settings)
    if parent is not None:
        await parent.close()
    log.info("SFU node %s stopped", node_id)
    return 0


async def run_sfu_workers(settings: Settings) -> int:
    """`basement sfu --workers N`: N media node processes on Redis, each a cluster node of its own
    (`<node_id>-w<i>`, its share of `node_capacity`, its own ports), so placement spreads rooms over
    every core of the machine. This process starts, watches and restarts them, serves the probes
    and one /metrics for all (label `worker`), and passes its drain signals on."""
    from signalling.config import SUBCOMMAND_GROUPS
    from signalling.run.workers import PoolCollector, WorkerMetrics, WorkerPool, worker_settings

    member, count = member_id(settings), settings.worker_count
    state: dict[str, Any] = {"node_id": member, "connected": False, "draining": False}
    term = asyncio.Event()
    _stop_signals(term.set)
    runners = []
    runner, port = await start_app(_probe_app(state), settings.host, settings.port)
    runners.append(runner)
    bus, store = await connect(settings, f"inbox:{member}")
    nodes = Registry(store, "node")
    placer = Placer(store, nodes)

    def worker_id(index: int) -> str:
        return f"{member}-w{index}"

    def config(index: int) -> dict[str, Any]:
        # the worker connects to Redis itself: its password goes on the private wire, nowhere else
        return {"index": index, "node_id": worker_id(index), "mode": "cluster",
                "settings": worker_settings(settings, index, count, worker_id(index), SUBCOMMAND_GROUPS["sfu"],
                                            with_secrets=True)}

    async def lost(node: str) -> None:
        # now, not when its heartbeat key expires: the replicas' next node check (every second)
        # tells its participants to rejoin, and its rooms are placed again
        await nodes.forget(node)
        await placer.forget_node(node)

    # restart_delay: replicas check the registry every WATCH_S; a restarted worker heartbeats under the
    # same id, so it waits until every replica has seen the old one gone (and told its participants)
    pool = WorkerPool(count, config, worker_id, store, bus, lost, watch=False, restart_delay=3 * WATCH_S)
    await pool.start()
    # the workers export bus counters too (labelled with their own node ids): one family each
    metrics = WorkerMetrics(pool, own=[BusCollector(bus, store, member)])
    if settings.metrics_port:
        registry = CollectorRegistry()
        registry.register(metrics)
        registry.register(PoolCollector(pool))
        mrunner, _ = await start_app(metrics_app(registry, metrics.refresh), settings.metrics_host,
                                     settings.metrics_port)
        runners.append(mrunner)
    state["connected"] = True
    settle_after_startup()
    print(f"basement sfu {member} ready on port {port} with {count} workers", flush=True)
    await term.wait()
    state["draining"] = True
    log.info("draining: %d workers stop taking rooms and end when theirs are empty (at most %.0f s)", count,
             drain_timeout(settings))
    stopping = asyncio.ensure_future(pool.stop(drain_timeout(settings) + 10.0))
    while not stopping.done():
        term.clear()
        again = asyncio.ensure_future(term.wait())
        await asyncio.wait([stopping, again], return_when=asyncio.FIRST_COMPLETED)
        if again.done() and not stopping.done():
            pool.signal(signal.SIGTERM)  # a second signal: the workers cut their drain short
        again.cancel()
    await bus.close()
    await store.close()
    for r in runners:
        await r.cleanup()
    return 0


# --- basement signal ---------------------------------------------------------------------------------

async def run_signal(settings: Settings) -> int:
    replica_id = member_id(settings)
    if not settings.grant_secret:
        # a random per-process key would make every grant fail on the other replicas
        raise ConfigError("grant_secret: required for `basement signal` (all replicas must share it); "
                          "set BASEMENT_GRANT_SECRET")
    stop = asyncio.Event()
    _stop_signals(stop.set)
    # connect first: a replica without Redis can do nothing, and the startup probe allows for it
    tls = server_tls(settings)  # before connecting anywhere: a bad certificate is a ConfigError
    bus, store = await connect(settings, replica_channel(replica_id))
    # Sign-in, grants, gates and the admin API work as in `basement serve`, with nonces and room
    # configs in Redis so any replica can finish what another started. The media nodes track the
    # sessions; every replica runs a chain writer on the shared outbox, and the writer lock in Redis
    # lets one of them send at a time.
    control = await build_control_plane(settings, sessions=True, track=False, registry=StoreRoomRegistry(store),
                                        nonces=StoreNonceStore(store))
    if settings.chain == "embedded":
        log.warning("chain=embedded in cluster mode: every replica runs its own in-process chain; "
                    "use chain=rpc with a shared node in production")
    replica = Replica(replica_id, bus, store, admit=control.admit,
                      max_participants=settings.max_participants_per_room, settings=settings)
    if control.writer is not None:
        # Sessions of a media node that died end here, from its journal (reason node_lost).
        reaper = session_tracker(settings, control.outbox, StoreRoomRegistry(store))
        replica.on_nodes_checked = lambda live: reap(store, live, reaper.end_lost)
    mount(control, replica.app, replica.rooms)
    await replica.start()
    runners = []
    runner, port = await start_app(replica.app, settings.host, settings.port, tls.context if tls else None)
    runners.append(runner)
    if settings.metrics_port:
        registry = replica.metrics()
        if control.writer is not None:
            registry.register(WriterCollector(control.writer))
        mrunner, _ = await start_app(metrics_app(registry), settings.metrics_host, settings.metrics_port)
        runners.append(mrunner)
    settle_after_startup()
    print(f"basement signal {replica_id} ready on port {port}" + (" (HTTPS)" if tls else ""), flush=True)
    if tls is not None and tls.self_signed:
        print(f"TLS: self-signed certificate, SHA-256 fingerprint {tls.fingerprint}", flush=True)
    await stop.wait()
    await replica.shutdown()
    await control.stop()
    await bus.flush()
    await bus.close()
    await store.close()
    for r in runners:
        await r.cleanup()
    return 0
