"""The web client (signalling/web/static) in headless Chromium, against a real server and aiortc peers.

Chromium uses its fake camera and microphone; everything stays on 127.0.0.1 (run inside the
loopback-only network namespace, as `make test` does).
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import pytest

from tests.support.browser import Browser, poll
from tests.support.media import CounterVideo, Sink, Tone, decoded_sizes

pytestmark = pytest.mark.timeout(120)  # chromium comes with `make test` (system-deps): never skipped

async def joined(page: Browser) -> dict[str, Any]:
    """Wait until the page has joined and published audio + video; returns window.basement's view."""
    await page.wait_for("window.basement && window.basement.state === 'joined'", timeout=30)
    return await page.wait_for(
        "window.basement.published.video && window.basement.published.audio && "
        "({participant: window.basement.participant, published: window.basement.published})", timeout=30)


async def inbound(page: Browser, participant: str, kind: str) -> dict[str, Any] | None:
    stats = await page.evaluate("window.basement.stats()")
    for s in stats["inbound"]:
        if s["participant"] == participant and s["kind"] == kind:
            return s
    return None


async def frames_decoded(page: Browser, participant: str) -> int:
    s = await inbound(page, participant, "video")
    return (s or {}).get("framesDecoded") or 0


async def wait_decoding(page: Browser, participant: str, more: int = 15, timeout: float = 30.0) -> int:
    """Wait until the page decodes `more` new video frames of `participant`; returns the count."""
    start = await frames_decoded(page, participant)

    async def grew():
        n = await frames_decoded(page, participant)
        return n if n >= start + more else None

    return await poll(grew, f"frames of {participant} decoded in the page (from {start})", timeout)


async def media_both_ways(page: Browser, peer: Any, me: dict[str, Any], frames: int = 10) -> Sink:
    """The page shows `peer` (an aiortc Client) by name and decodes its video, and `peer` decodes the
    page's: returns the Sink on the latter, to watch it go on."""
    peer_id = peer.participant["id"]
    assert await page.wait_for(tile_name_js(peer_id)) == peer.participant["name"]
    await wait_decoding(page, peer_id, more=frames)
    _, video = await peer.wait_track(kind="video", participant=me["id"], timeout=30)
    sink = Sink(video)
    await sink.wait_frames(frames)
    return sink


def tile_name_js(participant: str) -> str:
    sel = json.dumps(f'#grid .tile.remote[data-participant="{participant}"] .name')
    return f"(document.querySelector({sel}) || {{}}).textContent || null"


def events_js(mtype: str) -> str:
    return f"window.basement.events.filter(m => m.type === {json.dumps(mtype)})"


async def test_chromium_and_aiortc_peer_see_and_hear_each_other(server, connect, browser):
    alice = await connect("web1", "alice")
    await alice.publish(audio=Tone(), video=CounterVideo())
    page = await browser(server, "web1", "chromium")
    me = (await joined(page))["participant"]
    assert me["name"] == "chromium"
    alice_id = alice.participant["id"]

    # the page: a tile labelled with alice's name, her video decoding, her audio arriving
    assert await page.wait_for(tile_name_js(alice_id)) == "alice"
    await wait_decoding(page, alice_id, more=15)
    n1 = await frames_decoded(page, alice_id)
    await wait_decoding(page, alice_id, more=15)  # still going
    video = await inbound(page, alice_id, "video")
    assert (video["frameWidth"], video["frameHeight"]) == (320, 240)
    audio = await poll(lambda: inbound(page, alice_id, "audio"), "alice's audio in the page")
    await poll(lambda: _bytes(page, alice_id), "audio bytes received in the page")
    assert video["framesDecoded"] > n1
    remote = await page.evaluate("window.basement.remote")
    assert {(r["participant"], r["name"], r["kind"]) for r in remote} == {
        (alice_id, "alice", "audio"), (alice_id, "alice", "video")}
    assert audio["track"] == alice.published["audio"]

    # adaptive subscription: the page reported the tile's rendered size for alice's video
    subs = await page.wait_for(f"{events_js('subscription')}.filter(m => m.track === "
                               f"{json.dumps(alice.published['video'])}).length > 0 && {events_js('subscription')}")
    assert subs[0]["paused"] is False

    # alice receives the page's camera (a real VP8 stream from Chromium) and decodes it
    info, track = await alice.wait_track(kind="video", participant=me["id"], timeout=30)
    assert info["name"] == "chromium" and info["codec"].lower() == "vp8"
    await decoded_sizes(track, 20)
    await alice.wait_track(kind="audio", participant=me["id"], timeout=15)
    # the page publishes simulcast: three VP8 layers, announced by the server as such
    assert info["simulcast"] is True and sorted(info["layers"]) == ["f", "h", "q"], info
    encodings = await page.evaluate("window.basement.senderEncodings()")
    assert [(e["rid"], e["scaleResolutionDownBy"]) for e in encodings] == [("q", 4), ("h", 2), ("f", 1)]


async def _bytes(page: Browser, participant: str) -> int:
    s = await inbound(page, participant, "audio")
    return (s or {}).get("bytesReceived") or 0


async def test_page_follows_participants_leaving_and_joining(server, connect, browser):
    alice = await connect("web2", "alice")
    await alice.publish(audio=Tone(), video=CounterVideo())
    page = await browser(server, "web2", "chromium")
    await joined(page)
    alice_id = alice.participant["id"]
    assert await page.wait_for(tile_name_js(alice_id)) == "alice"
    await wait_decoding(page, alice_id, more=10)
    mids = {r["mid"] for r in await page.evaluate("window.basement.remote") if r["participant"] == alice_id}
    assert len(mids) == 2

    await alice.leave()
    await alice.close()
    # her tile goes away with her m-lines, which turn inactive; the log says she left
    await page.wait_for(f"!document.querySelector('#grid .tile.remote[data-participant=\"{alice_id}\"]')")
    await page.wait_for(f"{events_js('participant_left')}.some(m => m.participant === {json.dumps(alice_id)})")
    assert await page.evaluate("window.basement.remote") == []

    async def inactive():
        ts = await page.evaluate("window.basement.transceivers()")
        return all(t["currentDirection"] == "inactive" for t in ts if t["mid"] in mids) and ts

    await poll(inactive, "alice's m-lines inactive in the page")
    assert "alice left" in await page.evaluate("document.querySelector('#event-log').textContent")

    # a new participant appears (on a recycled or a new m-line) and her frames decode in the page
    bob = await connect("web2", "bob")
    await bob.publish(audio=Tone(), video=CounterVideo())
    bob_id = bob.participant["id"]
    assert await page.wait_for(tile_name_js(bob_id)) == "bob"
    await wait_decoding(page, bob_id, more=15)
    remote = await page.evaluate("window.basement.remote")
    assert {(r["participant"], r["name"]) for r in remote} == {(bob_id, "bob")}
    assert await page.evaluate("document.querySelectorAll('#grid .tile.remote').length") == 1


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


async def test_screenshot_of_a_two_participant_room(server, connect, browser, tmp_path):
    alice = await connect("web3", "alice")
    await alice.publish(audio=Tone(), video=CounterVideo())
    page = await browser(server, "web3", "chromium")
    await joined(page)
    alice_id = alice.participant["id"]
    await page.wait_for(tile_name_js(alice_id))
    await wait_decoding(page, alice_id, more=10)
    # both videos are showing pictures before the shot
    await page.wait_for("[...document.querySelectorAll('#grid .tile video')]"
                        ".filter(v => v.videoWidth > 0 && v.readyState >= 2).length === 2")
    path = tmp_path / "room.png"
    data = await page.screenshot(path)
    assert path.read_bytes() == data
    width, height = _png_size(data)
    assert (width, height) == (1280, 720)
    assert len(data) > 20_000, "the screenshot is suspiciously small (blank page?)"
    # two labelled tiles side by side, the local one first
    names = await page.evaluate("[...document.querySelectorAll('#grid .tile .name')].map(e => e.textContent)")
    assert names == ["chromium (you)", "alice"]


async def test_camera_mute_button_reaches_other_participants(server, connect, browser):
    alice = await connect("web4", "alice")
    page = await browser(server, "web4", "chromium")
    view = await joined(page)
    me, video_id = view["participant"]["id"], view["published"]["video"]
    await alice.wait_message("track_published", timeout=30)

    await page.click("#toggle-camera")
    msg = await alice.wait_message("track_muted", timeout=15, track=video_id, muted=True)
    assert msg["participant"] == me
    assert await page.evaluate("document.querySelector('#toggle-camera').getAttribute('aria-pressed')") == "true"
    assert await page.evaluate("window.basement.published.video && "
                               "document.querySelector('.tile.local video').srcObject.getVideoTracks()[0].enabled"
                               ) is False

    await page.click("#toggle-camera")
    await alice.wait_message("track_muted", timeout=15, track=video_id, muted=False)
    assert await page.evaluate("document.querySelector('.tile.local video').srcObject.getVideoTracks()[0].enabled")


async def test_dynacast_turns_unneeded_simulcast_layers_off(server, connect, browser):
    alice = await connect("web5", "alice")
    page = await browser(server, "web5", "chromium")
    view = await joined(page)
    video_id = view["published"]["video"]
    info, track = await alice.wait_track(kind="video", participant=view["participant"]["id"], timeout=30)
    sink = Sink(track)
    try:
        await sink.wait_frames(10, timeout=30)
    finally:
        sink.stop()

    # one subscriber: the server names the layers it forwards (the best one arriving), and the page
    # encodes exactly those
    def dynacasts(extra: str = "true") -> str:
        return f"{events_js('dynacast')}.filter(m => m.track === {json.dumps(video_id)} && ({extra}))"

    first = (await page.wait_for(f"{dynacasts('m.active.length > 0')}.length && {dynacasts('m.active.length > 0')}"))[0]
    wanted = set(first["active"])
    assert wanted < {"q", "h", "f"}, first  # some layer is not needed by anyone

    async def encodings_follow():
        last = (await page.evaluate(dynacasts()))[-1]
        active = {e["rid"] for e in await page.evaluate("window.basement.senderEncodings()") if e["active"]}
        return active == set(last["active"]) and active

    wanted = await poll(encodings_follow, "sender encodings following the last dynacast", timeout=10)

    async def only_wanted_sends():
        before = await page.evaluate("window.basement.stats()")
        await asyncio.sleep(1.0)
        after = await page.evaluate("window.basement.stats()")
        sent = {o["rid"]: o["bytesSent"] or 0 for o in before["outbound"] if o["kind"] == "video"}
        grew = {o["rid"] for o in after["outbound"]
                if o["kind"] == "video" and (o["bytesSent"] or 0) > sent.get(o["rid"], 0)}
        return grew == wanted and grew

    await poll(only_wanted_sends, f"only layers {sorted(wanted)} leaving Chromium", timeout=20)

    # nobody left to receive it: every layer off
    await alice.leave()
    await page.wait_for(f"{dynacasts('m.active.length === 0')}.length > 0")
    await page.wait_for("window.basement.senderEncodings().every(e => !e.active)", timeout=10)
