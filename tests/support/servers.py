"""Shared fixtures: a real all-in-one server on 127.0.0.1 with free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sfu import datapath, transport
from sfu.metrics import STATS
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


# For a test whose subject does not depend on the data path (signalling, access, the web client,
# data channels, a browser's own behaviour): one run, forwarding natively. Every forwarding test
# still runs on both paths; say in the test's module why its subject is not one of them.
native_only = pytest.mark.parametrize("each_data_path", ["native"])

# Clients ping every 2 s and give a pong 2 s (client_ping_*, sent in `joined`): for tests whose
# client must notice a signalling path gone dark, which at the defaults (15 s + 5 s) is 20 s of waiting.
QUICK_PINGS = {"client_ping_interval_s": 2.0, "client_ping_timeout_s": 2.0}


@pytest.fixture
async def make_server(tmp_path):
    """make_server(**settings) -> a started all-in-one server; all are stopped at teardown.

    At teardown no packet may have been dropped after an internal error (`internal_error`: an
    exception in our own RTP/RTCP handling, which the SFU counts and logs but survives), whatever
    the test asserted: such a bug otherwise hides behind a passing test (a stub with a stale
    signature raised on every REMB of the Firefox tests, unseen)."""
    started = []
    internal_before = STATS.dropped.get("internal_error", 0)

    async def make(**overrides):
        # workers=1: the SFU in this process, where the tests look at its state (server.node); media
        # workers have tests of their own (tests/support/workersfix.py)
        values = dict(port=0, metrics_port=free_port(), speaker_interval_ms=200, datapath=DATAPATH["default"],
                      data_dir=str(tmp_path / f"data{len(started)}"), session_grace_s=0.5, workers="1")
        values.update(overrides)
        srv = await start_server(config.load(env={}, **values))
        started.append(srv)
        return srv

    yield make
    for srv in started:
        await srv.stop()
    internal = STATS.dropped.get("internal_error", 0) - internal_before
    assert internal == 0, f"{internal} packet(s) dropped after an internal error in the SFU (see the log)"


@pytest.fixture
async def server(make_server):
    return await make_server()


@pytest.fixture
async def connect(server):
    """connect(room, name, url=None) -> a joined Client (of `server`, or of `url`: e.g. a proxy in front
    of it); every client is closed at teardown."""
    from signalling.protocol.client import Client

    made = []

    async def make(room: str, name: str, url: str | None = None, **kw) -> Client:
        c = Client(url or server.url, **kw)
        made.append(c)
        await c.connect()
        await c.join(room, name)
        return c

    yield make
    for c in made:
        await c.close()
