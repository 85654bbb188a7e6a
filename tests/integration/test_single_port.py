"""Single-port mode (`ice_udp_port`, sfu.udp_mux): every participant's media on one UDP port."""

from __future__ import annotations

import asyncio
import os
import re
import socket

from aioice import stun

from sfu.metrics import STATS
from signalling.ports import free_port
from tests.support.candidates import host_candidates
from tests.support.media import CounterVideo, Sink, Tone


def _udp_ports_of_this_process() -> list[int]:
    """Local ports of this process's UDP sockets (the server runs in it), from /proc."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    with open("/proc/self/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[9] in inodes:
                ports.append(int(cols[1].split(":")[1], 16))
    return ports


async def test_ten_participants_share_one_udp_port_and_all_decode(make_server):
    port = free_port()
    srv = await make_server(ice_udp_port=port)
    from signalling.protocol.client import Client

    clients: list[Client] = []
    try:
        for i in range(10):
            c = Client(srv.url)
            clients.append(c)
            await c.connect()
            await c.join("one-port", f"p{i}")
        # three publish a camera and a microphone; everyone receives them
        publishers = clients[:3]
        await asyncio.gather(*(c.publish(audio=Tone(), video=CounterVideo(96, 64)) for c in publishers))
        for c in publishers:
            answer = next(m for m in c.messages if m["type"] == "answer")
            assert {p for _, p in host_candidates(answer["sdp"])} == {port}, answer["sdp"]
        sinks = []
        for c in clients:
            for pub in publishers:
                if pub is c:
                    continue
                _, track = await c.wait_track(kind="video", participant=pub.participant["id"], timeout=30)
                sinks.append(Sink(track))
            offer = next(m for m in c.messages if m["type"] == "offer")
            assert {p for _, p in host_candidates(offer["sdp"])} == {port}, offer["sdp"]
        # 27 video streams decode: 10 frames each, pictures of the published size
        for sink in sinks:
            await sink.wait_frames(10, timeout=30)
            assert sink.sizes == {(96, 64)}, sink.sizes
        # the server's media sockets all have the one port: the shared one and a connected one per
        # transport (10 subscribers + 3 publishers), none elsewhere
        mine = [p for p in _udp_ports_of_this_process() if p == port]
        assert len(mine) == 1 + 13, mine
    finally:
        for c in clients:
            await c.close()


async def test_what_the_port_gets_from_strangers_is_dropped_and_counted(make_server):
    port = free_port()
    srv = await make_server(ice_udp_port=port)
    from signalling.protocol.client import Client

    c = Client(srv.url)
    try:
        await c.connect()
        await c.join("strangers", "p")
        await c.publish(audio=Tone())
        before = STATS.dropped.get("mux_unmatched", 0)
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.1", 0))
        # garbage, RTP, DTLS, a STUN request naming nobody, and one naming a real transport's ufrag
        # but signed with the wrong password: none may reach a transport
        offer_ufrag = re.search(r"a=ice-ufrag:(\S+)", next(m for m in c.messages if m["type"] == "answer")["sdp"])
        assert offer_ufrag is not None
        forged = stun.Message(stun.Method.BINDING, stun.Class.REQUEST,
                              attributes={"USERNAME": f"{offer_ufrag.group(1)}:x"})
        forged.add_message_integrity(b"not the password")
        unsigned = stun.Message(stun.Method.BINDING, stun.Class.REQUEST,
                                attributes={"USERNAME": f"{offer_ufrag.group(1)}:x"})
        nobody = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes={"USERNAME": "nobody:x"})
        datagrams = [b"", b"\x00", os.urandom(300), b"\x80" + os.urandom(200), b"\x16\xfe\xfd" + os.urandom(60),
                     bytes(forged), bytes(unsigned), bytes(nobody), bytes(forged)[:25]]
        for d in datagrams:
            stranger.sendto(d, ("127.0.0.1", port))
        await c.wait_for(lambda: STATS.dropped.get("mux_unmatched", 0) - before >= len(datagrams), timeout=10)
        assert STATS.dropped.get("mux_unmatched", 0) - before == len(datagrams)
        # the participant's own transport still works: a second participant receives its audio
        d = Client(srv.url)
        try:
            await d.connect()
            await d.join("strangers", "q")
            _, track = await d.wait_track(kind="audio", timeout=30)
            await Sink(track).wait_frames(10, timeout=30)
        finally:
            await d.close()
        stranger.close()
    finally:
        await c.close()


async def test_a_port_in_use_is_an_error_at_startup(make_server):
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))  # no SO_REUSEPORT: nobody may share it
    try:
        try:
            await make_server(ice_udp_port=taken.getsockname()[1])
        except OSError as e:
            assert f"port {taken.getsockname()[1]}" in str(e) and "ice_udp_port" in str(e)
        else:
            raise AssertionError("the server started on a UDP port another socket holds")
    finally:
        taken.close()
