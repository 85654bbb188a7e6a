"""Presence in a large room (sfu.presence): joins and leaves batched into `presence` messages, in order
with the room's other events, and every client's participant list right."""

from __future__ import annotations

import asyncio

from tests.support.media import Tone

ROOM = "big"


def _presence_stream(client, after: int = 0) -> list[dict]:
    kinds = ("participant_joined", "participant_left", "presence", "track_published", "track_unpublished")
    return [m for m in client.messages[after:] if m.get("type") in kinds]


async def test_a_burst_of_joins_and_leaves_arrives_as_one_presence_message_each(make_server):
    # rooms above 2 participants batch; the interval is long, so only another room event flushes
    server = await make_server(presence_batch_above=2, presence_interval_ms=10_000)
    from signalling.protocol.client import Client

    clients: list[Client] = []

    async def join(name: str) -> Client:
        c = Client(server.url)
        clients.append(c)
        await c.connect()
        await c.join(ROOM, name)
        return c

    try:
        watcher = await join("w")
        a, b = await join("a"), await join("b")  # the room is small: told at once
        burst = await asyncio.gather(*(join(f"x{i}") for i in range(6)))
        ids = {c.participant["id"]: c for c in clients}
        await asyncio.sleep(0.3)
        assert [m["type"] for m in _presence_stream(watcher)] == ["participant_joined"] * 2, (
            "the burst must wait: " + repr(_presence_stream(watcher)))
        room = server.node.rooms[ROOM]
        assert room.presence.waiting == 6

        # a track: the waiting joins go first, in one message, then the track
        await burst[0].publish(audio=Tone(0.5))
        await watcher.wait_message("track_published")
        stream = _presence_stream(watcher)
        assert [m["type"] for m in stream] == ["participant_joined", "participant_joined", "presence",
                                               "track_published"], stream
        assert {p["id"] for p in stream[2]["joined"]} == {c.participant["id"] for c in burst}
        assert stream[2]["left"] == []
        assert stream[3]["track"]["participant"] == burst[0].participant["id"]
        for c in clients:  # everyone's list is everyone else, whatever the message that told it
            await c.wait_for(lambda c=c: set(c.participants) == set(ids) - {c.participant["id"]}, timeout=10)

        # the burst leaves: the publisher's track goes at once, the leaves wait together
        mark = len(watcher.messages)
        for c in burst:
            await c.leave()
        await watcher.wait_for(lambda: room.presence.waiting == 6 or any(
            m.get("type") == "presence" for m in watcher.messages[mark:]), timeout=10)
        assert room.presence.waiting == 6
        await a.publish(audio=Tone(0.5))
        await watcher.wait_for(lambda: any(m.get("type") == "track_published"
                                           and m["track"]["participant"] == a.participant["id"]
                                           for m in watcher.messages[mark:]), timeout=15)
        stream = _presence_stream(watcher, mark)
        assert [m["type"] for m in stream] == ["track_unpublished", "presence", "track_published"], stream
        assert {e["participant"] for e in stream[1]["left"]} == {c.participant["id"] for c in burst}
        assert stream[1]["joined"] == []
        assert set(watcher.participants) == {a.participant["id"], b.participant["id"]}
        assert set(b.participants) == {a.participant["id"], watcher.participant["id"]}
    finally:
        for c in clients:
            await c.close()


async def test_a_small_room_tells_each_change_at_once(make_server):
    server = await make_server()  # the default: batching above 20 participants
    from signalling.protocol.client import Client

    clients = []
    try:
        for name in ("w", "a", "b", "c"):
            c = Client(server.url)
            clients.append(c)
            await c.connect()
            await c.join(ROOM, name)
        await clients[3].leave()
        watcher = clients[0]
        await watcher.wait_message("participant_left")
        assert [m["type"] for m in _presence_stream(watcher)] == ["participant_joined"] * 3 + ["participant_left"]
        assert server.node.rooms[ROOM].presence.waiting == 0
    finally:
        for c in clients:
            await c.close()
