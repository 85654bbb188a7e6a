"""A signalling WebSocket that drops is resumed: same participant, nothing lost, nothing twice.

The subscriber talks to the server through a TCP proxy that can cut its connections as a network
failure would (tests/support/tcpproxy.py); its media (ICE/DTLS) goes straight to the SFU as before.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from signalling.protocol.client import Client, ServerError
from tests.support.media import CounterVideo, Sink, Tone
from tests.support.servers import native_only
from tests.support.tcpproxy import TcpProxy


@pytest.fixture
async def proxy(server):
    p = await TcpProxy(server.port).start()
    yield p
    await p.stop()


@pytest.fixture
def through_proxy(proxy, connect):
    """connect through the proxy (closed at teardown with the others)."""
    return lambda room, name, **kw: connect(room, name, url=proxy.url, **kw)


def numbers(client: Client) -> list[int]:
    return [m["n"] for m in client.messages if "n" in m]


async def test_cut_socket_resumes_same_participant_and_loses_nothing(server, connect, proxy, through_proxy):
    alice = await connect("r", "alice")
    bob = await through_proxy("r", "bob")
    await alice.publish(audio=Tone(), video=CounterVideo())
    _, video = await bob.wait_track(kind="video")
    sink = Sink(video, read_counters=True)
    await sink.wait_frames(20)

    assert proxy.cut() == 1
    # while bob is away: a join and a mute he must hear of, once, in order
    carol = await connect("r", "carol")
    await alice.mute("audio", True)
    t0 = time.monotonic()
    await bob.wait_for(lambda: bob.resumes == 1, timeout=5)
    resumed_in = time.monotonic() - t0
    assert resumed_in < 2.0, f"resumed after {resumed_in:.2f} s"
    joined = await bob.wait_message("participant_joined", participant={**carol.participant})
    muted = await bob.wait_message("track_muted", track=alice.published["audio"], muted=True)
    assert bob.messages.index(joined) < bob.messages.index(muted)

    # the same participant: nobody saw bob leave or join again, the server holds one bob
    assert not [m for m in alice.messages if m.get("type") == "participant_left"]
    assert [m["participant"]["name"] for m in alice.messages if m.get("type") == "participant_joined"] \
        == ["bob", "carol"]
    assert bob.participant["id"] in server.rooms.participants
    assert len(server.node.peers) == 3
    # every message number once, none skipped
    ns = numbers(bob)
    assert ns == list(range(1, len(ns) + 1)), ns
    # media never depended on the socket: it keeps decoding
    frames = sink.frames
    await sink.wait_frames(frames + 20)
    assert sink.sizes == {(320, 240)}
    # and the new socket works both ways
    reply = await bob.request({"type": "ping"})
    assert reply["received"] >= 1


async def test_request_in_flight_when_the_socket_drops_is_applied_once(server, connect, proxy, through_proxy):
    alice = await connect("r2", "alice")
    bob = await through_proxy("r2", "bob")
    await bob.publish(audio=Tone())
    track = bob.published["audio"]
    # cut right after the mute left: the server applies it once, whether or not it read it before
    # the cut (if not, the client sends it again after `resumed`), and the reply arrives on the new socket
    pending = asyncio.ensure_future(bob.request({"type": "mute", "track": track, "muted": True}))
    await asyncio.sleep(0)
    proxy.cut()
    reply = await asyncio.wait_for(pending, 5)
    assert reply == {**reply, "type": "muted", "track": track, "muted": True}
    await alice.wait_message("track_muted", track=track, muted=True)
    # sent while the socket was down: kept, and sent after the resume
    proxy.cut()
    second = await asyncio.wait_for(bob.request({"type": "mute", "track": track, "muted": False}), 5)
    assert second["muted"] is False
    await alice.wait_message("track_muted", track=track, muted=False)
    await asyncio.sleep(0.3)
    mutes = [m["muted"] for m in alice.messages if m.get("type") == "track_muted"]
    assert mutes == [True, False], mutes
    assert bob.resumes == 2


async def test_a_resume_while_the_old_socket_still_looks_open_takes_it_over(server, connect):
    """A phone on a new network comes back before the server noticed the old socket is dead."""
    alice = await connect("r3", "alice")
    bob = await connect("r3", "bob", resume=False)
    await alice.publish(audio=Tone())
    await alice.mute("audio", True)
    await bob.wait_message("track_muted", muted=True)
    old_ws = bob.ws
    token = bob.messages[0]["resume"]["token"]
    # the last two messages bob read are "lost": the new socket gets them again, same numbers, then the rest
    lost = [m for m in bob.messages if "n" in m][-2:]
    other = Client(server.url, resume=False)
    await other.connect()
    try:
        reply = await other.request({"type": "resume", "token": token, "n": lost[0]["n"] - 1})
        assert reply["type"] == "resumed" and reply["participant"]["id"] == bob.participant["id"]
        await other.wait_for(lambda: len(other.messages) >= 3)
        assert other.messages[1:3] == lost
        await alice.mute("audio", False)
        again = await other.wait_message("track_muted", muted=False)
        assert again["n"] == lost[-1]["n"] + 1
        await bob.wait_for(lambda: old_ws.closed, timeout=5)
        # still one bob, in the room, reachable on the new socket
        await alice.request({"type": "ping"})
        assert [p.id for p in server.rooms.participants.values()].count(bob.participant["id"]) == 1
        pong = await other.request({"type": "ping"})
        assert pong["type"] == "pong"
        # the token worked once: it is rotated in every `resumed`
        third = Client(server.url, resume=False)
        await third.connect()
        try:
            with pytest.raises(ServerError) as e:
                await third.request({"type": "resume", "token": token, "n": 0})
            assert e.value.code == "resume_failed"
        finally:
            await third.close()
        assert not [m for m in alice.messages if m.get("type") == "participant_left"]
    finally:
        await other.close()


async def test_no_resume_within_the_grace_period_leaves(make_server):
    server = await make_server(resume_grace_s=0.5)
    proxy = await TcpProxy(server.port).start()
    alice = Client(server.url)
    bob = Client(proxy.url)
    try:
        for c, name in ((alice, "alice"), (bob, "bob")):
            await c.connect()
            await c.join("r4", name)
        proxy.down = True
        proxy.cut()
        left = await alice.wait_message("participant_left", participant=bob.participant["id"], timeout=5)
        assert left["reason"] == "disconnected"
        await bob.wait_for(lambda: bob.resume_error is not None, timeout=5)
        assert bob.participant["id"] not in server.rooms.participants
        assert server.node.peers.keys() == {alice.participant["id"]}
    finally:
        for c in (alice, bob):
            await c.close()
        await proxy.stop()


async def test_clean_close_leaves_at_once(server, connect):
    alice = await connect("r5", "alice")
    bob = await connect("r5", "bob")
    await bob.ws.close()  # a close frame: the client is gone on purpose (a closed tab)
    t0 = time.monotonic()
    await alice.wait_message("participant_left", participant=bob.participant["id"], timeout=5)
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("token, n, why", [
    ("PA_nobody.secret", 0, "unknown"),
    (None, 0, "wrong secret"),
    (None, 10_000, "n never written"),
])
async def test_bad_resume_is_refused_and_a_gap_ends_the_participant(server, connect, token, n, why):
    alice = await connect("r6", "alice")
    bob = await connect("r6", "bob", resume=False)
    if token is None:
        real = bob.messages[0]["resume"]["token"]
        pid, secret = real.split(".")
        wrong = ("y" if secret[0] == "x" else "x") + secret[1:]  # one character off
        token = real if why != "wrong secret" else f"{pid}.{wrong}"
    other = Client(server.url, resume=False)
    await other.connect()
    try:
        with pytest.raises(ServerError) as e:
            await other.request({"type": "resume", "token": token, "n": n})
        assert e.value.code == "resume_failed", why
    finally:
        await other.close()
    gone = why == "n never written"  # the right token, but it cannot continue: bob is ended
    assert (bob.participant["id"] in server.rooms.participants) is not gone
    if gone:
        await alice.wait_message("participant_left", participant=bob.participant["id"], timeout=5)


async def test_participants_waiting_for_a_resume_are_capped_per_address(make_server):
    """Joining and dropping must not keep any number of participants in rooms (the open sockets of an
    address are capped, ws_max_per_address, but a dropped one frees its place)."""
    from signalling.protocol.edge import EDGE_STATS

    server = await make_server(ws_max_per_address=3, resume_grace_s=30)
    proxy = await TcpProxy(server.port).start()
    alice = Client(server.url)
    made = [alice]
    over_cap = EDGE_STATS.resume["over_cap"]
    try:
        await alice.connect()
        await alice.join("cap", "alice")
        for pair in range(2):  # two at a time: alice's socket and two more make the cap
            for i in range(2):
                c = Client(proxy.url, resume=False)
                made.append(c)
                await c.connect()
                await c.join("cap", f"p{pair}{i}")
            proxy.cut()
            await asyncio.sleep(0.3)
        # four dropped from one address: three wait for a resume, the fourth left at once
        left = await alice.wait_message("participant_left", timeout=5)
        assert left["participant"] == made[-1].participant["id"] or left["participant"] == made[-2].participant["id"]
        await asyncio.sleep(0.5)
        assert len([m for m in alice.messages if m.get("type") == "participant_left"]) == 1
        assert EDGE_STATS.resume["over_cap"] == over_cap + 1
        assert len(server.rooms.participants) == 4
    finally:
        for c in made:
            await c.close()
        await proxy.stop()


async def test_a_resume_whose_reply_was_lost_can_be_tried_again_with_the_same_token(server, connect, proxy):
    await connect("r7", "alice")
    bob = await connect("r7", "bob", resume=False)
    token = bob.messages[0]["resume"]["token"]
    first = Client(proxy.url, resume=False)
    await first.connect()
    reply = await first.request({"type": "resume", "token": token, "n": bob._n})
    assert reply["type"] == "resumed"
    proxy.cut()  # as if `resumed` never arrived: the client still holds only `token`
    await first.close()
    again = Client(server.url, resume=False)
    await again.connect()
    try:
        reply = await again.request({"type": "resume", "token": token, "n": bob._n})
        assert reply["type"] == "resumed" and reply["participant"]["id"] == bob.participant["id"]
        await again.request({"type": "ping"})  # heard on the new socket: the old token is spent now
        third = Client(server.url, resume=False)
        await third.connect()
        with pytest.raises(ServerError) as e:
            await third.request({"type": "resume", "token": token, "n": 0})
        assert e.value.code == "resume_failed"
        await third.close()
        # the new token still works
        fourth = Client(server.url, resume=False)
        await fourth.connect()
        assert (await fourth.request({"type": "resume", "token": reply["resume"]["token"], "n": 0}))["type"] \
            == "resumed"
        await fourth.close()
    finally:
        await again.close()


async def test_without_resumption_nothing_is_numbered_or_kept(make_server):
    server = await make_server(resume_grace_s=0)
    c = Client(server.url)
    try:
        await c.connect()
        joined = await c.join("off", "alice")
        assert "resume" not in joined and "n" not in joined
        assert server.rooms.participants[joined["participant"]["id"]].replay is None
    finally:
        await c.close()


@native_only  # signalling only
async def test_clients_ping_as_often_as_joined_tells_them(make_server):
    """`client_ping_interval_s`/`client_ping_timeout_s` reach the client in `joined.ping`, and it pings
    at that interval (the Python client's own is 10 s: a pong within 6 s is the setting's)."""
    server = await make_server(client_ping_interval_s=1.0, client_ping_timeout_s=0.5)
    c = Client(server.url)
    try:
        await c.connect()
        await c.join("pings", "p")
        joined = next(m for m in c.messages if m["type"] == "joined")
        assert joined["ping"] == {"interval_s": 1.0, "timeout_s": 0.5}
        assert c.ping_interval_s == 1.0
        started = time.monotonic()
        while not [m for m in c.messages if m["type"] == "pong"]:
            assert time.monotonic() - started < 6.0, "no ping at the interval `joined` gave"
            await asyncio.sleep(0.1)
    finally:
        await c.close()
