"""End-to-end encryption in the web client (docs/e2ee.md), in a room that requires it, with the
room's passphrase: two Chromium pages and a Firefox decode each other's video and audio (encrypted
in each browser's worker, decrypted in the others': behind RTCRtpScriptTransforms, and in one
Chromium made to lack them, through Chromium's encoded streams); a Python client with the
passphrase decodes a browser's frames, which arrive from the SFU as SFrame under that browser's key
(the same format in both implementations); a page with a wrong passphrase decodes nothing."""

from __future__ import annotations

import asyncio
import json

import pytest

from signalling.access.gating import RoomConfig
from signalling.e2ee.frames import clear_bytes
from signalling.e2ee.keys import PassphraseKeys, kid_of
from signalling.e2ee.sframe import parse_header
from signalling.protocol.client import Client
from tests.e2e.firefox.playback import LAYERS, check_decoding, choose_quality, measure, publisher, summary, wait_layer
from tests.support.browser import poll
from tests.support.e2ee import record_video
from tests.support.media import Sink
from tests.support.servers import native_only

pytestmark = [pytest.mark.timeout(150), native_only]  # the subject is the browsers' encryption

PASSPHRASE = "correct horse battery staple"
AUDIO_S = 3.0


def fill(passphrase: str) -> str:
    return f"document.querySelector('#e2ee-passphrase').value = {json.dumps(passphrase)}"


async def e2ee_state(page) -> dict:
    return await page.evaluate("window.basement.e2ee")


async def test_two_chromium_and_a_firefox_decode_each_other_encrypted_and_a_bot_reads_the_same_sframe(
        server, browser, firefox):
    await server.control.registry.put(RoomConfig("sealed", e2ee="required"))
    # chrome2 as a Chromium without RTCRtpScriptTransform (before 141): Chromium's encoded streams
    pages = [await browser(server, "sealed", "chrome1", before_join=fill(PASSPHRASE)),
             await browser(server, "sealed", "chrome2",
                           before_join=fill(PASSPHRASE) + "; delete window.RTCRtpScriptTransform"),
             await firefox(server, "sealed", "firefox", before_join=fill(PASSPHRASE))]
    pubs = [await publisher(p) for p in pages]
    for p, api in zip(pages, ("script-transform", "encoded-streams", "script-transform")):
        state = await e2ee_state(p)
        assert (state["room"], state["keys"], state["api"]) == ("required", "passphrase", api), state
        lock = await p.evaluate("document.querySelector('#e2ee-lock').hidden ? null : "
                                "document.querySelector('#e2ee-lock').textContent")
        assert lock == "🔒 end-to-end encrypted (passphrase: not identity-bound)", lock
    # low for everyone: each publisher then encodes only q (dynacast), what two cores carry with
    # three encoders, six decoders and the encryption of each frame beside them
    rid, _ = LAYERS["low"]
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    for i, j in pairs:
        await choose_quality(pages[i], pubs[j]["participant"], "low")
    for i, j in pairs:
        await wait_layer(pages[i], pubs[j]["participant"], pages[j], rid)
    decoded, encoded = await measure([(pages[i], pubs[j]["participant"]) for i, j in pairs], pages)
    for (i, j), got in zip(pairs, decoded):
        what = f"page {i} decoding page {j}'s {rid} layer, encrypted"
        print(summary(what, got, encoded[j][rid], pubs[j]["fps"]))
        check_decoding(what, got, rid, encoded[j], pubs[j]["fps"])
    for p in pages:
        state = await e2ee_state(p)
        assert state["encrypted"] > 0 and state["decrypted"] > 0, state
    # and each hears the others: their encrypted Opus decodes (concealment would fill what did not)
    before = [await audio_in(pages[i], pubs[j]["participant"]) for i, j in pairs]
    await asyncio.sleep(AUDIO_S)
    for (i, j), was in zip(pairs, before):
        now = await audio_in(pages[i], pubs[j]["participant"])
        samples = now["totalSamplesReceived"] - was["totalSamplesReceived"]
        concealed = now["concealedSamples"] - was["concealedSamples"]
        what = f"page {i} hearing page {j}: {samples} samples in {AUDIO_S} s, {concealed} concealed ({was} -> {now})"
        assert samples >= 0.8 * AUDIO_S * 48000 and concealed <= 0.1 * samples, what
        assert now["totalAudioEnergy"] > was["totalAudioEnergy"], what

    # a Python client with the passphrase decodes chrome1's frames: SFrame under chrome1's key
    bot = Client(server.url, e2ee=PassphraseKeys(PASSPHRASE))
    try:
        await bot.connect()
        await bot.join("sealed", "bot")
        forwarded = record_video(bot)
        _, track = await bot.wait_track(kind="video", participant=pubs[0]["participant"], timeout=20)
        sink = Sink(track)
        for pub in pubs:  # (the bot decodes what it gets: the low layer of each keeps that cheap)
            await bot.wait_track(kind="video", participant=pub["participant"], timeout=20)
            await bot.subscription(pub["video"], layer="low")
        await sink.wait_frames(20, timeout=30)
        # (frames that did not decrypt are dropped before the decoder: what decodes was decrypted)
        assert sink.sizes and all(0 < w <= 240 for w, _ in sink.sizes), sink.sizes  # the q layer
        assert sum(bot.undecryptable.values()) <= 3, bot.undecryptable  # (the first, before the key)
        # the browsers' frames as the SFU forwarded them: VP8's clear prefix, then SFrame
        kid = kid_of(pubs[0]["participant"])
        ours = [f for f in forwarded if parse_header(f[clear_bytes("video/vp8", f):])[0] == kid]
        assert len(ours) >= 10, len(forwarded)

        # a page with another passphrase: in the room, and nothing of it decodes
        wrong = await browser(server, "sealed", "wrong", audio="0", camera="0", before_join=fill("not the passphrase"))
        await choose_quality(wrong, pubs[0]["participant"], "low")
        await poll(lambda: e2ee_state(wrong), "e2ee state")
        state = await poll(lambda: _undecryptable(wrong), "frames refused by the wrong passphrase", timeout=30)
        decoded_wrong = await wrong.evaluate(
            f"window.basement.stats().then((st) => st.inbound.filter((s) => s.kind === 'video' && s.participant"
            f" === {json.dumps(pubs[0]['participant'])}).map((s) => s.framesDecoded || 0))")
        assert decoded_wrong in ([], [0]), (decoded_wrong, state)
    finally:
        await bot.close()


async def audio_in(page, participant: str) -> dict:
    """The page's inbound audio of `participant` (getStats: samples received, concealed, energy)."""
    stats = await page.evaluate("window.basement.stats()")
    got = next((s for s in stats["inbound"] if s["kind"] == "audio" and s["participant"] == participant), None)
    assert got is not None and got.get("totalSamplesReceived") is not None, (participant, stats["inbound"])
    return got


async def _undecryptable(page) -> dict | None:
    state = await e2ee_state(page)
    return state if state and state.get("undecryptable", 0) >= 20 else None
