"""Two signalling replicas and a media node agent on MemoryBus/MemoryStore, in this process, with a
TCP proxy in front that plays the load balancer (`route`) and fails like a network (`proxy.cut`).

For tests of what crosses replicas (signalling/cluster/roaming.py) without Redis or child processes;
tests/e2e/cluster runs the real processes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pytest

from sfu import datapath, transport
from signalling.cluster.bus import MemoryBus, MemoryHub
from signalling.cluster.placement import Placer
from signalling.cluster.registry import Registry
from signalling.cluster.replica import Replica
from signalling.cluster.store import MemoryStore
from signalling.config import Settings
from signalling.protocol.client import Client
from signalling.run.http import start_app
from signalling.run.nodeagent import NodeAgent
from tests.support.servers import DATAPATH
from tests.support.tcpproxy import TcpProxy


@dataclass
class MemoryCluster:
    store: MemoryStore
    agent: NodeAgent
    replicas: dict[str, Replica]
    ports: dict[str, int]
    proxy: TcpProxy
    killed: set[str] = field(default_factory=set)
    clients: list[Client] = field(default_factory=list)

    def url(self, replica: str) -> str:
        return f"http://127.0.0.1:{self.ports[replica]}"

    def route(self, replica: str) -> None:
        """New connections through the proxy go to `replica` (as a Service would pick one)."""
        self.proxy.target = ("127.0.0.1", self.ports[replica])

    async def client(self, room: str, name: str, via: str) -> Client:
        cl = Client(self.proxy.url if via == "proxy" else self.url(via))
        self.clients.append(cl)
        await cl.connect()
        await cl.join(room, name)
        return cl

    async def kill(self, replica: str) -> None:
        """The replica is gone for the cluster: off the bus, no heartbeat, out of the registry.
        (Its HTTP server still runs, but the proxy no longer sends anyone there.)"""
        r = self.replicas[replica]
        self.killed.add(replica)
        for t in r._tasks:
            t.cancel()
        await r.bus.close()
        await r.replicas.forget(replica)


@pytest.fixture
async def mcluster():
    """Replicas r1 and r2 (resume_grace_s 20 s), node n1; the proxy sends to r1 until `route`."""
    transport.configure_ice(["127.0.0.1"])
    before = datapath.current()
    datapath.configure(DATAPATH["default"])  # the node forwards on the data path the test runs on
    hub, store = MemoryHub(), MemoryStore()
    agent_bus = MemoryBus(hub, "inbox:n1")
    await agent_bus.start()
    agent = NodeAgent("n1", agent_bus, Placer(store, Registry(store)), Registry(store), Registry(store, "replica"))
    await agent.start()
    settings = Settings(resume_grace_s=20.0)
    replicas, ports, runners = {}, {}, []
    for rid in ("r1", "r2"):
        bus = MemoryBus(hub, f"replica:{rid}")
        await bus.start()
        replicas[rid] = Replica(rid, bus, store, settings=settings)
        await replicas[rid].start()
        runner, ports[rid] = await start_app(replicas[rid].app, "127.0.0.1", 0)
        runners.append(runner)
    proxy = await TcpProxy(ports["r1"]).start()
    c = MemoryCluster(store, agent, replicas, ports, proxy)
    yield c
    for cl in c.clients:
        await cl.close()
    await proxy.stop()
    for runner in runners:
        await runner.cleanup()
    for rid, r in replicas.items():
        if rid in c.killed:
            continue  # (off the bus: its leaves would only time out)
        with contextlib.suppress(Exception):
            await r.shutdown(hand_over_s=0)  # (nobody to hand over to at teardown)
        with contextlib.suppress(Exception):
            await r.bus.close()
    await agent.stop()
    await agent_bus.close()
    datapath.configure(before)
