"""Firefox ESR whose address changes mid-call restarts ICE: same participant, same tracks, new path.

As tests/e2e/browser/test_ice_restart_browser.py does for Chromium: Firefox runs in a network
namespace of the test's own, its address changes mid-call, and the web client resumes its WebSocket
and restarts ICE on both connections (Firefox's `createOffer({iceRestart: true})` for the publish
connection, `restart_ice` and the server's new offer for the subscribe connection).
"""

from __future__ import annotations

import pytest

from signalling.protocol.client import Client
from tests.e2e.browser.test_browser import joined
from tests.e2e.browser.test_ice_restart_browser import NEW_ADDRESS, _remote_addresses
from tests.e2e.firefox.test_ice_tcp_firefox import INSECURE_CAPTURE
from tests.support.browser import poll
from tests.support.firefox import Firefox
from tests.support.media import CounterVideo, Sink, Tone
from tests.support.netns import CLIENT_IP, SERVER_IP, Link

pytestmark = pytest.mark.timeout(150)


async def _decoded(fx: Firefox, participant: str) -> int:
    stats = await fx.evaluate("window.basement.stats()")
    got = [s for s in stats["inbound"] if s["participant"] == participant and s["kind"] == "video"]
    return (got[0].get("framesDecoded") or 0) if got else 0


async def test_firefox_with_a_new_address_restarts_ice_and_media_resumes_on_it(make_server):
    link = Link().start()
    alice = fx = None
    try:
        server = await make_server(host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"])
        alice = Client(f"http://{SERVER_IP}:{server.port}")
        await alice.connect()
        await alice.join("fx-moving", "alice")
        await alice.publish(audio=Tone(), video=CounterVideo())
        url = f"{server.url}/?room=fx-moving&name=firefox&autojoin=1&video=640x360"
        fx = Firefox(url, prefs=INSECURE_CAPTURE, prefix=link.command())
        await fx.start()
        await fx.wait_for("!!window.basement && document.activeElement.id === 'join-button'")
        await fx.click("#join-button")
        me = (await joined(fx.page))["participant"]
        alice_id = alice.participant["id"]

        async def decoded_more(than: int):
            return (await _decoded(fx, alice_id)) >= than + 20

        await poll(lambda: decoded_more(0), "Firefox decoding alice's video", timeout=40)
        _, video = await alice.wait_track(kind="video", participant=me["id"], timeout=30)
        sink = Sink(video)
        await sink.wait_frames(15, timeout=30)
        assert _remote_addresses(server, me["id"]) == (CLIENT_IP, CLIENT_IP)

        seen = len(alice.messages)
        link.readdress(NEW_ADDRESS)

        async def moved():
            try:
                return _remote_addresses(server, me["id"]) == (NEW_ADDRESS, NEW_ADDRESS)
            except (KeyError, AttributeError, IndexError):
                return False

        await poll(moved, "the SFU's pairs for Firefox on its new address", timeout=40)
        start = await _decoded(fx, alice_id)
        await poll(lambda: decoded_more(start), "Firefox decoding alice's video again", timeout=30)
        before = sink.frames
        await sink.wait_frames(before + 20, timeout=30)
        restarts = await fx.evaluate("window.basement.iceRestarts || {}")
        assert restarts.get("publisher", 0) >= 1 and restarts.get("subscriber", 0) >= 1, restarts
        assert await fx.evaluate("window.basement.participant.id") == me["id"]
        assert not [m for m in alice.messages[seen:] if m.get("type") in ("participant_left", "participant_joined")]
    finally:
        if fx is not None:
            await fx.close()
        if alice is not None:
            await alice.close()
        link.stop()
