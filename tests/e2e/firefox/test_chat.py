"""Chat between the web client in Firefox ESR and a Python bot, through the SFU's data channels
(docs/protocol.md "Data channels: chat and app data").

An interop check of the SCTP stacks: Firefox's is usrsctp (its own defaults, e.g. an
a=max-message-size of about 1 GiB), the SFU's and the bot's are aiortc's. The page types into the
chat panel with WebDriver BiDi key and pointer actions (real input events, not scripted `click()`s
or value assignments) and what it shows is read from the DOM; bursts and large messages go through
`window.basement.chat.send` (signalling/web/static/chat.js). Messages near the 16 KiB limit are
fragmented into many SCTP DATA chunks both ways, with multi-byte UTF-8 inside, and their text is
position-dependent, so a lost, doubled or reordered fragment would show.

Every server a test starts forwards natively in one run and in Python in the other (conftest.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from signalling.protocol.client import Client
from tests.e2e.firefox.playback import encoded_sizes, layer_size, publisher
from tests.support.browser import poll
from tests.support.firefox import Page
from tests.support.media import Sink
from tests.support.servers import native_only

# chat is data channels (aiortc's SCTP on both data paths) and the page's panel: one run
pytestmark = [pytest.mark.timeout(240), native_only]  # firefox-esr comes with `make test`: never skipped

LIMIT = 16 * 1024     # data_max_message_bytes: the client's message as sent, UTF-8
BIG = "".join(f"{i:05d}|" for i in range(2500))  # 15,000 characters, each block numbered
assert len(BIG) == 15_000
ENTER = "\ue007"      # WebDriver's key value for Enter
DATA_ONLY = {"audio": "0", "camera": "0"}

# every message row of the page's chat panel, as the page shows it
ROWS_JS = """[...document.querySelectorAll('#chat-log .chat-msg')].map((li) => ({
  name: li.querySelector('.chat-name').textContent,
  text: li.querySelector('.chat-text').textContent,
  own: li.classList.contains('own'),
  history: li.classList.contains('history'),
  failed: li.classList.contains('failed'),
  verified: !!li.querySelector('.chat-verified'),
  from: li.dataset.from || null,
  seq: li.dataset.seq ? Number(li.dataset.seq) : null,
}))"""


# --- the page ----------------------------------------------------------------------------------
async def chat_ready(page: Page) -> dict[str, Any]:
    """Wait until the page has joined and its reliable channel is open; returns its participant."""
    return await page.wait_for("window.basement && window.basement.state === 'joined' && "
                               "window.basement.chat.ready && window.basement.participant", timeout=45)


async def rows(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate(ROWS_JS)


async def row_count(page: Page, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait until the panel shows exactly n messages (fails at once on more); returns them."""
    count = await page.wait_for(f"(() => {{ const n = document.querySelectorAll('#chat-log .chat-msg').length;"
                                f" return n >= {n} && n; }})()", timeout)
    assert count == n, f"the panel shows {count} messages, not {n}"
    return await rows(page)


async def messages_from(page: Page, sender: str, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait until window.basement.chat.messages holds n messages from `sender` (no more); returns them."""
    pick = f"window.basement.chat.messages.filter((m) => !m.own && m.from === {json.dumps(sender)})"
    count = await page.wait_for(f"(() => {{ const n = {pick}.length; return n >= {n} && n; }})()", timeout)
    assert count == n, f"{count} messages from {sender} in the page, not {n}"
    return await page.evaluate(pick)


async def actions(page: Page, *sources: dict[str, Any]) -> None:
    """WebDriver BiDi input actions in the page, then release whatever they left pressed."""
    await page.firefox.send("input.performActions", {"context": page.context, "actions": list(sources)})
    await page.firefox.send("input.releaseActions", {"context": page.context})


async def real_click(page: Page, selector: str) -> None:
    """A mouse click at the middle of the element, as a user's (trusted events, hit-tested)."""
    box = await page.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                              ".getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2,"
                              " r.width, r.height]; })()")
    x, y, w, h = box
    assert w > 0 and h > 0, f"{selector} is not rendered: {box}"
    hit = await page.evaluate(f"(() => {{ const e = document.elementFromPoint({x}, {y});"
                              f" const t = document.querySelector({json.dumps(selector)});"
                              f" return e === t || t.contains(e); }})()")
    assert hit, f"{selector} is covered at ({x}, {y})"
    await actions(page, {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
        {"type": "pointerMove", "x": int(x), "y": int(y), "origin": "viewport"},
        {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]})


async def type_message(page: Page, text: str, how: str = "enter") -> None:
    """Type into the chat input key by key, then press Enter or click Send."""
    await page.evaluate("document.querySelector('#chat-input').focus()")
    assert await page.evaluate("document.activeElement.id") == "chat-input"
    keys: list[dict[str, Any]] = []
    for ch in text:
        keys += [{"type": "keyDown", "value": ch}, {"type": "keyUp", "value": ch}]
    await actions(page, {"type": "key", "id": "keyboard", "actions": keys})
    assert await page.evaluate("document.querySelector('#chat-input').value") == text
    if how == "enter":
        await actions(page, {"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": ENTER}, {"type": "keyUp", "value": ENTER}]})
    else:
        await real_click(page, "#chat-send")
    # sent: the input is empty again
    await page.wait_for("document.querySelector('#chat-input').value === ''", timeout=5)


# --- the bot -----------------------------------------------------------------------------------
async def chatting_bot(connect: Callable[..., Any], room: str, name: str = "bot") -> Client:
    bot = await connect(room, name)
    await bot.publish(data=True)
    await bot.wait_data_open()
    return bot


def chat_from(bot: Client, sender: str) -> list[dict[str, Any]]:
    return [m for m in bot.data_received("chat") if m.get("from") == sender]


async def wait_chat_from(bot: Client, sender: str, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait until the bot has n chat messages from `sender` (no more); returns them."""
    await bot.wait_for(lambda: len(chat_from(bot, sender)) >= n, timeout=timeout)
    got = chat_from(bot, sender)
    assert len(got) == n, [m["data"][:40] for m in got]
    return got


def not_data(bot: Client) -> list[dict[str, Any]]:
    """What else the bot's channels brought: errors, data_lost."""
    return [m for m in bot.data if m.get("type") != "data"]


# --- messages of an exact size ---------------------------------------------------------------
def sized(wire: Callable[[str], int], size: int) -> str:
    """A text whose message, as `wire` encodes it, is exactly `size` UTF-8 bytes: numbered blocks
    with 2-, 3- and 4-byte characters in each (an emoji is a surrogate pair in JS and JSON escapes),
    padded with ASCII."""
    parts: list[str] = []
    used = wire("")
    i = 0
    while True:
        block = f"{i:04d}é€🦊|"
        cost = wire(block) - wire("")
        if used + cost > size:
            break
        parts.append(block)
        used += cost
        i += 1
    text = "".join(parts)
    text += "#" * (size - wire(text))
    assert wire(text) == size
    return text


def bot_wire(text: str) -> int:
    """The bot's message as Client.send_data puts it on its channel (json.dumps: ASCII, escapes)."""
    return len(json.dumps({"type": "data", "topic": "chat", "data": text}).encode())


def page_wire(msg_id: int) -> Callable[[str], int]:
    """The page's message with id `msg_id` as chat.js sends it (JSON.stringify: compact, UTF-8)."""
    def wire(text: str) -> int:
        msg = {"type": "data", "topic": "chat", "data": text, "id": msg_id}
        return len(json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode())
    return wire


# --- the tests ---------------------------------------------------------------------------------
async def test_firefox_chats_with_a_bot_by_typing_in_a_burst_and_lossy_beside_its_video(server, firefox, connect):
    room = "fx-chat1"
    bot = await chatting_bot(connect, room)
    bot_id = bot.participant["id"]
    page = await firefox(server, room, "fox", audio="0")  # camera + the data channels, one connection
    fx = await chat_ready(page)
    pub = await publisher(page)
    assert pub["participant"] == fx["id"] and fx["name"] == "fox"

    # the bot receives the page's camera, picks its lowest layer and decodes it all along
    info, track = await bot.wait_track(kind="video", participant=fx["id"], timeout=30)
    assert (info["track"], info["name"]) == (pub["video"], "fox"), info
    # (q may not be arriving yet: with the bot its only subscriber, asking for the best layer by
    # default, dynacast had Firefox encode f alone; the server then forwards f until q is back)
    chosen = (await bot.subscription(pub["video"], layer="low"))["layer"]
    assert chosen in ("q", "h", "f"), chosen
    if chosen != "q":  # (dynacast had Firefox encode only the layers that were wanted: q comes back)
        await bot.wait_message("layer_changed", track=pub["video"], layer="q", timeout=30)
    sink = Sink(track)

    # the panel opens with a click; two messages typed: the first sent with Enter, the second by Send
    assert await page.evaluate("document.querySelector('#chat-panel').hidden") is True
    await real_click(page, "#toggle-chat")
    assert await page.evaluate("[document.querySelector('#chat-panel').hidden, window.basement.chat.isOpen]"
                               ) == [False, True]
    typed = ["hello from firefox", "grüße, second ✓ by click"]
    await type_message(page, typed[0], how="enter")
    await type_message(page, typed[1], how="click")
    shown = await row_count(page, 2)
    assert [(r["name"], r["text"], r["own"], r["failed"]) for r in shown] == [
        ("fox (you)", typed[0], True, False), ("fox (you)", typed[1], True, False)]

    # the bot receives them with the page's participant id, name and identity, in order
    got = await wait_chat_from(bot, fx["id"], 2)
    assert [m["data"] for m in got] == typed
    for m in got:
        assert (m["from"], m["name"], m["identity"], m["topic"]) == (fx["id"], "fox", fx["identity"], "chat"), m
        assert "to" not in m and "history" not in m and isinstance(m["at"], int), m
    assert [m["seq"] for m in got] == [1, 2]  # the room's first relayed messages

    # the bot writes: the page shows it in the panel (open: nothing unread) and holds it as sent
    hello = "hi fox, from the bot 🤖 <b>not bold</b>"
    bot.send_data(hello)
    (r,) = (await row_count(page, 3))[2:]
    assert (r["name"], r["text"], r["own"], r["history"], r["verified"], r["from"], r["seq"]) == (
        "bot", hello, False, False, False, bot_id, 3), r
    (m,) = await messages_from(page, bot_id, 1)
    assert {k: m[k] for k in ("type", "seq", "from", "name", "identity", "topic", "data")} == {
        "type": "data", "seq": 3, "from": bot_id, "name": "bot", "identity": bot.participant["identity"],
        "topic": "chat", "data": hello}, m
    assert "to" not in m and "history" not in m, m
    assert await page.evaluate("[window.basement.chat.unread, document.querySelector('#chat-panel b')]") == [0, None]

    # a burst of 100 from the page at once: all reach the bot, in order, numbered one after the other
    frames_before = sink.frames
    burst = [f"burst {i:03d}" for i in range(100)]
    ids = await page.evaluate(f"{json.dumps(burst)}.map((t) => window.basement.chat.send(t))")
    assert ids == list(range(ids[0], ids[0] + 100)), ids
    got = await wait_chat_from(bot, fx["id"], 102)
    assert [m["data"] for m in got[2:]] == burst
    assert [m["seq"] for m in got[2:]] == list(range(4, 104))
    assert {(m["name"], m["identity"]) for m in got} == {("fox", fx["identity"])}
    assert not_data(bot) == []
    assert await page.evaluate("[window.basement.chat.errors, window.basement.chat.lost]") == [[], 0]
    assert [r["text"] for r in await row_count(page, 103)] == [*typed, hello, *burst]

    # the lossy channel (unordered, no retransmissions; a different SCTP stream setup) both ways. A
    # lossy message may be dropped by design (a chunk not acknowledged before the retransmission
    # timer is abandoned, which a starved machine can cause even on loopback): send until one arrives
    sent_by_bot: list[str] = []
    for k in range(100):
        sent_by_bot.append(f"lossy from the bot {k}")
        bot.send_data(sent_by_bot[-1], lossy=True)
        try:
            await page.wait_for(f"window.basement.chat.messages.filter((m) => m.from === {json.dumps(bot_id)})"
                                ".length >= 2", timeout=0.5)
            break
        except TimeoutError:
            continue
    lossy_in_page = (await page.evaluate(f"window.basement.chat.messages.filter(m => m.from === "
                                         f"{json.dumps(bot_id)})"))[1:]
    assert lossy_in_page and {m["data"] for m in lossy_in_page} <= set(sent_by_bot), lossy_in_page
    assert all(m["name"] == "bot" and m["seq"] > 103 for m in lossy_in_page), lossy_in_page
    sent_by_fox: list[str] = []
    for k in range(100):
        sent_by_fox.append(f"lossy from fox {k}")
        assert isinstance(await page.evaluate(f"window.basement.chat.send({json.dumps(sent_by_fox[-1])}, "
                                              "{lossy: true})"), int)
        try:
            await wait_chat_from(bot, fx["id"], 103, timeout=0.5)
            break
        except TimeoutError:
            continue
    lossy_at_bot = chat_from(bot, fx["id"])[102:]
    assert lossy_at_bot and {m["data"] for m in lossy_at_bot} <= set(sent_by_fox), lossy_at_bot
    assert all(m["name"] == "fox" for m in lossy_at_bot), lossy_at_bot

    # the camera went on through all this: the bot keeps decoding it, at the size Firefox encodes q at
    encoded: list[Any] = []

    async def decoding() -> bool:
        encoded[:] = [await encoded_sizes(page)]
        size = layer_size(encoded[0], "q")
        recent = {(w, h) for _, w, h in sink.timeline[-10:]}
        return bool(size and sink.frames - frames_before >= 30 and recent == {size})

    try:
        await poll(decoding, "the bot decoding the page's q layer", timeout=30)
    except TimeoutError:
        raise TimeoutError(f"the bot decoded {sink.frames} frames ({frames_before} before the burst), "
                           f"sizes {sorted(sink.sizes)}, last {sink.timeline[-3:]}; the page encodes "
                           f"{encoded}") from None
    sink.stop()
    assert not_data(bot) == [] and await page.evaluate("window.basement.chat.errors") == []


async def test_fragmented_messages_up_to_the_limit_both_ways(server, firefox, connect):
    room = "fx-chat2"
    bot = await chatting_bot(connect, room)
    bot_id = bot.participant["id"]
    page = await firefox(server, room, "fox", **DATA_ONLY)  # the data channels alone
    fx = await chat_ready(page)
    assert await page.evaluate("window.basement.published") == {}
    await real_click(page, "#toggle-chat")

    # Firefox -> bot: 15,000 characters, then a message of exactly the limit (its wire size computed
    # for the id chat.js gives it: the next one)
    first = await page.evaluate(f"window.basement.chat.send({json.dumps(BIG)})")
    assert isinstance(first, int)
    at_limit = sized(page_wire(first + 1), LIMIT)
    assert await page.evaluate(
        f"new TextEncoder().encode(JSON.stringify({{type: 'data', topic: 'chat', data: {json.dumps(at_limit)},"
        f" id: {first + 1}}})).length") == LIMIT
    assert await page.evaluate(f"window.basement.chat.send({json.dumps(at_limit)})") == first + 1
    got = await wait_chat_from(bot, fx["id"], 2)
    assert [m["data"] for m in got] == [BIG, at_limit]
    assert [(m["name"], m["identity"], m["seq"]) for m in got] == [
        ("fox", fx["identity"], 1), ("fox", fx["identity"], 2)]

    # one byte over, sent past the page's own check: Firefox's SCTP carries it, the server refuses it
    over = "x" * (LIMIT + 1 - len(json.dumps({"type": "data", "topic": "chat", "data": ""}, separators=(",", ":"))))
    assert await page.evaluate(
        f"(() => {{ const w = JSON.stringify({{type: 'data', topic: 'chat', data: {json.dumps(over)}}});"
        f" return new TextEncoder().encode(w).length === {LIMIT + 1} && window.basement.chat.sendRaw(w); }})()"
    ) is True
    errors = await page.wait_for("window.basement.chat.errors.length >= 1 && window.basement.chat.errors", timeout=30)
    assert errors == [{"type": "error", "code": "message_too_large",
                       "message": f"message of {LIMIT + 1} bytes; at most {LIMIT} are relayed"}], errors
    # (nothing reached the bot: the channel is ordered, and the next message arrives alone)
    assert await page.evaluate("window.basement.chat.send('after the refused one')") == first + 2
    got = await wait_chat_from(bot, fx["id"], 3)
    assert [(m["data"], m["seq"]) for m in got[2:]] == [("after the refused one", 3)]

    # bot -> Firefox: 15,000 characters and exactly the limit, shown intact in the panel
    bot_limit = sized(bot_wire, LIMIT)
    bot.send_data(BIG)
    bot.send_data(bot_limit)
    got = await messages_from(page, bot_id, 2)
    assert [(m["data"], m["seq"], m["name"], m["identity"]) for m in got] == [
        (BIG, 4, "bot", bot.participant["identity"]), (bot_limit, 5, "bot", bot.participant["identity"])]
    shown = await row_count(page, 5)
    assert [(r["name"], r["text"], r["own"], r["failed"]) for r in shown] == [
        ("fox (you)", BIG, True, False), ("fox (you)", at_limit, True, False),
        ("fox (you)", "after the refused one", True, False),
        ("bot", BIG, False, False), ("bot", bot_limit, False, False)]

    # and one byte over from the bot: refused to it, never shown in the page
    bot.send_data(bot_limit + "#")
    await bot.wait_for(lambda: not_data(bot), timeout=30)
    assert not_data(bot) == [{"type": "error", "code": "message_too_large",
                              "message": f"message of {LIMIT + 1} bytes; at most {LIMIT} are relayed"}]
    bot.send_data("done")
    got = await messages_from(page, bot_id, 3)
    assert [(m["data"], m["seq"]) for m in got[2:]] == [("done", 6)]
    assert [r["text"] for r in await row_count(page, 6)][5:] == ["done"]
    assert len(await page.evaluate("window.basement.chat.errors")) == 1
    assert await page.evaluate("[window.basement.chat.lost, window.basement.chat.unread]") == [0, 0]
