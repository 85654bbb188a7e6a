"""VP9 from a Chromium publisher (the web client's `codec=vp9`: three simulcast layers, profile 0),
forwarded to a Firefox and a Chromium subscriber that each decode VP9 at the layer they asked for.
The SFU reads VP9's payload descriptor: key pictures start a subscriber and switch layers, each
layer's size comes from its key pictures' scalability structure, and the picture numbering stays
continuous across switches (sfu.rtp.vp9_descriptor, DownTrack)."""

from __future__ import annotations

import pytest

from tests.e2e.firefox.playback import (
    LAYERS,
    check_decoding,
    choose_quality,
    layer_size,
    measure,
    publisher,
    summary,
    wait_layer,
)

pytestmark = [pytest.mark.timeout(150)]


def _track(server, track_id: str):
    return next(rec for peer in server.node.peers.values() for rec in peer.tracks if rec.id == track_id)


async def test_chromium_publishes_vp9_firefox_and_chromium_decode_their_layers(server, firefox, browser):
    chrome = await browser(server, "vp9", "chromium", audio="0", codec="vp9")
    pub = await publisher(chrome)
    rec = _track(server, pub["video"])
    assert rec.codec_name == "VP9" and rec.simulcast and sorted(rec.layers) == ["f", "h", "q"]
    fx = await firefox(server, "vp9", "firefox", audio="0", camera="0")
    low = await browser(server, "vp9", "low", audio="0", camera="0")
    await choose_quality(fx, pub["participant"], "high")
    await choose_quality(low, pub["participant"], "low")
    for page, quality in ((fx, "high"), (low, "low")):
        await wait_layer(page, pub["participant"], chrome, LAYERS[quality][0])
    # a switch on a running subscription: Firefox goes down to medium, on h's next key picture
    await choose_quality(fx, pub["participant"], "medium")
    await wait_layer(fx, pub["participant"], chrome, LAYERS["medium"][0])
    (got_fx, got_low), (sent,) = await measure([(fx, pub["participant"]), (low, pub["participant"])], [chrome])
    print(summary("VP9 h -> Firefox", got_fx, sent["h"], pub["fps"]))
    print(summary("VP9 q -> Chromium", got_low, sent["q"], pub["fps"]))
    check_decoding("Firefox decoding Chromium's VP9 h layer", got_fx, "h", sent, pub["fps"])
    check_decoding("Chromium decoding Chromium's VP9 q layer", got_low, "q", sent, pub["fps"])
    # both decode VP9 (nobody fell back to another codec), and the publisher sends it
    for page in (fx, low):
        inbound = [s for s in (await page.evaluate("window.basement.stats()"))["inbound"] if s["kind"] == "video"]
        assert [s["codec"] for s in inbound] == ["video/VP9"], inbound
    outbound = (await chrome.evaluate("window.basement.stats()"))["outbound"]
    assert {o["codec"] for o in outbound if o["kind"] == "video"} == {"video/VP9"}, outbound
    # the SFU read the size of each layer it forwards from its key pictures' scalability structure
    sizes = {rid: (x.width, x.height) for rid, x in rec.layers.items()}
    for rid in ("q", "h"):
        assert rec.layers[rid].keyframes > 0 and layer_size({rid: sizes[rid]}, rid) == sizes[rid], sizes
