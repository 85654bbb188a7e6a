"""Peer to peer for two across browsers: Firefox ESR and Chromium in a room that allows it connect
directly (the SFU relays only their signalling), a third participant moves them back through the
SFU, and they go direct again when it leaves (as tests/e2e/browser/test_p2p_browser.py does with two
Chromium pages). Firefox has its own stand-by of the SFU senders to get right: no track and no
active encoding on a simulcast sender."""

from __future__ import annotations

import pytest

from tests.e2e.browser.test_browser import joined, wait_decoding
from tests.e2e.browser.test_p2p_browser import sfu_quiet, showing
from tests.support.media import CounterVideo, Sink, Tone

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def each_data_path() -> str:
    """One run, forwarding natively: what differs here is the browser (its direct connection and
    its stand-by); tests/e2e/browser/test_p2p_browser.py runs the switch on both data paths."""
    return "native"

DIRECT = "window.basement.direct === 'direct' && window.basement.sfuStandby"
THROUGH_SFU = "window.basement.direct === 'off' && !window.basement.sfuStandby"


async def test_firefox_and_chromium_go_direct_and_back_through_the_sfu_for_a_third(
        make_server, connect, firefox, browser):
    server = await make_server(p2p=True)
    fx = await firefox(server, "duo-fx", "fx")
    fx_id = (await joined(fx))["participant"]["id"]
    cr = await browser(server, "duo-fx", "cr")
    cr_id = (await joined(cr))["participant"]["id"]

    for page in (fx, cr):
        await page.wait_for(DIRECT, timeout=30)
    await showing(fx, cr_id)
    await showing(cr, fx_id)
    assert await sfu_quiet() == (0, 0)

    carl = await connect("duo-fx", "carl", url=server.url)
    await carl.publish(audio=Tone(), video=CounterVideo(320, 240))
    for pid in (fx_id, cr_id):  # carl decodes both: their SFU senders are live again
        _, track = await carl.wait_track(kind="video", participant=pid, timeout=15)
        await Sink(track).wait_frames(5, timeout=15)
    for page, other in ((fx, cr_id), (cr, fx_id)):
        await page.wait_for(THROUGH_SFU, timeout=15)
        await wait_decoding(page, carl.participant["id"], more=5)
        await wait_decoding(page, other, more=10)
        await showing(page, other)
    packets_in, packets_out = await sfu_quiet()
    assert packets_in > 0 and packets_out > 0

    await carl.leave()
    for page in (fx, cr):
        await page.wait_for(DIRECT, timeout=30)
    await showing(fx, cr_id)
    await showing(cr, fx_id)
    assert await sfu_quiet() == (0, 0)
