"""Calls across an emulated link (tests/support/netns.py): the server and an aiortc participant on
the server's side, a browser in the client namespace."""

from __future__ import annotations

from typing import Any

from signalling.protocol.client import Client
from tests.support.firefox import Firefox
from tests.support.media import CounterVideo, Tone
from tests.support.netns import SERVER_IP, Link

# a page at http://10.201.0.1 is not a secure context: let Firefox capture all the same (fake devices)
INSECURE_CAPTURE = {"media.devices.insecure.enabled": True, "media.getusermedia.insecure.enabled": True}


async def publishing_client(server: Any, room: str, name: str = "alice") -> Client:
    """An aiortc participant on the server's side of the link (over loopback), publishing a tone and
    a counter video; the caller closes it."""
    client = Client(f"http://{SERVER_IP}:{server.port}")
    try:
        await client.connect()
        await client.join(room, name)
        await client.publish(audio=Tone(), video=CounterVideo())
    except BaseException:
        await client.close()
        raise
    return client


async def firefox_in(link: Link, server: Any, room: str, name: str) -> Firefox:
    """Firefox in the link's client namespace, on the web client, joined (the caller closes it)."""
    fx = Firefox(f"{server.url}/?room={room}&name={name}&autojoin=1&video=640x360", prefs=INSECURE_CAPTURE,
                 prefix=link.command())
    try:
        await fx.start()
        await fx.wait_for("!!window.basement && document.activeElement.id === 'join-button'")
        await fx.click("#join-button")
    except BaseException:
        await fx.close()
        raise
    return fx


async def decoded(page: Any, participant: str) -> int:
    """Video frames of `participant` the page has decoded so far (the web client's stats)."""
    stats = await page.evaluate("window.basement.stats()")
    got = [s for s in stats["inbound"] if s["participant"] == participant and s["kind"] == "video"]
    return (got[0].get("framesDecoded") or 0) if got else 0
