"""Fuzz the publish path's SDP handling before aiortc applies it: sfu/sdp.py.

Input: the `sdp` string of an `offer` message, as bytes. Invalid UTF-8 is decoded with
surrogateescape, because a JSON string can carry any code point, lone surrogates included.
Path: `check_offer` (which runs aiortc's `SessionDescription.parse` and our a=rid / a=extmap / a=ssrc
scan), then `add_simulcast_recv` on a real answer with the rids the offer announced (what
`Peer._answer` does).
Contract: `check_offer` raises only `SdpError`; an accepted offer announces at most three simulcast
rids per m-line (the SFU forwards up to three layers; each rid becomes a layer, an answer line and a
`layers` entry sent to every participant) and each rid is RFC 8851 `rid-id` syntax (letters,
digits, '-', '_'), so it cannot inject syntax into our answer's `a=simulcast` line; munging the
answer never raises.
"""

from __future__ import annotations

import re

import aiortc.sdp
from _harness import Finding, instrument_functions, instrumented, main

with instrumented():
    from sfu import sdp

instrument_functions(aiortc.sdp.SessionDescription.parse, aiortc.sdp.grouplines, aiortc.sdp.parse_attr,
                     aiortc.sdp.parameters_from_sdp, aiortc.sdp.ipaddress_from_sdp, aiortc.sdp.candidate_from_sdp,
                     aiortc.sdp.parse_group)

MAX_RIDS = 3
RID_ID = re.compile(r"[A-Za-z0-9_-]+")

ANSWER = "\r\n".join([
    "v=0", "o=- 3900000000 3900000000 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "a=msid-semantic:WMS *",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=recvonly", "a=mid:0", "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 0.0.0.0", "a=recvonly", "a=mid:1", "a=rtcp-mux",
    "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", "",
])


def test_one(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        info = sdp.check_offer(text)
    except sdp.SdpError:
        return
    for m in info.media:
        if len(m.rids) > MAX_RIDS:
            raise Finding(f"offer accepted with {len(m.rids)} rids on mid {m.mid!r} (at most {MAX_RIDS} layers)")
        bad = [r for r in m.rids if not RID_ID.fullmatch(r)]
        if bad:
            raise Finding(f"offer accepted with rid {bad[0][:40]!r}, not RFC 8851 rid-id syntax")
    # our answer numbers its m-lines 0 (audio) and 1 (video); map the offer's rids onto them
    answer_mid = {"audio": "0", "video": "1"}
    sdp.add_simulcast_recv(ANSWER, {answer_mid[m.kind]: m.rids for m in info.media})


if __name__ == "__main__":
    main(test_one)
