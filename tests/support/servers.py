"""Shared fixtures: a real all-in-one server on 127.0.0.1 with free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sfu import datapath, transport
from signalling import config
from signalling.ports import free_port
from signalling.run.serve import start_server

# test clients (aiortc peers in this process) gather on loopback only; the server has its own settings
transport.configure_ice(["127.0.0.1"])

# the data path servers start with unless a test says otherwise (`each_data_path`)
DATAPATH = {"default": "native"}


@pytest.fixture(params=datapath.NAMES)
def each_data_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per data path: servers it starts forward natively, then in Python.
    The integration and browser tiers use it for every test (their conftest.py)."""
    before = DATAPATH["default"]
    DATAPATH["default"] = request.param
    yield request.param
    DATAPATH["default"] = before



@pytest.fixture
async def make_server(tmp_path):
    """make_server(**settings) -> a started all-in-one server; all are stopped at teardown."""
    started = []

    async def make(**overrides):
        values = dict(port=0, metrics_port=free_port(), speaker_interval_ms=200, datapath=DATAPATH["default"],
                      data_dir=str(tmp_path / f"data{len(started)}"), session_grace_s=0.5)
        values.update(overrides)
        srv = await start_server(config.load(env={}, **values))
        started.append(srv)
        return srv

    yield make
    for srv in started:
        await srv.stop()


@pytest.fixture
async def server(make_server):
    return await make_server()


@pytest.fixture
async def connect(server):
    """connect(room, name) -> a joined Client; every client is closed at teardown."""
    from signalling.protocol.client import Client

    made = []

    async def make(room: str, name: str, **kw) -> Client:
        c = Client(server.url, **kw)
        made.append(c)
        await c.connect()
        await c.join(room, name)
        return c

    yield make
    for c in made:
        await c.close()
