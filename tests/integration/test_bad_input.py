"""Malformed input at every network-facing parser: a precise error or a counted drop, never a crash."""

from __future__ import annotations

import asyncio
import json
import struct
import time

import aiohttp

from sfu.metrics import STATS
from tests.support import packets as P
from tests.support.media import CounterVideo, Sink, Tone

SDP_NO_MEDIA = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def _ws(server):
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(server.url.replace("http", "ws") + "/ws")
    return session, ws


async def _reply(ws) -> dict:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_signalling_rejects_bad_messages_precisely_and_keeps_the_connection(server):
    session, ws = await _ws(server)
    try:
        cases = [
            ("{not json", "bad_json", "not valid JSON"),
            ("[1, 2]", "bad_message", "JSON object"),
            ('{"no": "type"}', "bad_message", "'type'"),
            ('{"type": "dance"}', "unknown_type", "dance"),
            ('{"type": "offer", "target": "publisher", "sdp": "v=0"}', "not_joined", "join"),
            ('{"type": "join"}', "missing_field", "room"),
            ('{"type": "join", "room": "../etc"}', "bad_field", "room"),
            ('{"type": "join", "room": 5}', "bad_field", "room"),
            ('{"type": "join", "room": "demo\\n"}', "bad_field", "room"),
            ('{"type": "join", "room": "demo", "name": "a\\u0085b"}', "bad_field", "U+0085"),
            ('{"type": "join", "room": "demo", "name": "\\u202egnp.exe"}', "bad_field", "U+202E"),
            ("[" * 200_000, "bad_json", "nested deeper than"),
            ('{"type": "ping", "id": ' + "9" * 5000 + "}", "bad_json", "4300"),
            ('{"type": "mute", "track": "x", "muted": "yes"}', "bad_field", "muted"),
            ("x" * (300 * 1024), "too_large", "larger"),
        ]
        for raw, code, words in cases:
            await ws.send_str(raw)
            reply = await _reply(ws)
            assert reply["type"] == "error" and reply["code"] == code, (raw[:40], reply)
            assert words in reply["message"], reply
        await ws.send_bytes(b"\x00\x01")
        assert (await _reply(ws))["code"] == "bad_message"

        await ws.send_str(json.dumps({"type": "join", "room": "bad", "name": "x", "id": 7}))
        joined = await _reply(ws)
        assert joined["type"] == "joined" and joined["id"] == 7
        sdp_cases = [
            ("garbage", "invalid_sdp", "v=0"),
            (SDP_NO_MEDIA, "invalid_sdp", "no audio, video or application"),
            ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n", "invalid_sdp", ""),
        ]
        for i, (sdp, code, words) in enumerate(sdp_cases):
            await ws.send_str(json.dumps({"type": "offer", "target": "publisher", "sdp": sdp, "id": i}))
            reply = await _reply(ws)
            assert reply["type"] == "error" and reply["code"] == code and reply["id"] == i, reply
            assert words in reply["message"]
        await ws.send_str(json.dumps({"type": "answer", "target": "subscriber", "sdp": "v=0"}))
        assert (await _reply(ws))["code"] == "unexpected_answer"
        await ws.send_str(json.dumps({"type": "join", "room": "bad"}))
        assert (await _reply(ws))["code"] == "already_joined"
        await ws.send_str(json.dumps({"type": "trickle", "target": "sideways", "candidate": None}))
        assert (await _reply(ws))["code"] == "bad_field"
        await ws.send_str(json.dumps({"type": "mute", "track": "TR_nope", "muted": True}))
        assert (await _reply(ws))["code"] == "unknown_track"
        # no connection yet: that is said first, whatever the candidate
        await ws.send_str(json.dumps({"type": "trickle", "target": "publisher", "candidate": {"candidate": "x"}}))
        assert (await _reply(ws))["code"] == "unexpected_candidate"
        # still alive and answering
        await ws.send_str('{"type": "ping", "id": "p"}')
        pong = await _reply(ws)
        # (after the join every message is numbered, and a pong says how many the server has read)
        assert pong == {"type": "pong", "id": "p", "received": pong["n"] - 1, "n": pong["n"]}
        assert not ws.closed
    finally:
        await ws.close()
        await session.close()


def _rtp(ssrc: int, seq: int, ext: bytes = b"", payload: bytes = b"\x10\x00\x00") -> bytes:
    return P.rtp(96, seq, 1234, ssrc, payload, ext=ext)


async def test_garbage_rtp_and_rtcp_are_counted_drops_and_others_keep_receiving(server, connect):
    pub = await connect("garbage", "pub")
    await pub.publish(audio=Tone(), video=CounterVideo(160, 120))
    sub = await connect("garbage", "sub")
    _, track = await sub.wait_track(kind="video")
    sink = Sink(track)
    await sink.wait_frames(10)
    peer = server.node.peers[pub.participant["id"]]
    ingress, transport = peer.ingress, peer.publisher
    before = dict(STATS.dropped)
    media_ssrc = next(layer.ssrc for rec in ingress.tracks.values() if rec.kind == "video"
                      for layer in rec.layers.values())
    bad = [
        b"",
        b"\x80",
        bytes(11),
        b"\x40" + bytes(15),  # version 1
        struct.pack("!BBHII", 0x8F, 96, 1, 1, media_ssrc),  # 15 CSRCs, none present
        _rtp(media_ssrc, 1, ext=b"\xbe\xde\xff\xff"),  # extension claims 256 KiB
        _rtp(media_ssrc, 1, ext=b"\xbe\xde", payload=b""),  # extension header cut short
        bytes([0xA0]) + _rtp(media_ssrc, 1)[1:-1] + b"\xff",  # padding longer than the packet
        _rtp(0xDEADBEEF, 1),  # nobody announced this SSRC
    ]
    now = time.monotonic()
    for packet in bad:
        ingress.on_rtp(packet, now)
    for junk in (b"", b"\x81\xc9", b"\x80\xc8\x00\x06" + bytes(8), bytes(range(200))):
        transport._rtcp_in(junk)
    dropped = {k: v - before.get(k, 0) for k, v in STATS.dropped.items() if v != before.get(k, 0)}
    assert dropped.get("truncated_header", 0) >= 3
    assert dropped.get("bad_version", 0) >= 1
    assert dropped.get("bad_extension_length", 0) >= 1
    assert dropped.get("truncated_extension", 0) >= 1
    assert dropped.get("bad_padding", 0) >= 1
    assert dropped.get("unknown_ssrc", 0) >= 1
    assert "internal_error" not in dropped
    assert transport.rtcp_dropped >= 3
    # the other participant never noticed
    frames = sink.frames
    await sink.wait_frames(frames + 15)
