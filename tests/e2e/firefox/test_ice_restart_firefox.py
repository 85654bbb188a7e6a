"""Firefox ESR whose address changes mid-call restarts ICE: same participant, same tracks, new path.

As tests/e2e/browser/test_ice_restart_browser.py does for Chromium: Firefox runs in a network
namespace of the test's own, its address changes mid-call, and the web client resumes its WebSocket
and restarts ICE on both connections (Firefox's `createOffer({iceRestart: true})` for the publish
connection, `restart_ice` and the server's new offer for the subscribe connection).
"""

from __future__ import annotations

import pytest

from tests.e2e.browser.test_browser import joined
from tests.e2e.browser.test_ice_restart_browser import NEW_ADDRESS, moved_to, remote_addresses
from tests.support.browser import poll
from tests.support.linked import decoded, firefox_in, publishing_client
from tests.support.media import Sink
from tests.support.netns import CLIENT_IP, SERVER_IP, Link
from tests.support.servers import QUICK_PINGS

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def each_data_path() -> str:
    """One run, forwarding natively: what is Firefox's here is its ICE restart and the web client's;
    the SFU's send side moving to the new pair runs on both data paths in the Chromium test
    (tests/e2e/browser/test_ice_restart_browser.py)."""
    return "native"


async def test_firefox_with_a_new_address_restarts_ice_and_media_resumes_on_it(make_server):
    link = Link().start()
    alice = fx = None
    try:
        server = await make_server(host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"], **QUICK_PINGS)
        alice = await publishing_client(server, "fx-moving")
        fx = await firefox_in(link, server, "fx-moving", "firefox")
        me = (await joined(fx.page))["participant"]
        alice_id = alice.participant["id"]

        async def decoded_more(than: int):
            return (await decoded(fx, alice_id)) >= than + 20

        await poll(lambda: decoded_more(0), "Firefox decoding alice's video", timeout=40)
        _, video = await alice.wait_track(kind="video", participant=me["id"], timeout=30)
        sink = Sink(video)
        await sink.wait_frames(15, timeout=30)
        assert remote_addresses(server, me["id"]) == (CLIENT_IP, CLIENT_IP)

        seen = len(alice.messages)
        link.readdress(NEW_ADDRESS)

        await poll(moved_to(server, me["id"], NEW_ADDRESS), "the SFU's pairs for Firefox on its new address",
                   timeout=40)
        start = await decoded(fx, alice_id)
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
