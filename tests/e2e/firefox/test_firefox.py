"""The web client (signalling/web/static) in headless Firefox ESR, against a real server, with
Chromium and other Firefox windows as the other participants.

Every check is on decoded video: the size the subscriber's decoder reports and its frame rate over a
window, against what the publisher encodes at the same time and its camera's rate (20 % each).
Firefox's fake camera runs at 30 fps; both browsers publish 960x540 in three simulcast layers, and
subscribers pick a layer from the tile's quality menu, so the expected size is that layer's: its
nominal size, or the smaller one the publisher's encoder scaled it to on a busy machine (read from
the publisher's own stats, and told apart from the other layers').
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.firefox.playback import (
    LAYERS,
    check_decoding,
    choose_quality,
    measure,
    publisher,
    summary,
    wait_layer,
)
from tests.support.browser import poll
from tests.support.servers import native_only

pytestmark = [pytest.mark.timeout(120)]  # firefox-esr comes with `make test`: never skipped



# Firefox to Chromium, Chromium to Firefox and a rejoin are about the browsers and the web client:
# one run each. The three-Firefox room below runs on both data paths, both directions through each.
@native_only
async def test_firefox_publishes_chromium_decodes(server, firefox, browser):
    fx = await firefox(server, "fx-a", "firefox", audio="0")
    pub = await publisher(fx)
    chrome = await browser(server, "fx-a", "chromium", audio="0", camera="0")
    await choose_quality(chrome, pub["participant"], "high")
    rid, _ = LAYERS["high"]
    await wait_layer(chrome, pub["participant"], fx, rid)
    (got,), (sent,) = await measure([(chrome, pub["participant"])], [fx])
    print(summary("Firefox -> Chromium", got, sent[rid], pub["fps"]))
    check_decoding("Chromium decoding Firefox's f layer", got, rid, sent, pub["fps"])
    # the server took Firefox's offer as three layers, told apart by rid
    info = await chrome.evaluate(f"window.basement.events.filter(m => m.type === 'track_published' || "
                                 f"m.type === 'joined').flatMap(m => m.track ? [m.track] : m.tracks)"
                                 f".find(t => t.track === {json.dumps(pub['video'])})")
    assert info["simulcast"] and sorted(info["layers"]) == ["f", "h", "q"], info
    # Firefox, the DTLS client, gets the SFU's first SRTP profile (srtp_profiles: GCM first)
    assert server.node.peers[pub["participant"]].publisher.srtp_profile == "SRTP_AEAD_AES_256_GCM"


@native_only
async def test_chromium_publishes_firefox_decodes(server, firefox, browser):
    chrome = await browser(server, "fx-b", "chromium", audio="0")
    pub = await publisher(chrome)
    fx = await firefox(server, "fx-b", "firefox", audio="0", camera="0")
    await choose_quality(fx, pub["participant"], "high")
    rid, _ = LAYERS["high"]
    await wait_layer(fx, pub["participant"], chrome, rid)
    (got,), (sent,) = await measure([(fx, pub["participant"])], [chrome])
    print(summary("Chromium -> Firefox", got, sent[rid], pub["fps"]))
    check_decoding("Firefox decoding Chromium's f layer", got, rid, sent, pub["fps"])


async def test_three_firefox_each_decode_both_others(server, firefox):
    pages = [await firefox(server, "fx-c", f"firefox{i}", audio="0") for i in range(3)]
    pubs = [await publisher(p) for p in pages]
    # medium for everyone: each publisher then encodes only h (dynacast), which keeps three encoders
    # and six decoders within what two cores do at full rate
    rid, _ = LAYERS["medium"]
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    for i, j in pairs:
        await choose_quality(pages[i], pubs[j]["participant"], "medium")
    for i, j in pairs:
        await wait_layer(pages[i], pubs[j]["participant"], pages[j], rid)
    decoded, encoded = await measure([(pages[i], pubs[j]["participant"]) for i, j in pairs], pages)
    for (i, j), got in zip(pairs, decoded):
        print(summary(f"firefox{j} -> firefox{i}", got, encoded[j][rid], pubs[j]["fps"]))
    for (i, j), got in zip(pairs, decoded):
        check_decoding(f"firefox{i} decoding firefox{j}", got, rid, encoded[j], pubs[j]["fps"])


@native_only
async def test_firefox_leaves_and_rejoins(server, firefox):
    rid, _ = LAYERS["medium"]
    leaver = await firefox(server, "fx-e", "leaver", audio="0")
    stayer = await firefox(server, "fx-e", "stayer", audio="0")
    first, other = await publisher(leaver), await publisher(stayer)
    await choose_quality(stayer, first["participant"], "medium")
    await wait_layer(stayer, first["participant"], leaver, rid)
    mids = {r["mid"] for r in await stayer.evaluate("window.basement.remote")
            if r["participant"] == first["participant"]}
    assert len(mids) == 1, mids

    await leaver.click("#leave")
    await leaver.wait_for("window.basement.state === 'left'", timeout=15)
    # the stayer sees the leaver go: event, tile, and the m-line turns inactive
    await stayer.wait_for(f"window.basement.events.some(m => m.type === 'participant_left' && "
                          f"m.participant === {json.dumps(first['participant'])})", timeout=15)
    await stayer.wait_for(f"!document.querySelector('#grid .tile.remote[data-participant="
                          f"\"{first['participant']}\"]')", timeout=15)

    async def inactive() -> bool:
        ts = await stayer.evaluate("window.basement.transceivers()")
        return all(t["currentDirection"] == "inactive" for t in ts if t["mid"] in mids)

    await poll(inactive, "the leaver's m-line inactive in the stayer's page", timeout=15)

    # the same page joins again (the form is back, filled in): a new participant, new peer
    # connections; the stayer receives it on the recycled m-line
    await leaver.wait_for("!document.querySelector('#join-button').disabled", timeout=10)
    await leaver.click("#join-button")
    second = await leaver.wait_for(
        f"window.basement.participant && window.basement.participant.id !== {json.dumps(first['participant'])}"
        f" && window.basement.published.video && window.basement.participant.id", timeout=30)
    again = await publisher(leaver)
    assert again["participant"] == second
    await choose_quality(stayer, second, "medium")
    await choose_quality(leaver, other["participant"], "medium")
    await wait_layer(stayer, second, leaver, rid)
    await wait_layer(leaver, other["participant"], stayer, rid)
    remote = await stayer.evaluate("window.basement.remote")
    assert [r["mid"] for r in remote if r["participant"] == second] == sorted(mids), remote
    (to_stayer, to_leaver), (sent_leaver, sent_stayer) = await measure(
        [(stayer, second), (leaver, other["participant"])], [leaver, stayer])
    print(summary("rejoined -> stayer", to_stayer, sent_leaver[rid], again["fps"]))
    print(summary("stayer -> rejoined", to_leaver, sent_stayer[rid], other["fps"]))
    check_decoding("the stayer decoding the rejoined page", to_stayer, rid, sent_leaver, again["fps"])
    check_decoding("the rejoined page decoding the stayer", to_leaver, rid, sent_stayer, other["fps"])
