"""Screen share from the web client in Chromium (its fake display capture, with sound), beside its
camera, to a Chromium and a Firefox viewer: each decodes the share at the size the presenter encodes
it, in a tile of its own, and receives its sound; stopping it removes both while the camera goes on;
sharing again brings it back under the same track id. A viewer that joins while the screen is
shared gets it too."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.firefox.playback import publisher
from tests.support.browser import poll
from tests.support.servers import native_only

# A second video source is signalling and the web client; tests/integration/test_screen_share.py
# forwards shares on both data paths: one run here.
pytestmark = [pytest.mark.timeout(150), native_only]

FRAMES = 20  # decoded in a row, at the encoded size, to count as "decodes"


async def _inbound(page: Any, track: str) -> dict[str, Any] | None:
    stats = await page.evaluate("window.basement.stats()")
    return next((s for s in stats["inbound"] if s.get("track") == track and s.get("kind") == "video"), None)


async def _encoded_screen(presenter: Any) -> tuple[int, int] | None:
    stats = await presenter.evaluate("window.basement.stats()")
    out = next((o for o in stats["outbound"] if o.get("source") == "screen" and o.get("frameWidth")), None)
    return (out["frameWidth"], out["frameHeight"]) if out else None


async def _decodes(page: Any, presenter: Any, track: str, what: str) -> tuple[int, int]:
    """Wait until `page` has decoded FRAMES more frames of `track`, the last at the size the presenter
    encodes its screen at; returns that size."""
    start: list[int] = []
    seen: list[Any] = []

    async def check() -> tuple[int, int] | None:
        s = await _inbound(page, track)
        size = await _encoded_screen(presenter)
        seen.append((s and (s.get("framesDecoded"), s.get("frameWidth"), s.get("frameHeight")), size))
        if not s or not s.get("framesDecoded"):
            return None
        if not start:
            start.append(s["framesDecoded"])
        ok = s["framesDecoded"] - start[0] >= FRAMES and size == (s.get("frameWidth"), s.get("frameHeight"))
        return size if ok else None

    try:
        return await poll(check, what, timeout=40)
    except TimeoutError:
        raise TimeoutError(f"{what}: (decoded, w, h), encoded screen: {seen[-3:]}") from None


async def _receives_audio(page: Any, track: str, what: str, packets: int = 50) -> None:
    """Wait until `page` has received `packets` more RTP packets of audio track `track` (50: 1 s of Opus)."""
    start: list[int] = []

    async def check() -> bool:
        stats = await page.evaluate("window.basement.stats()")
        s = next((s for s in stats["inbound"] if s.get("track") == track and s.get("kind") == "audio"), None)
        got = (s or {}).get("packetsReceived") or 0
        if not start:
            start.append(got)
        return got - start[0] >= packets

    await poll(check, what, timeout=20)


def _tile(track: str) -> str:
    return json.dumps(f'#grid .tile.screen[data-track="{track}"]')


async def test_chromium_shares_its_screen_to_chromium_and_firefox(server, firefox, browser):
    presenter = await browser(server, "share-1", "presenter", audio="0")
    pub = await publisher(presenter)
    viewers = {"chromium": await browser(server, "share-1", "chromium", audio="0", camera="0"),
               "firefox": await firefox(server, "share-1", "firefox", audio="0", camera="0")}
    for page in viewers.values():
        await page.wait_for("window.basement.participant")

    await presenter.click("#toggle-share")
    screen = await presenter.wait_for("window.basement.published.screen", timeout=30)
    assert screen != pub["video"]
    for name, page in viewers.items():
        size = await _decodes(page, presenter, screen, f"{name} decoding the shared screen")
        assert size[0] >= 320 and size[1] >= 180, size
        await page.wait_for(f"!!document.querySelector({_tile(screen)})", timeout=10)
        info = await page.evaluate(f"window.basement.remote.find(r => r.track === {json.dumps(screen)})")
        assert info["source"] == "screen" and info["participant"] == pub["participant"], info

    # each viewer pins the presenter's camera with its tile's pin button: the SFU serves it after the
    # screen and before other cameras, and says so when asked why (`allocation`)
    camera_tile = json.dumps(f'#grid .tile.remote[data-track="{pub["video"]}"]')
    for name, page in viewers.items():
        await page.wait_for(f"!!document.querySelector({camera_tile} + ' button.pin')", timeout=10)
        await page.evaluate(f"document.querySelector({camera_tile} + ' button.pin').click()")
        viewer = (await page.evaluate("window.basement.participant"))["id"]

        async def pinned(viewer: str = viewer) -> bool:
            return server.node.peers[viewer].downtracks[pub["video"]].pinned

        await poll(pinned, f"{name}'s pin reaching the SFU", timeout=10)
        assert await page.evaluate(f"document.querySelector({camera_tile}).classList.contains('pinned')")
        await page.evaluate("window.basement.send({type: 'allocation', id: 'why'})")
        explained = await page.wait_for("window.basement.events.find(m => m.type === 'allocation' && m.id === 'why')",
                                        timeout=10)
        tracks = {t["track"]: t for t in explained["tracks"]}
        assert set(tracks) == {screen, pub["video"]} and tracks[screen]["priority"] == "screen", (name, explained)
        # (the screen's sound makes the presenter the active speaker now and then: that ranks above a pin)
        assert tracks[pub["video"]]["pinned"] and tracks[pub["video"]]["priority"] in ("pinned", "speaker"), explained

    # and its sound: Chromium's fake display capture offers audio, which the client sends as screen_audio
    sound = await presenter.wait_for("window.basement.published.screen_audio", timeout=10)
    for name, page in viewers.items():
        info = await page.wait_for(f"window.basement.remote.find(r => r.track === {json.dumps(sound)})", timeout=15)
        assert (info["kind"], info["source"]) == ("audio", "screen_audio"), info
        await _receives_audio(page, sound, f"{name} receiving the screen's sound")

    # a viewer joining now gets the share too
    late = await browser(server, "share-1", "late", audio="0", camera="0")
    await _decodes(late, presenter, screen, "a late joiner decoding the shared screen")

    # stop: the tile goes, the camera goes on
    await presenter.click("#toggle-share")
    await presenter.wait_for("!window.basement.published.screen", timeout=10)
    for name, page in {**viewers, "late": late}.items():
        for track in (screen, sound):
            await page.wait_for(f"window.basement.events.some(m => m.type === 'track_unpublished' && "
                                f"m.track === {json.dumps(track)})", timeout=15)
        await page.wait_for(f"!document.querySelector({_tile(screen)})", timeout=15)
        camera = await _inbound(page, pub["video"])
        before = (camera or {}).get("framesDecoded") or 0

        async def camera_goes_on(page: Any = page, before: int = before) -> bool:
            s = await _inbound(page, pub["video"])
            return bool(s and (s.get("framesDecoded") or 0) >= before + 10)

        await poll(camera_goes_on, f"{name} still decoding the camera", timeout=20)

    # share again: the same m-line, the same track id, decoded again
    await presenter.click("#toggle-share")
    again = await presenter.wait_for("window.basement.published.screen", timeout=30)
    assert again == screen
    for name, page in viewers.items():
        await _decodes(page, presenter, screen, f"{name} decoding the screen shared again")
