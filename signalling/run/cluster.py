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
from redis.exceptions import AuthenticationError, RedisError

from sfu import transport
from sfu.metrics import media_registry
from signalling.cluster.bus import RedisBus
from signalling.cluster.placement import Placer
from signalling.cluster.redisconn import target_from_settings
from signalling.cluster.registry import Registry
from signalling.cluster.remote import replica_channel
from signalling.cluster.replica import BusCollector, Replica
from signalling.cluster.shared import StoreNonceStore, StoreRoomRegistry
from signalling.cluster.store import RedisStore
from signalling.config import ConfigError, Settings
from signalling.protocol.app import metrics_app
from signalling.run.control import build_control_plane, mount, session_tracker
from signalling.run.heap import settle_after_startup
from signalling.run.http import start_app
from signalling.run.media import configure_media, configure_transport
from signalling.run.nodeagent import NodeAgent
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


def _stop_signals(on_signal: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
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


async def run_sfu(settings: Settings) -> int:
    node_id = member_id(settings)
    configure_transport(settings)
    configure_media(settings)
    transport.open_udp_port()  # single-port mode: a port in use is an error now, not at the first join
    await transport.open_tcp_port()  # the same for ICE-TCP
    timeout = drain_timeout(settings)
    state: dict[str, Any] = {"node_id": node_id, "connected": False, "draining": False}
    term = asyncio.Event()
    _stop_signals(term.set)
    runners = []
    runner, port = await start_app(_probe_app(state), settings.host, settings.port)
    runners.append(runner)
    registry = media_registry(const_labels={"node_id": node_id})
    if settings.metrics_port:
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
    agent = NodeAgent(node_id, bus, Placer(store, Registry(store, "node")), Registry(store, "node"),
                      Registry(store, "replica"), address=f"{settings.public_ip or settings.host}:{port}",
                      capacity=settings.node_capacity,
                      speaker_interval=settings.speaker_interval_ms / 1000, tracker=tracker,
                      presence=(settings.presence_batch_above, settings.presence_interval_ms / 1000))
    await agent.start()
    state["connected"] = True
    settle_after_startup()
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
    if settings.ice_udp_port:
        transport.close_udp_port(settings.ice_udp_port)
    if settings.ice_tcp_port:
        transport.close_tcp_port(settings.ice_tcp_port)
    log.info("SFU node %s stopped", node_id)
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
