"""Wallet keys in the web client (docs/e2ee.md, issue #21), two Chromium pages with injected wallets
in a room that requires end-to-end encryption and is not token-gated.

Each page, joining without keys, is offered a wallet sign-in first; signed in, it announces its key
signed by its wallet, and each page shows on the other's tile the address that signed it. A Python
participant signed in as one wallet that announces a key signed by another is refused by both
pages, which say so on its tile and never decode its media. Under encryption, what a page receives
of the other keeps moving while it switches simulcast layers high -> low -> high (no freeze of 1 s),
at each layer's size; and the other page's audio decodes (not concealed).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from eth_account import Account

from signalling.access.gating import RoomConfig
from signalling.e2ee.keys import WalletKeys
from signalling.protocol.client import Client
from tests.support.browser import VIDEO, Browser, poll
from tests.support.e2ee import signer
from tests.support.injected_wallet import InjectedWallet
from tests.support.media import CounterVideo
from tests.support.servers import native_only

pytestmark = [pytest.mark.timeout(180), native_only]  # the subject is the page's keys, not forwarding

ROOM = "vault"
SAMPLE_S = 0.1
FREEZE_S = 1.0


@pytest.fixture
async def wallet_page():
    """wallet_page(server, name, account, **query) -> (Browser, InjectedWallet), having joined ROOM
    through the wallet sign-in the page offers."""
    made: list[tuple[Browser, InjectedWallet]] = []

    async def launch(server, name: str, account, **query: str) -> tuple[Browser, InjectedWallet]:
        params = {"room": ROOM, "name": name, "video": VIDEO, **query}
        b = Browser(f"{server.url}/?{urlencode(params)}")
        wallet = InjectedWallet(b, account, server.control.chain_id)
        made.append((b, wallet))
        await b.start()
        await wallet.install()
        await b.navigate(f"{server.url}/?{urlencode({**params, 'autojoin': '1'})}")
        await b.wait_for("!!window.basement && document.activeElement.id === 'join-button'")
        await b.click("#join-button")
        # no passphrase, no wallet yet: the page asks for a wallet before it joins
        gate = await b.wait_for("window.basement.state === 'gated' && window.basement.gate", timeout=20)
        prompt = await b.evaluate("document.querySelector('#wallet-prompt').textContent")
        assert gate["e2ee"] and "end-to-end encrypted" in prompt and "passphrase" in prompt, (gate, prompt)
        assert [p.name for p in server.rooms.in_room(ROOM)].count(name) == 0
        await b.click("#wallet-browser")
        state = await b.wait_for("(window.basement.state === 'joined' || window.basement.walletError) && "
                                 "{state: window.basement.state, error: window.basement.walletError}", timeout=30)
        assert state["state"] == "joined", state
        return b, wallet

    yield launch
    for b, wallet in made:
        await wallet.close()
        await b.close()


async def inbound(page: Browser, participant: str, kind: str) -> dict:
    stats = await page.evaluate("window.basement.stats()")
    return next((s for s in stats["inbound"] if s["kind"] == kind and s["participant"] == participant), {})


async def test_wallet_keys_verified_on_tiles_an_impostor_refused_and_layers_switch_encrypted(
        server, wallet_page):
    await server.control.registry.put(RoomConfig(ROOM, e2ee="required"))
    ann, ben, mal, other = (Account.create() for _ in range(4))
    # ann publishes simulcast video; ben only audio (what two cores carry beside the encryption)
    a, a_wallet = await wallet_page(server, "ann", ann, audio="0")
    b, b_wallet = await wallet_page(server, "ben", ben, camera="0")
    me = {page: await page.evaluate("window.basement.participant") for page in (a, b)}
    assert me[a]["identity"] == ann.address and me[b]["identity"] == ben.address
    for page in (a, b):
        assert (await page.evaluate("window.basement.e2ee"))["keys"] == "wallet"
        assert await page.evaluate("document.querySelector('#e2ee-lock').textContent") == "🔒 end-to-end encrypted"

    # mal is signed in as her wallet and announces a key that another wallet signed
    mal_client = Client(server.url, e2ee=WalletKeys(signer(other)))
    try:
        await mal_client.connect()
        await mal_client.join(ROOM, "mal", grant=server.control.auth.grants.issue(ROOM, mal.address))
        await mal_client.publish(video=CounterVideo(176, 144))
        mal_id = mal_client.participant["id"]

        for page, peer, acct in ((a, b, ben), (b, a, ann)):
            # each page verified the other as the wallet it signed in with, and refused mal, saying why
            state = await page.wait_for(
                f"(e => e.verified[{json.dumps(me[peer]['id'])}] && e.refused.length && e)(window.basement.e2ee)")
            assert state["verified"] == {me[peer]["id"]: acct.address}, state
            # (then, as the case may be, the keys mal sent after it: "…whose announcement was not verified")
            assert state["refused"][0] == [mal_id, f"the announcement is signed by {other.address}, not by the "
                                                   f"participant's wallet {mal.address}"], state
            assert {pid for pid, _ in state["refused"]} == {mal_id}, state
        # ann's tile on ben's page names the address that signed ann's key; mal's tile says refused
        tile = await b.wait_for(f"(t => t && t.title.includes({json.dumps(ann.address)}) && "
                                f"{{text: t.textContent, title: t.title}})(document.querySelector("
                                f"'.tile[data-participant=\"{me[a]['id']}\"] .badge.verified'))")
        assert tile["text"] == f"🔒 {ann.address[:6]}…{ann.address[-4:]}", tile
        for page in (a, b):
            refused = await page.wait_for(f"(t => t && {{text: t.textContent, title: t.title}})(document."
                                          f"querySelector('.tile[data-participant=\"{mal_id}\"] .badge.refused'))")
            assert refused["text"] == "⚠ keys refused" and other.address in refused["title"], refused

        # ben hears ann? no: ann sends no audio. ann hears ben: ben's audio decrypts and decodes
        await poll(lambda: _audio_flowing(a, me[b]["id"]), "ben's audio decoding on ann's page", timeout=30)
        before = await inbound(a, me[b]["id"], "audio")
        await asyncio.sleep(3)
        after = await inbound(a, me[b]["id"], "audio")
        samples = after["totalSamplesReceived"] - before["totalSamplesReceived"]
        concealed = after["concealedSamples"] - before["concealedSamples"]
        assert samples > 2 * 48000 and concealed < 0.1 * samples, (before, after)
        assert after["totalAudioEnergy"] > before["totalAudioEnergy"], (before, after)

        # simulcast under encryption: ben switches ann's video high -> low -> high, never frozen 1 s
        video = (await a.wait_for("window.basement.published.video && window.basement.published"))["video"]
        widths: list[tuple] = []
        longest = 0.0
        # ("high": the highest that fits ben's estimate, h or f: a 960x540 f may need more than the
        # estimate has reached by then; either is a switch across two layers and back)
        for layer, fits in (("high", lambda w: w >= 480), ("low", lambda w: w == 240), ("high", lambda w: w >= 480)):
            await b.evaluate(f"window.basement.send({{type: 'subscription', track: '{video}', layer: '{layer}'}})")
            got, frozen = await _watch(b, me[a]["id"], fits, lambda: _forwarding(server, me[b]["id"]), a)
            widths.append((layer, got, round(frozen, 2)))
            longest = max(longest, frozen)
        print(f"layers (asked, width decoded, longest without a new frame): {widths}")
        assert longest < FREEZE_S, f"ann's video froze for {longest:.2f} s on a layer switch ({widths})"
        # and mal's video, on either page: not one frame decoded
        for page in (a, b):
            assert (await inbound(page, mal_id, "video")).get("framesDecoded", 0) == 0
        e = await b.evaluate("window.basement.e2ee")
        assert e["decrypted"] > 0 and e["undecryptable"] > 0, e  # (mal's frames: dropped, never decoded)
        assert a_wallet.errors == b_wallet.errors == []
    finally:
        await mal_client.close()


async def _audio_flowing(page: Browser, participant: str) -> bool:
    got = await inbound(page, participant, "audio")
    return (got.get("totalSamplesReceived") or 0) > 48000


def _forwarding(server, subscriber: str) -> list[tuple]:
    """What the SFU forwards `subscriber` of each video: (layer, target, estimate and share in
    kbit/s, the layer the selector wants for it, what dynacast last asked the publisher for)."""
    peer = server.node.peers.get(subscriber)
    selector = server.node.rooms[ROOM].selector
    now = time.monotonic()
    out = []
    for dt in (peer.downtracks.values() if peer else ()):
        if not dt.is_video:
            continue
        rec = dt.track
        wanted = selector._wanted(rec, dt, now)
        share = selector.estimate(dt, now, selector.allocation.share(dt))
        out.append((dt.current and dt.current.rid, dt.target and dt.target.rid, dt.estimate_bps // 1000,
                    share and share // 1000, wanted and wanted.rid, selector._dynacast.get(rec.id)))
    return out


async def _watch(page: Browser, participant: str, fits: Callable[[int], bool], sfu: Callable[[], Any],
                 publisher: Browser, timeout: float = 30.0) -> tuple[int, float]:
    """Sample `page`'s decoding of `participant`'s video every SAMPLE_S until it decodes at a width
    that `fits`, then 2 s more: (that width, the longest time without a newly decoded frame)."""
    deadline = time.monotonic() + timeout
    last_frames, last_new, longest, reached, width = None, time.monotonic(), 0.0, None, 0
    while True:
        now = time.monotonic()
        got = await inbound(page, participant, "video")
        frames = got.get("framesDecoded") or 0
        longest = max(longest, now - last_new)  # (a new frame: the time since the last one's sample)
        if last_frames is None or frames > last_frames:
            last_new = now
        last_frames = frames
        if reached is None and fits(got.get("frameWidth") or 0):
            reached, width = now, got["frameWidth"]
        if reached is not None and now - reached >= 2:
            return width, longest
        if now > deadline:
            sent = [{k: o.get(k) for k in ("rid", "active", "frameWidth", "framesSent", "qualityLimitationReason",
                                           "targetBitrate")}
                    for o in (await publisher.evaluate("window.basement.stats()"))["outbound"] if o["kind"] == "video"]
            raise AssertionError(f"never decoded at a width that fits (last: {got}; the SFU: {sfu()}; sent: {sent})")
        await asyncio.sleep(SAMPLE_S)
