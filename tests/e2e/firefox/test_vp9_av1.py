"""VP9 and AV1 from a Chromium publisher. VP9 simulcast (the web client's `codec=vp9`: three layers,
profile 0) to a Firefox and a Chromium subscriber that each decode VP9 at the layer they asked for:
the SFU reads VP9's payload descriptor (key pictures start a subscriber and switch layers, each
layer's size comes from its key pictures' scalability structure, the picture numbering stays
continuous across switches; sfu.rtp.vp9_descriptor, DownTrack). VP9 and AV1 SVC (`svc=L3T3_KEY`):
three subscribers decode three sizes from one stream (AV1's layers from the dependency descriptor,
sfu.dependency_descriptor), and VP9's end-to-end encrypted."""

from __future__ import annotations

import json

import pytest

from sfu.metrics import STATS
from signalling.access.gating import RoomConfig
from tests.e2e.firefox.playback import (
    LAYERS,
    MIN_ENCODED_SHARE,
    TOLERANCE,
    check_decoding,
    choose_quality,
    inbound_video,
    layer_size,
    measure,
    publisher,
    summary,
    wait_layer,
)
from tests.support.browser import poll
from tests.support.servers import native_only

pytestmark = [pytest.mark.timeout(150)]

PASSPHRASE = "correct horse battery staple"


def _track(server, track_id: str):
    return next(rec for peer in server.node.peers.values() for rec in peer.tracks if rec.id == track_id)


# One run: what each data path does to VP9 packets (descriptor, key pictures, switches, picture
# numbering) runs on both paths in tests/unit/sfu (test_vp9, test_downtrack_vp9, the native parity
# tests); the SVC test below runs on both.
@native_only
@pytest.mark.parametrize("codec", ["vp9", "av1"])
async def test_chromium_publishes_simulcast_firefox_and_chromium_decode_their_layers(server, firefox, browser, codec):
    """VP9 or AV1 simulcast (each layer `L1T3`). AV1: each layer is its own stream with its own
    dependency structure and frame numbers, and a switch lands on the other layer's key frame."""
    chrome = await browser(server, "vp9", "chromium", audio="0", codec=codec)
    pub = await publisher(chrome)
    rec = _track(server, pub["video"])
    mime = f"video/{codec.upper()}"
    assert rec.codec_name == codec.upper() and rec.simulcast and sorted(rec.layers) == ["f", "h", "q"]
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
    print(summary(f"{codec} h -> Firefox", got_fx, sent["h"], pub["fps"]))
    print(summary(f"{codec} q -> Chromium", got_low, sent["q"], pub["fps"]))
    check_decoding(f"Firefox decoding Chromium's {codec} h layer", got_fx, "h", sent, pub["fps"])
    check_decoding(f"Chromium decoding Chromium's {codec} q layer", got_low, "q", sent, pub["fps"])
    # both decode the codec (nobody fell back to another), and the publisher sends it
    for page in (fx, low):
        inbound = [s for s in (await page.evaluate("window.basement.stats()"))["inbound"] if s["kind"] == "video"]
        assert [s["codec"] for s in inbound] == [mime], inbound
    outbound = (await chrome.evaluate("window.basement.stats()"))["outbound"]
    assert {o["codec"] for o in outbound if o["kind"] == "video"} == {mime}, outbound
    # the SFU read the size of each layer it forwards from its key frames (VP9's scalability
    # structure, AV1's dependency structure)
    sizes = {rid: (x.width, x.height) for rid, x in rec.layers.items()}
    for rid in ("q", "h"):
        assert rec.layers[rid].keyframes > 0 and layer_size({rid: sizes[rid]}, rid) == sizes[rid], sizes


def _coded(size: tuple[int, int]) -> tuple[int, int]:
    """A spatial layer's size as decoders report it: odd sides rounded up to even (240x135 -> 240x136;
    libvpx codes it so, and 4:2:0 AV1 from libaom decodes so)."""
    return (size[0] + (size[0] & 1), size[1] + (size[1] & 1))


async def _decoding(page, participant: str, size: tuple[int, int], what: str, timeout: float = 30.0) -> dict:
    """Wait until `page` decodes `participant`'s video at `size` (or as coded), and keeps decoding; its
    inbound stats."""
    seen: list = []

    async def at_size() -> bool:
        s = await inbound_video(page, participant)
        seen.append(s and (s.get("framesDecoded"), s.get("frameWidth"), s.get("frameHeight")))
        # (dav1d in Chromium reports 240x135 as coded; Firefox, and libvpx anywhere, 240x136)
        return bool(s and (s.get("frameWidth"), s.get("frameHeight")) in (size, _coded(size)) and len(seen) > 1
                    and seen[-2] and (seen[-2][0] or 0) < (s.get("framesDecoded") or 0))

    try:
        await poll(at_size, what, timeout=timeout)
    except TimeoutError:
        raise TimeoutError(f"{what}: not decoding at {size} in {timeout} s; last (frames, w, h) {seen[-3:]}") from None
    return await inbound_video(page, participant)


# On the native path (where AV1's picture goes into C from the Python ingress, and VP9's descriptor
# is read in C); what each path does to SVC packets is compared packet for packet in tests/unit/sfu.
@native_only
@pytest.mark.parametrize("codec,e2ee", [("vp9", False), ("av1", False), pytest.param("vp9", True, id="vp9-e2ee")])
async def test_svc_three_subscribers_decode_three_sizes_from_one_stream(server, firefox, browser, codec, e2ee):
    """Chromium publishes one VP9 or AV1 stream with three spatial layers (`svc=L3T3_KEY`); a low, a
    medium and a high subscriber each decode their layer's size from it, at the publisher's frame
    rate. A switch down is taken at the next picture: no key picture asked for, no freeze. VP9's
    layers are in its payload descriptor, AV1's in the dependency descriptor header extension (whose
    structure, on key frames, needs the two-byte extension form: a=extmap-allow-mixed both ways).

    `e2ee`: the same in a room that requires end-to-end encryption (docs/e2ee.md), every frame of
    every spatial layer SFrame-encrypted whole: what the SFU reads of VP9 is all in its payload
    descriptor."""
    join = {}
    if e2ee:
        await server.control.registry.put(RoomConfig("svc", e2ee="required"))
        join = {"before_join": f"document.querySelector('#e2ee-passphrase').value = {json.dumps(PASSPHRASE)}"}
    chrome = await browser(server, "svc", "chromium", audio="0", codec=codec, svc="L3T3_KEY", **join)
    pub = await publisher(chrome)
    rec = _track(server, pub["video"])
    stream = rec.layers[""]
    pages = {"low": await firefox(server, "svc", "low", audio="0", camera="0", **join),
             "medium": await firefox(server, "svc", "medium", audio="0", camera="0", **join),
             "high": await browser(server, "svc", "high", audio="0", camera="0", **join)}
    for quality, page in pages.items():
        await choose_quality(page, pub["participant"], quality)

    async def three_layers() -> bool:
        return len(stream.spatial_sizes) == 3

    # (with subscribers: dynacast stops the encoder while nobody subscribes, and Chromium's VP9 key
    # pictures list only the spatial layers it encodes, fewer while its bandwidth estimate ramps up)
    await poll(three_layers, "the key picture's three spatial layers", timeout=30)
    sizes = stream.spatial_sizes
    assert rec.codec_name == codec.upper() and not rec.simulcast and sizes[2] == (960, 540), sizes
    for sid, (quality, page) in enumerate(pages.items()):
        await _decoding(page, pub["participant"], sizes[sid], f"the {quality} subscriber")
    # (E2EE: frames that came before a page had derived the key were dropped, counted undecryptable;
    # from here on, with every key in place, not one frame may fail)
    e2ee_before = [await page.evaluate("window.basement.e2ee") for page in pages.values()] if e2ee else []
    decoded, (sent,) = await measure([(page, pub["participant"]) for page in pages.values()], [chrome])
    for (quality, _), got in zip(pages.items(), decoded):
        print(f"{codec} SVC -> {quality}: {got.fps:.1f} fps at {got.size} (camera {pub['fps']}, encoded {sent})")
    for sid, ((quality, _), got) in enumerate(zip(pages.items(), decoded)):
        assert got.size == got.size_before == _coded(sizes[sid]), (quality, got)
        # the publisher counts a frame per spatial layer: its picture rate is a third of that, and
        # every subscriber decodes a frame per picture (the top one it gets)
        pictures = sent[""].fps / len(sizes)
        assert abs(got.fps - pictures) <= TOLERANCE * pictures, (quality, got.fps, pictures)
        assert pictures >= MIN_ENCODED_SHARE * pub["fps"], (pictures, pub["fps"])
    # one stream, one encoding: the subscribers' shares are the SFU's doing
    outbound = [o for o in (await chrome.evaluate("window.basement.stats()"))["outbound"] if o["kind"] == "video"]
    assert len(outbound) == 1 and outbound[0]["codec"] == f"video/{codec.upper()}", outbound
    for page in pages.values():  # nobody fell back to another codec
        inbound = await inbound_video(page, pub["participant"])
        assert inbound["codec"] == f"video/{codec.upper()}", inbound
    if e2ee:  # (frames that do not decrypt are dropped before the decoder: what decoded was decrypted)
        assert rec.info()["encryption"] == "sframe"
        assert (await chrome.evaluate("window.basement.e2ee"))["encrypted"] > 0
        for page, before in zip(pages.values(), e2ee_before):
            state = await page.evaluate("window.basement.e2ee")
            assert state["decrypted"] > before["decrypted"], (before, state)
            assert state["undecryptable"] == before["undecryptable"], (before, state)

    high = pages["high"]
    before = await inbound_video(high, pub["participant"])
    plis = STATS.plis_out
    await choose_quality(high, pub["participant"], "low")
    after = await _decoding(high, pub["participant"], sizes[0], "the high subscriber, down to low")
    assert STATS.plis_out == plis, "a switch down asked the publisher for a key picture"
    assert after["freezeCount"] == before["freezeCount"], (before, after)


@native_only
async def test_firefox_publishes_av1_simulcast_and_chromium_decodes_it(server, firefox, browser):
    """Firefox ESR 153 encodes AV1 (`codec=av1`: three simulcast layers, each with its dependency
    descriptor); a Chromium subscriber asking for high decodes the top layer at the camera's rate."""
    fx = await firefox(server, "fxav1", "firefox", audio="0", codec="av1")
    pub = await publisher(fx)
    rec = _track(server, pub["video"])
    assert rec.codec_name == "AV1" and rec.simulcast and sorted(rec.layers) == ["f", "h", "q"]
    chrome = await browser(server, "fxav1", "chromium", audio="0", camera="0")
    await choose_quality(chrome, pub["participant"], "high")
    await wait_layer(chrome, pub["participant"], fx, LAYERS["high"][0])
    (got,), (sent,) = await measure([(chrome, pub["participant"])], [fx])
    print(summary("Firefox AV1 f -> Chromium", got, sent["f"], pub["fps"]))
    check_decoding("Chromium decoding Firefox's AV1 f layer", got, "f", sent, pub["fps"])
    inbound = await inbound_video(chrome, pub["participant"])
    assert inbound["codec"] == "video/AV1", inbound
    # each layer's size came from its own key frames' dependency structure
    layers = sorted(rec.layers.values(), key=lambda x: x.index)
    assert [(x.width, x.height) for x in layers] == [(240, 135), (480, 270), (960, 540)]
    assert all(x.dd_structure is not None for x in rec.layers.values())


# One run (AV1, native path): the spatial dynacast is the selector's policy and the web client's
# reaction, the same for VP9 (tests/unit/sfu/test_downtrack_vp9.py has the policy on both paths).
@native_only
async def test_svc_dynacast_encodes_only_the_spatial_layers_anyone_asked_for(server, browser):
    """One subscriber asks for low: the publisher goes down to one spatial layer (L1T3 at a quarter
    of the camera's size) and the subscriber keeps decoding it. It asks for high: all three come
    back (L3T3_KEY at full size) and it decodes the top one."""
    chrome = await browser(server, "svcdyn", "chromium", audio="0", codec="av1", svc="L3T3_KEY")
    pub = await publisher(chrome)
    stream = _track(server, pub["video"]).layers[""]

    async def encoding(mode: str, width: int) -> dict | None:
        outbound = [o for o in (await chrome.evaluate("window.basement.stats()"))["outbound"] if o["kind"] == "video"]
        return outbound[0] if outbound and outbound[0]["scalabilityMode"] == mode and \
            outbound[0]["frameWidth"] == width else None

    watcher = await browser(server, "svcdyn", "watcher", audio="0", camera="0")
    await choose_quality(watcher, pub["participant"], "low")
    await poll(lambda: encoding("L1T3", 240), "the publisher encoding one spatial layer at 240 wide", timeout=30)
    await _decoding(watcher, pub["participant"], (240, 135), "the low subscriber on the one layer left")
    assert stream.spatial_sizes == ()  # what the key frame's structure now says: one layer
    await choose_quality(watcher, pub["participant"], "high")
    await poll(lambda: encoding("L3T3_KEY", 960), "the publisher encoding all three spatial layers again",
               timeout=30)
    await _decoding(watcher, pub["participant"], (960, 540), "the subscriber back on the top layer")
    assert len(stream.spatial_sizes) == 3
