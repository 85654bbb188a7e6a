"""Simulcast from a Firefox publisher: three layers offered with `sendEncodings` (rids q, h, f, as
the web client does for Chromium), a low, a medium and a high subscriber, each decoding its layer's
size at the rate Firefox encodes it.

All three layers are wanted on purpose: Firefox then pads its send rate up to what its layers are
allocated, as RTX packets with payload on the lowest layer (~50 packets/s with no NACK behind them)
for as long as its encoders produce less, which with the fake camera's simple picture is always.
With only q and f wanted it barely pads, and a test without h would miss that. A server that counts
the padding as q's media rate sees q at ~3x its real rate, and thins or pauses q's subscribers.
"""

from __future__ import annotations

from typing import Any

import pytest

from sfu.metrics import STATS
from tests.e2e.firefox.playback import LAYERS, check_decoding, choose_quality, measure, publisher, summary, wait_layer

pytestmark = [pytest.mark.timeout(120)]

# the web client's sendEncodings (signalling/web/static/publish.js)
MAX_BITRATE = {"q": 150_000, "h": 500_000, "f": 1_500_000}



def layer_rates(server: Any, track: str) -> dict[str, float]:
    return next(({rid: x.bitrate for rid, x in rec.layers.items()} for peer in server.node.peers.values()
                 for rec in peer.tracks if rec.id == track), {})


def server_view(server: Any, track: str) -> str:
    """What the SFU (in this process) makes of the track: for failure messages, never asserted on."""
    layers = {}
    downtracks = []
    for peer in server.node.peers.values():
        for rec in peer.tracks:
            if rec.id == track:
                layers = {rid: f"{x.bitrate / 1000:.0f} kbit/s" for rid, x in sorted(rec.layers.items())}
        for dt in peer.downtracks.values():
            if dt.track.id == track:
                downtracks.append({"subscriber": peer.name, "current": dt.current and dt.current.rid,
                                   "max_tid": dt.max_tid, "remb": dt.estimate_bps, "paused": dt.pause_reason})
    return (f"server: layers {layers}, downtracks {downtracks}, RTX unwrapped {STATS.rtx_unwrapped}, "
            f"NACKs sent {STATS.nacks_out}")


async def test_firefox_simulcast_each_subscriber_gets_its_layer(server, firefox):
    fx = await firefox(server, "fx-d", "publisher", audio="0")
    pub = await publisher(fx)
    encodings = await fx.evaluate("window.basement.senderEncodings()")
    assert [(e["rid"], e["scaleResolutionDownBy"]) for e in encodings] == [("q", 4), ("h", 2), ("f", 1)], encodings
    subs = {q: await firefox(server, "fx-d", q, audio="0", camera="0") for q in ("low", "medium", "high")}
    for quality, page in subs.items():
        await choose_quality(page, pub["participant"], quality)
    try:
        for quality, page in subs.items():
            await wait_layer(page, pub["participant"], fx, LAYERS[quality][0])
        decoded, (sent,) = await measure([(page, pub["participant"]) for page in subs.values()], [fx])
        for quality, got in zip(subs, decoded):
            rid, _ = LAYERS[quality]
            print(summary(f"{rid} -> {quality}", got, sent[rid], pub["fps"]))
        for quality, got in zip(subs, decoded):
            rid, _ = LAYERS[quality]
            check_decoding(f"the {quality} subscriber", got, rid, sent, pub["fps"])
        # the server reads each layer at its media rate: Firefox's RTX padding on q (about 3x q's
        # media) is not counted as q's (the selector would otherwise thin or pause q's subscribers)
        rates = layer_rates(server, pub["video"])
        for rid, cap in MAX_BITRATE.items():
            assert 0 < rates[rid] <= 1.3 * cap, f"layer {rid} read at {rates[rid] / 1000:.0f} kbit/s"
        # and none was paused on the way: the server never told one so
        for quality, page in subs.items():
            paused = await page.evaluate("window.basement.events.filter(m => m.type === 'paused' && m.paused)")
            assert paused == [], f"the {quality} subscriber was paused: {paused}"
    except (AssertionError, TimeoutError) as e:
        raise type(e)(f"{e}\n{server_view(server, pub['video'])}") from None
    print(server_view(server, pub["video"]))
