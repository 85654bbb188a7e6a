"""Shared fixtures: a real all-in-one server on 127.0.0.1 with free ports."""

from __future__ import annotations

import socket

import pytest

from signalling import config
from signalling.server import start_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def server():
    settings = config.load(env={}, port=0, metrics_port=free_port(), speaker_interval_ms=200)
    srv = await start_server(settings)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def connect(server):
    """connect(room, name) -> a joined Client; every client is closed at teardown."""
    from signalling.client import Client

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
