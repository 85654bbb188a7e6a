"""The native data path's SRTP against real endpoints: Chromium decodes what `sfu._native` protected, for
every DTLS-SRTP profile we accept (GCM and CM each negotiated for real), and an aiortc peer (libsrtp)
decodes the page's camera forwarded the same way."""

from __future__ import annotations

import pytest

from tests.e2e.browser.test_browser import joined, wait_decoding
from tests.support.media import CounterVideo, Tone, decoded_sizes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def data_path() -> str:
    """Overrides the tier's per-path parametrisation: this test is about the native path only."""
    return "native"


@pytest.mark.parametrize("profile", ["SRTP_AEAD_AES_128_GCM", "SRTP_AEAD_AES_256_GCM", "SRTP_AES128_CM_SHA1_80"])
async def test_chromium_decodes_video_protected_by_the_native_srtp(make_server, browser, profile):
    from signalling.protocol.client import Client

    server = await make_server(srtp_profiles=[profile], datapath="native")
    alice = Client(server.url)
    try:
        await alice.connect()
        await alice.join("srtp", "alice")
        await alice.publish(audio=Tone(), video=CounterVideo())
        page = await browser(server, "srtp", "chromium")
        me = (await joined(page))["participant"]
        alice_id = alice.participant["id"]

        await wait_decoding(page, alice_id, more=30)  # every frame went through native rewrite + SRTP

        sub = server.node.peers[me["id"]].subscriber
        assert sub.srtp_profile == profile
        assert sub.egress is not None and sub.egress.sent > 100 and sub.egress.srtp_errors == 0

        # and the other way: the page's camera, forwarded natively to a libsrtp (aiortc) receiver
        _, track = await alice.wait_track(kind="video", participant=me["id"], timeout=30)
        await decoded_sizes(track, 20)
        assert server.node.peers[alice_id].subscriber.srtp_profile == profile
    finally:
        await alice.close()
