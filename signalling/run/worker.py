"""One media worker of `basement serve|sfu --workers N` (`python -m signalling.run.worker --fd FD`).

It is what `basement sfu` is in a cluster, an SfuNode behind a NodeAgent, with the settings the
parent sends first on the wire between them (never in argv or the environment). A worker of
`serve` has its bus and store on that wire (signalling.cluster.locallink) instead of Redis; a
worker of `basement sfu` is a cluster node of its own on Redis, and the wire only tells it when
its parent is gone. The parent starts, places rooms on, and
restarts its workers (signalling.run.workers). A worker ends when its parent's wire ends or on
SIGTERM; SIGINT (Ctrl-C in a terminal reaches the whole process group) is the parent's to handle.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from prometheus_client import generate_latest

from sfu.metrics import media_registry
from signalling.cli import run_loop
from signalling.cluster.locallink import LocalBus, LocalLink, LocalStore
from signalling.cluster.placement import Placer
from signalling.cluster.registry import Registry
from signalling.config import ConfigError, Settings
from signalling.run.heap import settle_after_startup
from signalling.run.media import close_node_media, open_node_media
from signalling.run.nodeagent import NodeAgent, agent_options

log = logging.getLogger("basement.worker")

# where workers send their session events (track published, media totals) for the parent's tracker
EVENTS_CHANNEL = "events:parent"
# the workers of `serve` may each hold part of a room (one host: relays on loopback, sfu.cascade)
SPAN_GROUP = "serve"


def node_id(index: int) -> str:
    return f"worker-{index}"


async def run_worker(fd: int) -> int:
    link, config = await LocalLink.open(fd)
    index: int = config["index"]
    settings = Settings(**config["settings"]).validate()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s [{config['node_id']}] %(name)s: %(message)s")
    if config.get("mode") == "cluster":
        # a worker of `basement sfu --workers N`: a cluster node of its own on Redis
        from signalling.run.cluster import run_sfu

        return await run_sfu(settings, parent=link, worker=index)
    await open_node_media(settings)  # a port in use ends the worker now, and the parent says so
    bus, store = LocalBus(link, inbox=f"inbox:{node_id(index)}"), LocalStore(link)
    await bus.start()
    registry = media_registry(const_labels={"worker": str(index)})
    agent = NodeAgent(node_id(index), bus, Placer(store, Registry(store, "node")), Registry(store, "node"),
                      Registry(store, "replica"), events=EVENTS_CHANNEL, metrics=lambda: generate_latest(registry),
                      span_group=SPAN_GROUP, **agent_options(settings))
    await agent.start()
    settle_after_startup()
    term = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, term.set)
    ended: Any = [asyncio.ensure_future(term.wait()), asyncio.ensure_future(link.closed.wait())]
    await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
    for t in ended:
        t.cancel()
    if not link.closed.is_set():
        await agent.stop()  # placements released and the registry told, so the parent need not wait
    else:
        await agent.node.close()
    await bus.close()
    await link.close()
    close_node_media(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="basement-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the inherited socket to the parent")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return run_loop(run_worker(args.fd))
    except ConfigError as e:
        print(f"basement worker: configuration error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
