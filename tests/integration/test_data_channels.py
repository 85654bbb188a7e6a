"""Chat and app data over data channels, relayed by the SFU (docs/protocol.md "Data channels").

Every client here is aiortc, speaking the protocol through `signalling.protocol.client.Client`:
the channels are real SCTP associations over the publish connection's DTLS, the SFU's aiortc on the
other end. The limits are the defaults a user gets (16 KiB, 50 messages per second in bursts of
150) unless a test starts its own server.
"""

from __future__ import annotations

import asyncio
import json
import time

from signalling.protocol.client import Client
from signalling.sessions.cidstore import DirCidStore
from signalling.sessions.cli import list_sessions
from signalling.sessions.summary import hex32, room_id
from tests.support.media import CounterVideo, Sink
from tests.support.servers import native_only

# the channels are SCTP over the publish connection's DTLS, aiortc's on both data paths: one run
pytestmark = native_only


async def _chatting(connect, room: str, *names: str, **publish):
    clients = []
    for name in names:
        c = await connect(room, name)
        await c.publish(data=True, **publish)
        await c.wait_data_open()
        clients.append(c)
    return clients


def _texts(client, topic: str | None = "chat") -> list[str]:
    return [m["data"] for m in client.data_received(topic)]


async def test_a_message_reaches_everyone_else_with_the_senders_verified_name(connect):
    alice, bob, carol = await _chatting(connect, "chat", "alice", "bob", "carol")
    alice.send_data("hello <b>room</b>")
    await bob.wait_for(lambda: _texts(bob) == ["hello <b>room</b>"])
    await carol.wait_for(lambda: _texts(carol) == ["hello <b>room</b>"])
    (got,) = bob.data_received()
    assert {k: got[k] for k in ("from", "name", "identity", "topic")} == {
        "from": alice.participant["id"], "name": "alice", "identity": alice.participant["identity"],
        "topic": "chat"}
    assert isinstance(got["seq"], int) and isinstance(got["at"], int) and "history" not in got and "to" not in got
    # the sender gets no copy of its own message
    bob.send_data("hi alice")
    await alice.wait_for(lambda: _texts(alice) == ["hi alice"])
    assert _texts(bob) == ["hello <b>room</b>"]


async def test_a_burst_of_100_arrives_complete_and_in_order(connect):
    sender, receiver = await _chatting(connect, "burst", "sender", "receiver")
    for i in range(100):
        sender.send_data(f"message {i}")
    await receiver.wait_for(lambda: len(_texts(receiver)) == 100, timeout=30)
    got = receiver.data_received()
    assert [m["data"] for m in got] == [f"message {i}" for i in range(100)]
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 100
    assert not [m for m in sender.data if m["type"] == "error"]


async def test_named_recipients_only(connect):
    alice, bob, carol = await _chatting(connect, "direct", "alice", "bob", "carol")
    alice.send_data("for bob", to=[bob.participant["id"], "P-nobody"])
    alice.send_data("for all")
    await carol.wait_for(lambda: _texts(carol) == ["for all"])
    await bob.wait_for(lambda: _texts(bob) == ["for bob", "for all"])
    assert bob.data_received()[0]["to"] == [bob.participant["id"], "P-nobody"]


async def test_lossy_channel_and_topics(connect):
    alice, bob = await _chatting(connect, "lossy", "alice", "bob")
    # a lossy message may be abandoned by design (unacknowledged when SCTP's timer fires, which a
    # starved machine can cause even on loopback): send positions until one arrives
    sent = []
    for x in range(50):
        sent.append(json.dumps({"x": x, "y": 2}))
        alice.send_data(sent[-1], topic="cursor", lossy=True)
        try:
            await bob.wait_for(lambda: _texts(bob, "cursor"), timeout=0.5)
            break
        except TimeoutError:
            continue
    got = bob.data_received("cursor")
    assert got and {m["data"] for m in got} <= set(sent) and all(m["from"] == alice.participant["id"] for m in got)
    assert _texts(bob) == []


async def test_late_joiners_get_the_chat_history_but_not_other_topics_or_direct_messages(connect):
    alice, bob = await _chatting(connect, "history", "alice", "bob")
    for i in range(3):
        alice.send_data(f"chat {i}")
    alice.send_data("state", topic="cursor")
    alice.send_data("psst", to=[bob.participant["id"]])
    await bob.wait_for(lambda: len(bob.data_received()) == 5)
    (late,) = await _chatting(connect, "history", "late")
    await late.wait_for(lambda: len(_texts(late)) == 3)
    history = late.data_received()
    assert [m["data"] for m in history] == ["chat 0", "chat 1", "chat 2"]
    assert all(m["history"] is True and m["name"] == "alice" for m in history)
    # then live messages, without the flag
    bob.send_data("welcome")
    await late.wait_for(lambda: len(_texts(late)) == 4)
    assert late.data_received()[-1]["data"] == "welcome" and "history" not in late.data_received()[-1]


async def test_oversized_invalid_and_flooding_messages_are_refused_with_an_error(connect):
    alice, bob = await _chatting(connect, "limits", "alice", "bob")

    def errors():
        return [m for m in alice.data if m["type"] == "error"]

    alice.send_data("x" * (16 * 1024), id="big")
    await alice.wait_for(lambda: errors())
    (err,) = errors()
    # (not parsed at all: no id)
    assert (err["code"], "id" in err) == ("message_too_large", False) and "16384" in err["message"], err
    for raw, why in (("not json", "not JSON"), ("[1, 2]", "JSON object"),
                     ('{"type": "data", "data": 5, "id": 7}', "data must be a string"),
                     ('{"type": "data", "data": "x", "id": [1]}', "id must be"),
                     ('{"type": "data", "data": "x", "to": "bob"}', "to must be a list"),
                     ('{"type": "data", "data": "\\ud800"}', "lone surrogate"),
                     ('{"type": "chat", "data": "x"}', "type must be 'data'")):
        alice.channels["reliable"].send(raw)
        await alice.wait_for(lambda n=len(errors()): len(errors()) > n)
        assert errors()[-1]["code"] == "invalid_message" and why in errors()[-1]["message"], (raw, errors()[-1])
        assert errors()[-1].get("id") == (7 if '"id": 7' in raw else None)
    alice.channels["reliable"].send(b"\x00binary")
    await alice.wait_for(lambda: "binary" in errors()[-1]["message"])
    assert [m for m in bob.data if m["type"] != "data"] == [] and _texts(bob) == []

    # a flood: 400 at once, over the burst of 150; those refused say so by id, the rest arrive in order
    before = len(errors())
    started = time.monotonic()
    for i in range(400):
        alice.send_data(f"flood {i}", id=i)
    await alice.wait_for(lambda: len(errors()) - before + len(_texts(bob)) == 400, timeout=30)
    elapsed = time.monotonic() - started
    refused = {e["id"] for e in errors()[before:]}
    assert all(e["code"] == "rate_limited" for e in errors()[before:])
    # the burst (150, less the 8 refused messages above, which counted too) and 50/s since
    accepted = 400 - len(refused)
    assert 142 <= accepted <= 142 + 50 * elapsed + 1, (accepted, elapsed)
    assert _texts(bob) == [f"flood {i}" for i in range(400) if i not in refused]


async def test_a_viewer_who_may_not_publish_media_chats_on_a_data_only_connection(make_server, connect):
    """A data-only publish offer (m=application alone) needs no media grant; media beside it does."""
    alice, viewer = await _chatting(connect, "viewer", "alice", "viewer")
    assert [m.kind for m in viewer.publisher.getTransceivers()] == []
    viewer.send_data("question from the audience")
    await alice.wait_for(lambda: _texts(alice) == ["question from the audience"])


async def test_data_beside_media_on_one_connection(server, connect):
    alice, bob = await _chatting(connect, "both", "alice", "bob", video=CounterVideo(96, 64))
    info, track = await bob.wait_track(kind="video", participant=alice.participant["id"])
    sink = Sink(track)
    alice.send_data("with video")
    await bob.wait_for(lambda: _texts(bob) == ["with video"])
    await sink.wait_frames(10, timeout=20)
    assert {(w, h) for _, w, h in sink.timeline[-10:]} == {(96, 64)}


async def test_the_session_summary_counts_messages_but_holds_no_content(make_server):
    server = await make_server(record_sessions="all")
    alice, bob = Client(server.url), Client(server.url)
    try:
        for c, name in ((alice, "alice"), (bob, "bob")):
            await c.connect()
            await c.join("summary", name)
            await c.publish(data=True)
            await c.wait_data_open()
        for i in range(3):
            alice.send_data(f"secret-{i}")
        bob.send_data("secret-reply", topic="other")
        await bob.wait_for(lambda: len(_texts(bob)) == 3)
        await alice.wait_for(lambda: len(alice.data_received()) == 1)
        await alice.leave()
        await bob.leave()
    finally:
        for c in (alice, bob):
            await c.close()
    cp = server.control
    records = []
    for _ in range(100):  # grace (0.5 s) + the writer's transaction
        records = [r for r in await list_sessions(cp.w3, cp.embedded.deployment.session_log)
                   if r.fields.get("roomId") == hex32(room_id("summary"))]
        if records:
            break
        await asyncio.sleep(0.1)
    (record,) = records
    document = await DirCidStore(f"{server.settings.data_dir}/cids").get(record.fields["cid"])
    doc = json.loads(document)
    assert doc["messages"] == {"count": 4, "perParticipant": {alice.participant["identity"]: 3,
                                                              bob.participant["identity"]: 1}}
    assert b"secret" not in document


async def test_a_hostile_sctp_packet_ends_only_the_senders_data_channels(server, connect):
    """An SCTP HEARTBEAT whose parameter says length 0 would make aiortc's parser spin forever: the
    whole server, every room, frozen by one packet from any participant. The guard aborts that
    participant's association instead; its media and everyone else's chat go on."""
    import struct

    from aiortc import rtcsctptransport as sctpmod

    from sfu.metrics import STATS

    mallory, alice, bob = await _chatting(connect, "hostile", "mallory", "alice", "bob", video=CounterVideo(96, 64))
    _, track = await alice.wait_track(kind="video", participant=mallory.participant["id"])
    sink = Sink(track)
    await sink.wait_frames(5, timeout=20)
    before = STATS.dropped.get("sctp_refused", 0)
    sctp = mallory.publisher.sctp
    header = struct.pack("!HHL", sctp._local_port, sctp._remote_port, sctp._remote_verification_tag)
    body = struct.pack("!BBHHH", 4, 0, 8, 1, 0)
    await sctp.transport._send_data(header + struct.pack("<L", sctpmod.crc32c(header + bytes(4) + body)) + body)
    await mallory.wait_for(lambda: mallory.channels["reliable"].readyState == "closed", timeout=10)
    assert STATS.dropped["sctp_refused"] == before + 1
    # the server still relays for the others, and still forwards mallory's video
    alice.send_data("still here")
    await bob.wait_for(lambda: _texts(bob) == ["still here"])
    frames = sink.frames
    await sink.wait_frames(frames + 10, timeout=20)


async def test_a_stalled_receiver_never_holds_up_the_room(server, connect):
    """Bob's client stops reading SCTP (no SACKs: the SFU's association to him can send nothing
    more). What waits for him is capped at data_max_buffered_bytes and the rest is dropped and
    counted; carol gets every message as if bob were not there."""
    from sfu.metrics import STATS

    alice, bob, carol = await _chatting(connect, "stalled", "alice", "bob", "carol")

    async def deaf(data: bytes) -> None:
        return None

    bob.publisher.sctp._handle_data = deaf
    before = STATS.dropped.get("data_overflow", 0)
    # 80 x 15 kB: 1.2 MB for bob, over his 1 MiB; 2 x 80 x 13 deliveries, within alice's share of
    # the room's budget (2,500 at once)
    text = "z" * 15_000
    for i in range(80):
        alice.send_data(f"{i:03}{text}")
    await carol.wait_for(lambda: len(_texts(carol)) == 80, timeout=60)
    assert [m[:3] for m in _texts(carol)] == [f"{i:03}" for i in range(80)]
    assert not [m for m in alice.data if m["type"] == "error"]
    endpoint = server.node.peers[bob.participant["id"]].data
    channel = endpoint.channels["reliable"]
    assert channel.bufferedAmount <= 1024 * 1024
    # everything beyond the cap (and what little the association itself holds in flight) was dropped
    assert endpoint.lost >= 80 - (1024 * 1024) // 15_000 - 3, endpoint.lost
    assert STATS.dropped["data_overflow"] - before == endpoint.lost
    assert _texts(bob) == []


async def test_a_grant_without_subscribe_sends_data_but_receives_none(server, connect):
    alice, bob = await _chatting(connect, "publish-only", "alice", "bob")
    alice.send_data("before")
    await bob.wait_for(lambda: _texts(bob) == ["before"])
    pub = Client(server.url)
    try:
        await pub.connect()
        grant = server.control.auth.grants.issue("publish-only", "announcer", can_subscribe=False)
        joined = await pub.join("publish-only", "announcer", grant=grant)
        assert joined["permissions"] == {"publish": True, "subscribe": False}
        await pub.publish(data=True)
        await pub.wait_data_open()
        pub.send_data("announcement")
        await alice.wait_for(lambda: _texts(alice) == ["announcement"])
        await bob.wait_for(lambda: _texts(bob) == ["before", "announcement"])
        alice.send_data("to everyone")
        alice.send_data("to the announcer", to=[pub.participant["id"], bob.participant["id"]])
        await bob.wait_for(lambda: _texts(bob) == ["before", "announcement", "to everyone", "to the announcer"])
        # relayed in one pass with bob's copies: had any been meant for the announcer, it would be here
        await asyncio.sleep(0.3)
        assert pub.data_received() == [] and not [m for m in alice.data if m["type"] == "error"]
    finally:
        await pub.close()
