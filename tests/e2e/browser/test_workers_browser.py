"""Chromium in a room of `basement serve --workers 2` whose worker is killed (SIGKILL): the page is
told `removed` with `rejoin`, joins the room again by itself, lands on the live worker, and decodes
the publisher's video again, within 5 s of the kill."""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import pytest

from tests.e2e.browser.test_browser import joined, media_both_ways, tile_name_js, wait_decoding
from tests.support.media import CounterVideo, Tone
from tests.support.workersfix import joined as join_client

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def each_data_path() -> str:
    """One run, natively: the worker process picks its data path from its settings (the default),
    and what is tested here is who is told what and who joins where."""
    return "native"


async def test_the_page_rejoins_by_itself_when_its_worker_dies(serve, browser):
    s = await serve(workers=2)
    alice, _ = await join_client(serve, s.url, "wkweb", "alice")
    await alice.publish(audio=Tone(), video=CounterVideo())
    page = await browser(SimpleNamespace(url=s.url), "wkweb", "chromium")
    me = (await joined(page))["participant"]
    await media_both_ways(page, alice, me)
    (home,) = [w for w, n in (await s.metric("basement_rooms")).items() if n == 1]

    t0 = time.monotonic()
    os.kill(s.pids()[int(home)], signal.SIGKILL)
    msg = await alice.wait_message("removed", timeout=5)
    assert (msg["reason"], msg["rejoin"]) == ("node_lost", True)
    # alice is a bot (the Python client does not rejoin by itself): she comes back as a new participant
    alice, _ = await join_client(serve, s.url, "wkweb", "alice")
    await alice.publish(audio=Tone(), video=CounterVideo())
    # the page joined again on its own (a new participant), and sees and decodes her again
    await page.wait_for("window.basement.log.some(e => e.text.startsWith('the server moved this call (node_lost)'))",
                        timeout=5)
    me2 = (await joined(page))["participant"]
    assert me2["id"] != me["id"] and me2["name"] == "chromium"
    assert await page.wait_for(tile_name_js(alice.participant["id"]), timeout=10) == "alice"
    await wait_decoding(page, alice.participant["id"], more=5, timeout=10)
    took = time.monotonic() - t0
    assert took < 5, f"the page decoded again {took:.1f} s after the kill"
    # both on the live worker (the dead one may be back by now: the room stayed where it was placed)
    rooms = await s.metric("basement_rooms")
    assert rooms.get(str(1 - int(home))) == 1, rooms
    assert await page.evaluate("window.basement.state") == "joined"
