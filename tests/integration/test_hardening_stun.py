"""STUN that aioice's parser chokes on (attributes of the wrong length): a counted drop, never a
traceback in the event loop per datagram, and the connection it was aimed at goes on."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct

from aioice import stun

from sfu.metrics import STATS
from tests.support.candidates import host_candidates
from tests.support.media import Sink, Tone


def _malformed_requests(ufrag: str) -> list[bytes]:
    """Binding requests whose PRIORITY, ICE-CONTROLLING or ICE-CONTROLLED is cut short (with the
    header length adjusted, so only the attribute is wrong): aioice's decoders raise struct.error."""
    out = []
    for attr_type, value in ((0x0024, b"\x00\x01"), (0x802A, b"\x00\x00\x00\x07"), (0x8029, b"\x00\x01\x12")):
        msg = bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes={"USERNAME": f"{ufrag}:x"}))
        pad = b"\x00" * (-len(value) % 4)
        attr = attr_type.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value + pad
        body = msg[20:] + attr
        out.append(msg[:2] + len(body).to_bytes(2, "big") + msg[4:20] + body)
    return out


async def test_malformed_stun_at_a_media_port_is_a_counted_drop(server, connect, caplog):
    pub = await connect("stun", "pub")
    await pub.publish(audio=Tone())
    answer = next(m for m in pub.messages if m["type"] == "answer")["sdp"]
    host, port = host_candidates(answer)[0]
    ufrag = re.search(r"a=ice-ufrag:(\S+)", answer).group(1)
    datagrams = _malformed_requests(ufrag)
    for d in datagrams:  # the parser itself must fail on each, else this test proves nothing
        try:
            stun.parse_message(d)
        except (ValueError, struct.error):
            pass
        else:
            raise AssertionError(f"parsed: {d!r}")
    before = STATS.dropped.get("stun_malformed", 0)
    caplog.set_level(logging.ERROR, logger="asyncio")
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(50):
            for d in datagrams:
                stranger.sendto(d, (host, int(port)))
        await pub.wait_for(lambda: STATS.dropped.get("stun_malformed", 0) - before >= 150, timeout=10)
    finally:
        stranger.close()
    await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.name == "asyncio"], [r.getMessage() for r in caplog.records]
    # the publisher's connection is unharmed: a subscriber still gets its audio
    sub = await connect("stun", "sub")
    _, track = await sub.wait_track(kind="audio", timeout=30)
    await Sink(track).wait_frames(10, timeout=30)
