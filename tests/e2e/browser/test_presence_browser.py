"""The web client in a large room: joins and leaves that arrive batched (`presence`, sfu.presence) keep
its participant list and event log right."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.browser import Browser
from tests.support.media import Tone

pytestmark = pytest.mark.timeout(120)


async def _names(page: Browser) -> list[str]:
    return sorted(await page.evaluate("window.basement.participants().map(p => p.name)"))


async def test_the_page_applies_batched_joins_and_leaves(make_server, browser):
    # rooms above 1 participant batch; the long interval means only another room event sends a batch
    server = await make_server(presence_batch_above=1, presence_interval_ms=10_000)
    from signalling.protocol.client import Client

    clients: list[Client] = []

    async def join(name: str) -> Client:
        c = Client(server.url)
        clients.append(c)
        await c.connect()
        await c.join("crowd", name)
        return c

    try:
        page = await browser(server, "crowd", "chromium")
        await page.wait_for("window.basement && window.basement.state === 'joined'", timeout=30)
        a = await join("a")  # the page alone before: told at once
        await page.wait_for("window.basement.participants().length === 1", timeout=15)
        b, c, d = await asyncio.gather(join("b"), join("c"), join("d"))  # these wait: the room is large
        await a.publish(audio=Tone())  # a room event: what waits goes first
        await page.wait_for("window.basement.participants().length === 4", timeout=30)
        assert await _names(page) == ["a", "b", "c", "d"]
        # b, c and d came in presence messages (one, or more if another room event, such as the
        # page's own tracks, came between their joins), and the log says so per message
        batches = await page.evaluate("window.basement.events.filter(m => m.type === 'presence')")
        assert batches, "no presence message reached the page"
        assert {p["name"] for m in batches for p in m["joined"]} == {"b", "c", "d"}
        log = await page.evaluate("document.querySelector('#event-log').textContent")
        assert "a joined" in log, log
        for m in batches:
            if m["joined"]:
                k = len(m["joined"])
                assert (f"{m['joined'][0]['name']} joined" if k == 1 else f"{k} joined") in log, log

        for gone in (b, c):
            await gone.leave()
        ids = json.dumps([b.participant["id"], c.participant["id"]])
        await d.publish(audio=Tone())  # a room event: the leaves that wait go first
        await page.wait_for("window.basement.participants().length === 2", timeout=30)
        assert await _names(page) == ["a", "d"]
        left = await page.evaluate(f"window.basement.events.filter(m => m.type === 'presence')"
                                   f".flatMap(m => m.left.map(e => e.participant)).filter(p => {ids}.includes(p))")
        assert sorted(left) == sorted(json.loads(ids)), left
    finally:
        for cl in clients:
            await cl.close()
