"""The wire between `basement serve` and its media workers (signalling.cluster.localwire/localhub/
locallink) under bad input: every malformed frame is refused before anything acts on it and counted,
a bad store call gets an error reply and the wire carries on, and nothing one side sends can make the
other crash or allocate without bound."""

from __future__ import annotations

import asyncio
import socket
import struct

import msgpack
import pytest

from signalling.cluster.bus import MemoryBus, MemoryHub
from signalling.cluster.localhub import LocalHubPeer
from signalling.cluster.locallink import LocalBus, LocalLink, LocalStore
from signalling.cluster.localwire import MAX_FRAME_BYTES, frame
from signalling.cluster.store import MemoryStore


@pytest.fixture
def each_data_path() -> str:
    """Once: the wire carries no media, so the data path (which this tier runs every test on) is moot."""
    return "native"


class Wire:
    """The parent's end served on a hub and store; the worker's end raw (a socket we write to)."""

    def __init__(self) -> None:
        self.hub, self.store = MemoryHub(), MemoryStore()

    async def start(self) -> Wire:
        ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        self.peer = LocalHubPeer("worker-t", self.hub, self.store, reader, writer)
        self.peer.start({"index": 0})
        self.reader, self.writer = await asyncio.open_unix_connection(sock=self.theirs)
        await self.frame()  # the configuration
        return self

    async def frame(self) -> list:
        (n,) = struct.unpack(">I", await self.reader.readexactly(4))
        return msgpack.unpackb(await self.reader.readexactly(n), raw=False)

    async def closed(self) -> bool:
        try:
            await asyncio.wait_for(self.reader.read(1 << 20), 5)
            return await asyncio.wait_for(self.reader.read(1), 5) == b""
        except (ConnectionError, TimeoutError):
            return False

    def close(self) -> None:
        self.peer.close()
        self.writer.close()


@pytest.fixture
async def wire():
    w = await Wire().start()
    try:
        yield w
    finally:
        w.close()


@pytest.mark.parametrize("raw,why", [
    (struct.pack(">I", MAX_FRAME_BYTES + 1), "over"),                            # refused before reading it
    (struct.pack(">I", 3) + b"\xc1\xc1\xc1", "undecodable"),                     # never-used msgpack byte
    (frame({"send": 1}), "array"),                                               # a map, not an array
    (frame(7, 1), "array"),                                                      # no kind
    (frame("send", 1, [["bad channel", b"x"]]), "channel"),                      # whitespace in a channel
    (frame("send", 1, [["node:n", "not bytes"]]), "channel"),
    (frame("send", 1, [["node:n", b"x" * ((1 << 20) + 1)]]), "channel"),       # over one envelope
    (frame("listen", 1, "x" * 300), "unexpected"),                              # channel name too long
    (frame("reboot", 1), "unexpected"),
])
async def test_a_malformed_frame_ends_that_wire_only_and_is_counted(wire, raw, why, caplog):
    listener = MemoryBus(wire.hub, "inbox:parent")
    await listener.start()
    wire.writer.write(raw)
    assert await wire.closed()
    assert wire.peer.stats["malformed"] == 1
    assert why in caplog.text and "worker-t" in caplog.text
    assert wire.hub.listeners.get("node:n", set()) == set()
    await listener.close()


async def test_a_worker_listens_to_a_bounded_number_of_channels(wire):
    for i in range(1024):
        wire.writer.write(frame("listen", i, f"c:{i}"))
    for i in range(1024):
        assert await wire.frame() == ["res", i, True, None]
    wire.writer.write(frame("unlisten", 2000, "c:5"))
    assert await wire.frame() == ["res", 2000, True, None]
    assert "c:5" not in wire.hub.listeners  # no empty sets left behind
    wire.writer.write(frame("listen", 2001, "c:5"))  # back to 1024: fine
    assert await wire.frame() == ["res", 2001, True, None]
    wire.writer.write(frame("listen", 2002, "c:one-too-many"))
    assert await wire.closed()
    assert wire.peer.stats["malformed"] == 1
    assert not any(wire.peer in v for v in wire.hub.listeners.values())


async def test_a_frame_of_a_million_empty_arrays_is_refused_while_it_is_parsed(wire, caplog):
    """1 MB that would be ~65 MB of Python lists: msgpack stops at MAX_ITEMS, before the shape check."""
    items = b"\xdd" + (1_000_000).to_bytes(4, "big") + b"\x90" * 1_000_000  # array32 of empty arrays
    body = b"\x93" + msgpack.packb("send") + msgpack.packb(1) + items      # ["send", 1, [[], [], ...]]
    wire.writer.write(struct.pack(">I", len(body)) + body)
    assert await wire.closed()
    assert wire.peer.stats["malformed"] == 1
    assert "undecodable msgpack (ValueError)" in caplog.text


async def test_a_bad_store_call_is_an_error_reply_and_the_wire_carries_on(wire):
    wire.writer.write(frame("store", 1, "flushall", []))
    assert await wire.frame() == ["res", 1, False, "unknown store call 'flushall'/0"]
    wire.writer.write(frame("store", 2, "get", ["a", "b"]))
    assert (await wire.frame())[:3] == ["res", 2, False]
    # keys and fields are strings (registries sort them: one int among them would break every reader)
    wire.writer.write(frame("store", 6, "hset", ["nodes", 7, 1]))
    assert await wire.frame() == ["res", 6, False, "hset: keys and fields must be strings"]
    wire.writer.write(frame("store", 7, "mget", [["a", b"b"]]))
    assert await wire.frame() == ["res", 7, False, "mget: keys and fields must be strings"]
    assert await wire.store.hgetall("nodes") == {}
    wire.writer.write(frame("store", 3, "set", ["k", {"v": 1}]))
    wire.writer.write(frame("store", 4, "expire", ["k", "soon"]))
    wire.writer.write(frame("store", 5, "get", ["k"]))
    assert await wire.frame() == ["res", 3, True, None]
    reply = await wire.frame()
    assert reply[:3] == ["res", 4, False] and "expire: TypeError" in reply[3]
    assert await wire.frame() == ["res", 5, True, {"v": 1}]
    assert wire.peer.stats["malformed"] == 0


async def test_a_worker_that_stops_reading_costs_the_parent_a_bounded_buffer(wire):
    wire.writer.write(frame("listen", 1, "node:slow"))
    assert await wire.frame() == ["res", 1, True, None]
    envelope = msgpack.packb({"k": "msg", "b": "x" * 60_000})
    for _ in range(3000):  # ~180 MB offered; the worker end reads nothing
        wire.hub.send("node:slow", envelope)
    assert wire.peer.writer.transport.get_write_buffer_size() <= 64 * (1 << 20) + 70_000
    assert wire.peer.stats["dropped"] > 0


async def test_the_worker_end_refuses_a_malformed_frame_from_the_parent_and_fails_its_calls():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    writer.write(frame("config", {"index": 1}))
    link, config = await LocalLink.open(theirs.detach())
    assert config == {"index": 1}
    store, bus = LocalStore(link), LocalBus(link, "inbox:w")
    got = []
    link.on_message = lambda channel, data: got.append(channel)
    pending = asyncio.ensure_future(store.get("k"))
    await asyncio.sleep(0.05)
    writer.write(frame("msg", "inbox:w", "text, not bytes"))
    await asyncio.wait_for(link.closed.wait(), 5)
    with pytest.raises(ConnectionError):
        await pending
    with pytest.raises(ConnectionError):
        await store.get("k")
    assert got == []
    await bus.close()
    writer.close()


async def test_a_worker_whose_parent_is_gone_sees_its_wire_closed():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.sendall(frame("config", {"index": 0}))
    link, _ = await LocalLink.open(theirs.detach())
    ours.close()  # the parent exited
    await asyncio.wait_for(link.closed.wait(), 5)
    with pytest.raises(ConnectionError):
        await LocalStore(link).set("k", 1)
