"""Chat in the web client over WebRTC data channels (docs/protocol.md "Data channels: chat and app
data"): Chromium pages and Python bots exchange messages through the SFU.

The pages type into the chat panel and press Enter or click Send; what they show is read from the
DOM. Pages opened with `audio=0&camera=0` publish no media: their publish connection carries only
the data channels (an offer with only the data m-line).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from eth_account import Account

from signalling.protocol.client import Client
from tests.support.browser import Browser, poll
from tests.support.servers import native_only
from tests.support.signin import sign_in

# chat is data channels (aiortc's SCTP on both data paths) and the page's panel: one run
pytestmark = [pytest.mark.timeout(240), native_only]  # chromium comes with `make test` (system-deps): never skipped

DATA_ONLY = {"audio": "0", "camera": "0"}
HISTORY = 50          # docs/protocol.md: the room replays its last `data_history` chat messages
FLOOD = 400           # well over `data_burst` (150) at once

# every message row of a page's chat panel, as the page shows it
ROWS_JS = """[...document.querySelectorAll('#chat-log .chat-msg')].map((li) => ({
  name: li.querySelector('.chat-name').textContent,
  text: li.querySelector('.chat-text').textContent,
  verified: (li.querySelector('.chat-verified') || {}).title || null,
  own: li.classList.contains('own'),
  history: li.classList.contains('history'),
  failed: li.classList.contains('failed'),
  seq: li.dataset.seq ? Number(li.dataset.seq) : null,
}))"""
NOTICES_JS = "[...document.querySelectorAll('#chat-log .chat-notice')].map((li) => li.textContent)"


@pytest.fixture
async def wallet_bot(server):
    """wallet_bot(room, name) -> (a joined Client signed in with a fresh wallet, its address)."""
    made: list[Client] = []

    async def make(room: str, name: str) -> tuple[Client, str]:
        acct = Account.create()
        async with aiohttp.ClientSession() as http:
            token = await sign_in(http, server.url, acct)
            async with http.post(f"{server.url}/auth/grant", json={"room": room, "signInToken": token}) as r:
                body = await r.json()
                assert r.status == 200, body
        c = Client(server.url)
        made.append(c)
        await c.connect()
        joined = await c.join(room, name, grant=body["grant"])
        assert joined["participant"]["identity"] == acct.address
        return c, acct.address

    yield make
    for c in made:
        await c.close()


async def chat_ready(page: Browser) -> dict[str, Any]:
    """Wait until the page has joined and its reliable channel is open; returns its participant."""
    return await page.wait_for("window.basement && window.basement.state === 'joined' && "
                               "window.basement.chat.ready && window.basement.participant", timeout=45)


async def rows(page: Browser) -> list[dict[str, Any]]:
    return await page.evaluate(ROWS_JS)


async def wait_rows(page: Browser, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait until the panel shows at least n messages; returns them all."""
    return await page.wait_for(f"(() => {{ const r = {ROWS_JS}; return r.length >= {n} && r; }})()", timeout)


async def type_message(page: Browser, text: str, how: str = "enter") -> None:
    """Type into the chat input as a user does, then press Enter or click Send."""
    await page.evaluate("document.querySelector('#chat-input').focus()")
    assert await page.evaluate("document.activeElement.id") == "chat-input"
    await page.send("Input.insertText", {"text": text})
    assert await page.evaluate("document.querySelector('#chat-input').value") == text
    if how == "enter":
        for kind in ("keyDown", "keyUp"):
            await page.send("Input.dispatchKeyEvent", {
                "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                "nativeVirtualKeyCode": 13, **({"text": "\r"} if kind == "keyDown" else {})})
    else:
        await page.click("#chat-send")
    # sent: the input is empty again
    await page.wait_for("document.querySelector('#chat-input').value === ''", timeout=5)


def received(client: Client, sender: str | None = None) -> list[dict[str, Any]]:
    """The chat messages a Python client received (from `sender` only, when given)."""
    return [m for m in client.data
            if m.get("type") == "data" and m.get("topic") == "chat" and (sender is None or m.get("from") == sender)]


def increasing(seqs: list[Any]) -> bool:
    return all(isinstance(s, int) for s in seqs) and all(a < b for a, b in zip(seqs, seqs[1:]))


async def test_two_pages_and_a_bot_chat_burst_in_order_and_history_for_a_late_joiner(server, browser, wallet_bot):
    room = "chat1"
    bot, bot_address = await wallet_bot(room, "bot")
    await bot.publish(data=True)
    await bot.wait_data_open()
    page_a = await browser(server, room, "ada")             # camera + microphone + the data channels
    page_b = await browser(server, room, "bob", **DATA_ONLY)  # the data channels alone
    ada, bob = await chat_ready(page_a), await chat_ready(page_b)
    # ada's media went out in the same offer as her channels
    await page_a.wait_for("window.basement.published.video && window.basement.published.audio", timeout=30)
    assert await page_b.evaluate("window.basement.published") == {}
    assert await page_b.evaluate("document.querySelector('#chat-panel').hidden") is True

    # ada opens the panel and types two messages: Enter sends the first, the Send button the second
    await page_a.click("#toggle-chat")
    assert await page_a.evaluate("document.querySelector('#chat-panel').hidden") is False
    await type_message(page_a, "hello from ada", how="enter")
    await type_message(page_a, "second, by click", how="click")
    mine = await wait_rows(page_a, 2)
    assert [(r["name"], r["text"], r["own"], r["verified"]) for r in mine] == [
        ("ada (you)", "hello from ada", True, None), ("ada (you)", "second, by click", True, None)]

    # bob's panel is closed: two unread, then opened, the badge goes away and ada's name is shown
    await page_b.wait_for("window.basement.chat.unread === 2", timeout=30)
    assert await page_b.evaluate("[document.querySelector('#chat-unread').textContent, "
                                 "document.querySelector('#chat-unread').hidden]") == ["2", False]
    await page_b.click("#toggle-chat")
    assert await page_b.evaluate("[window.basement.chat.unread, document.querySelector('#chat-unread').hidden]"
                                 ) == [0, True]
    shown = await wait_rows(page_b, 2)
    assert [(r["name"], r["text"], r["own"], r["history"], r["verified"]) for r in shown] == [
        ("ada", "hello from ada", False, False, None), ("ada", "second, by click", False, False, None)]

    # the bot receives them as the protocol says
    await bot.wait_for(lambda: len(received(bot, ada["id"])) >= 2, timeout=30)
    got = received(bot, ada["id"])
    assert [m["data"] for m in got] == ["hello from ada", "second, by click"]
    for m in got:
        assert (m["name"], m["identity"], m["topic"]) == ("ada", ada["identity"], "chat"), m
        assert m["identity"].startswith("guest-") and "to" not in m and "history" not in m, m
        assert isinstance(m["at"], int) and m["at"] > 1_600_000_000_000, m
    assert increasing([m["seq"] for m in got])
    assert [r["seq"] for r in shown] == [m["seq"] for m in got]  # one numbering for the whole room

    # the bot (signed in with its wallet) writes: both pages show it, marked as verified
    bot.send_data("hi from the bot")
    for page in (page_a, page_b):
        r = (await wait_rows(page, 3))[2]
        assert (r["name"], r["text"], r["own"], r["verified"]) == (
            "bot", "hi from the bot", False, f"signed in with wallet {bot_address}"), r
        assert await page.evaluate("document.querySelector('#chat-log .chat-verified').textContent") == "✓"
    # bob's panel is open: nothing unread; ada's too
    assert await page_b.evaluate("window.basement.chat.unread") == 0
    assert await page_a.evaluate("window.basement.chat.unread") == 0

    # bob sends 100 messages at once on the reliable channel: all arrive, in order, everywhere
    burst = [f"burst {i:03d}" for i in range(100)]
    ids = await page_b.evaluate(f"{json.dumps(burst)}.map((t) => window.basement.chat.send(t))")
    assert len(set(ids)) == 100 and all(isinstance(i, int) for i in ids), ids
    await bot.wait_for(lambda: len(received(bot, bob["id"])) >= 100, timeout=30)
    at_bot = received(bot, bob["id"])
    assert [m["data"] for m in at_bot] == burst
    assert {(m["name"], m["identity"]) for m in at_bot} == {("bob", bob["identity"])}
    assert increasing([m["seq"] for m in at_bot])
    at_a = await page_a.wait_for(
        f"(() => {{ const m = window.basement.chat.messages.filter((m) => m.from === {json.dumps(bob['id'])});"
        " return m.length >= 100 && m; })()", timeout=30)
    assert [m["data"] for m in at_a] == burst
    assert [m["seq"] for m in at_a] == [m["seq"] for m in at_bot]
    assert [r["text"] for r in await rows(page_a)][3:] == burst
    assert await page_b.evaluate("window.basement.chat.errors") == []
    assert [m["data"] for m in await page_b.evaluate("window.basement.chat.messages.filter((m) => m.own)")] == burst
    # nobody got their own messages back: the pages show theirs by local echo only
    assert received(bot, bot.participant["id"]) == []
    for page, me in ((page_a, ada), (page_b, bob)):
        assert await page.evaluate(f"window.basement.chat.messages.filter((m) => !m.own && "
                                   f"m.from === {json.dumps(me['id'])}).length") == 0

    # one more from ada, then carol joins late: the room's last 50 chat messages are replayed to her
    await type_message(page_a, "after the burst")
    await bot.wait_for(lambda: [m["data"] for m in received(bot, ada["id"])][-1:] == ["after the burst"], timeout=30)
    page_c = await browser(server, room, "carol", **DATA_ONLY)
    await chat_ready(page_c)
    # (her panel is closed: the replayed messages are unread)
    await page_c.wait_for(f"window.basement.chat.unread === {HISTORY}", timeout=30)
    await page_c.click("#toggle-chat")
    history = await wait_rows(page_c, HISTORY)
    want = [("bob", f"burst {i:03d}") for i in range(100 - HISTORY + 1, 100)] + [("ada", "after the burst")]
    assert [(r["name"], r["text"]) for r in history] == want
    assert all(r["history"] and not r["own"] and r["verified"] is None for r in history)
    assert increasing([r["seq"] for r in history])
    assert [r["seq"] for r in history[:-1]] == [m["seq"] for m in at_bot][-(HISTORY - 1):]
    replayed = await page_c.evaluate("window.basement.chat.messages")
    assert len(replayed) == HISTORY and all(m["history"] is True for m in replayed)

    # and then live messages, after the history
    bot.send_data("welcome, carol")
    r = (await wait_rows(page_c, HISTORY + 1))[-1]
    assert (r["name"], r["text"], r["history"], r["verified"]) == (
        "bot", "welcome, carol", False, f"signed in with wallet {bot_address}")
    assert len(await rows(page_c)) == HISTORY + 1


async def test_oversized_flood_and_html_are_refused_or_shown_as_text(server, browser, connect):
    room = "chat2"
    bot_name = "<img src=x onerror=window.__pwnedName=1>"
    bot = await connect(room, bot_name)
    await bot.publish(data=True)
    await bot.wait_data_open()
    page = await browser(server, room, "ada", **DATA_ONLY)
    ada = await chat_ready(page)
    await page.click("#toggle-chat")
    assert await page.evaluate("document.querySelector('#chat-input').maxLength") == 4000

    # over 16 KiB: the page refuses it itself ...
    assert await page.evaluate("window.basement.chat.send('x'.repeat(17000))") is None
    notices = await page.wait_for(f"{NOTICES_JS}.length === 1 && {NOTICES_JS}", timeout=5)
    assert notices[0].startswith("message too long (") and "at most 16384" in notices[0], notices
    # ... and the server refuses it when sent past the page's check: an error, shown in the panel
    assert await page.evaluate("window.basement.chat.sendRaw("
                               "{type: 'data', topic: 'chat', data: 'x'.repeat(17000), id: 'big'})") is True
    errors = await page.wait_for("window.basement.chat.errors.length >= 1 && window.basement.chat.errors", timeout=30)
    assert [e["code"] for e in errors] == ["message_too_large"], errors
    notices = await page.wait_for(f"{NOTICES_JS}.length === 2 && {NOTICES_JS}", timeout=5)
    assert notices[1].startswith("message_too_large: "), notices
    # a message the server cannot take (65 recipients, over the 64 allowed) is marked in the panel
    # by the id the error carries back
    bad = await page.evaluate("window.basement.chat.send('to too many', "
                              "{to: Array.from({length: 65}, (_, i) => 'PA_nobody' + i)})")
    assert isinstance(bad, int)
    errors = await page.wait_for("window.basement.chat.errors.length >= 2 && window.basement.chat.errors", timeout=30)
    assert [(e["code"], e.get("id")) for e in errors[1:]] == [("invalid_message", bad)], errors
    await page.wait_for("!!document.querySelector('#chat-log .chat-msg.own.failed')", timeout=5)
    assert (await page.evaluate("window.basement.chat.messages.map((m) => [m.data, m.error || null])")
            == [["to too many", "invalid_message"]])
    notices = await page.evaluate(NOTICES_JS)
    assert len(notices) == 3 and notices[2].startswith("invalid_message: "), notices
    # just under the limit goes through; none of the refused messages reached the bot (the channel
    # is ordered: anything relayed before would have come first)
    assert isinstance(await page.evaluate("window.basement.chat.send('y'.repeat(16000))"), int)
    await bot.wait_for(lambda: received(bot, ada["id"]), timeout=30)
    assert [m["data"] for m in received(bot, ada["id"])] == ["y" * 16000]

    # HTML is text: typed by ada, and from a bot whose very name is markup
    html = '<img src=x onerror="window.__pwned=1">'
    await type_message(page, html)
    await bot.wait_for(lambda: len(received(bot, ada["id"])) >= 2, timeout=30)
    assert received(bot, ada["id"])[1]["data"] == html
    bot_html = "<b>bold</b><script>window.__pwned=2</script>"
    bot.send_data(bot_html)
    shown = await wait_rows(page, 4)
    assert [(r["name"], r["text"], r["failed"]) for r in shown] == [
        ("ada (you)", "to too many", True), ("ada (you)", "y" * 16000, False), ("ada (you)", html, False),
        (bot_name, bot_html, False)]
    assert await page.evaluate("document.querySelectorAll('#chat-panel img, #chat-panel b, "
                               "#chat-panel script').length") == 0
    assert await page.evaluate("[typeof window.__pwned, typeof window.__pwnedName]") == ["undefined", "undefined"]

    # a flood: 400 at once. Some are refused (rate_limited); exactly the others are relayed, in order
    flood = [f"flood {i:03d}" for i in range(FLOOD)]
    before = len(await page.evaluate("window.basement.chat.errors"))
    ids = await page.evaluate(f"{json.dumps(flood)}.map((t) => window.basement.chat.send(t))")
    assert len(set(ids)) == FLOOD and all(isinstance(i, int) for i in ids), ids

    def delivered() -> list[dict[str, Any]]:
        return [m for m in received(bot, ada["id"]) if m["data"].startswith("flood ")]

    async def settled():
        refused = (await page.evaluate("window.basement.chat.errors"))[before:]
        lost = [m for m in bot.data if m.get("type") == "data_lost"]
        done = len(refused) + len(delivered()) >= FLOOD or lost
        return (refused, delivered()) if done else None

    refused, got = await poll(settled, "every flood message either refused or relayed", timeout=60)
    assert [m for m in bot.data if m.get("type") != "data"] == []  # nothing lost, no errors to the bot
    assert {e["code"] for e in refused} == {"rate_limited"}, refused[:3]
    # each refusal names its message by id; exactly the others were relayed, in the order sent
    refused_ids = [e.get("id") for e in refused]
    assert len(set(refused_ids)) == len(refused_ids) >= 1 and set(refused_ids) <= set(ids), refused_ids
    assert len(refused) + len(got) == FLOOD
    assert [m["data"] for m in got] == [t for i, t in zip(ids, flood) if i not in set(refused_ids)]
    assert [m["data"] for m in got[:100]] == flood[:100]  # the burst allowance (150), less what came just before
    assert increasing([m["seq"] for m in got])
    # the panel: one line for the whole run of refusals, with their count; the last 200 messages,
    # those refused marked
    notices = await page.evaluate(NOTICES_JS)
    assert len(notices) == 4 and notices[3].startswith("rate_limited: "), notices
    assert notices[3].endswith(f"(×{len(refused)})") if len(refused) > 1 else "×" not in notices[3]
    kept = await page.evaluate("window.basement.chat.messages.map((m) => [m.id, m.data, m.error || null])")
    assert kept == [[i, t, "rate_limited" if i in set(refused_ids) else None]
                    for i, t in zip(ids[-200:], flood[-200:])]
    assert [(r["text"], r["failed"]) for r in await rows(page)] == [
        (t, i in set(refused_ids)) for i, t in zip(ids[-200:], flood[-200:])]
