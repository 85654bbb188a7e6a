"""Fuzz the cluster bus: signalling/cluster/bus.py `Bus._dispatch`, one message as read from Redis.

Input: first byte picks the channel the message arrived on (the inbox, a subscribed event channel,
a served request channel, or one nobody listens to); the rest is the raw message (msgpack envelope).
The bus under test is the real `Bus` with an in-process transport that records what would be
published; one request is waiting for its reply (rid "r1"), the event handler and the responder
echo what they get.
Contract: `_dispatch` never raises (it runs inside the reader task: an escape ends that task and the
node or replica hears nothing more); whatever the bus then sends (replies to requests) goes to a
string channel and is a msgpack-encodable envelope, so a hostile request cannot wedge the sender
(a non-string channel makes Redis refuse the whole pipelined batch, legitimate messages included).
"""

from __future__ import annotations

import asyncio

from _harness import Finding, instrumented, main

with instrumented():
    from signalling.cluster.bus import Bus

LOOP = asyncio.new_event_loop()


class RecordingBus(Bus):
    """The real protocol logic; the transport only records (channel, bytes) per send."""

    def __init__(self) -> None:
        super().__init__("inbox:fuzz")
        self.sent: list[tuple[object, bytes]] = []

    async def _open(self) -> None: ...

    async def _send_batch(self, batch):
        self.sent.extend(batch)
        return [1] * len(batch)

    async def _listen(self, channel: str) -> None: ...

    async def _unlisten(self, channel: str) -> None: ...

    async def _shut(self) -> None: ...


CHANNELS = ("inbox:fuzz", "events", "node:1", "nobody")


async def run(channel: str, data: bytes) -> None:
    bus = RecordingBus()
    waiting = LOOP.create_future()
    bus._waiting["r1"] = waiting
    await bus.subscribe("events", lambda body: None)

    async def echo(body):
        return body

    await bus.serve("node:1", echo)
    bus._dispatch(channel, data)
    # let spawned responders run and queue their replies
    for _ in range(3):
        await asyncio.sleep(0)
    while not bus._outq.empty():
        item = bus._outq.get_nowait()
        if item is None:
            continue
        to, payload, _ = item
        if not isinstance(to, str):
            raise Finding(f"reply queued for a {type(to).__name__} channel {to!r:.60}")
        if not isinstance(payload, bytes):
            raise Finding("reply is not bytes")
    for task in list(bus._tasks):
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()
        task.cancel()
    if waiting.done() and not waiting.cancelled():
        waiting.exception()  # retrieve it: a RemoteError for the requester is the documented outcome


def test_one(data: bytes) -> None:
    if not data:
        return
    LOOP.run_until_complete(run(CHANNELS[data[0] % len(CHANNELS)], data[1:]))


if __name__ == "__main__":
    main(test_one)
