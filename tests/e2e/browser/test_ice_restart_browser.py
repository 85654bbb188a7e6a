"""A participant's network changes mid-call and ICE restarts: same participant, same tracks, new path.

Chromium runs in a network namespace of the test's own (tests/support/netns.py). Mid-call its address
changes, as a phone's does moving from Wi-Fi to cellular: every socket on the old address is dead,
the media paths and the signalling WebSocket alike. The web client resumes its WebSocket (the same
participant, docs/protocol.md "Reconnecting") and, seeing both peer connections disconnected,
restarts ICE on each (docs/protocol.md "A connection whose path died"): the publish connection with
an offer that has new ICE credentials, the subscribe connection by asking for one. Media then flows
both ways again over the new address, with nobody in the room seeing a leave or a join.

The native data path runs it in single-port mode (`ice_udp_port`: the shared socket must learn the
new address by the restart's new credentials, and the native egress moves with its SRTP state), the
Python path with a port per connection.
"""

from __future__ import annotations

import pytest

from signalling.ports import free_port
from tests.e2e.browser.test_browser import joined, media_both_ways, wait_decoding
from tests.support.browser import poll
from tests.support.linked import publishing_client
from tests.support.netns import CLIENT_IP, SERVER_IP, Link
from tests.support.servers import QUICK_PINGS

pytestmark = pytest.mark.timeout(150)

NEW_ADDRESS = "10.201.0.3"


def remote_addresses(server, participant: str) -> tuple[str, str]:
    """The remote address of the pair the SFU's ICE uses now, for the publish and subscribe connection."""
    peer = server.node.peers[participant]
    out = []
    for transport in (peer.publisher, peer.subscriber):
        ice = transport.pc.getTransceivers()[0].receiver.transport.transport
        out.append(ice._connection._nominated[1].remote_addr[0])
    return out[0], out[1]


def moved_to(server, participant: str, address: str):
    """A check for `poll`: both of the participant's connections use a pair to `address`."""

    async def check() -> bool:
        try:
            return remote_addresses(server, participant) == (address, address)
        except (KeyError, AttributeError, IndexError):  # (a connection being replaced)
            return False

    return check


async def test_a_new_client_address_restarts_ice_and_media_resumes_on_it(make_server, browser, data_path):
    link = Link().start()
    alice = None
    try:
        one_port = free_port() if data_path == "native" else 0
        server = await make_server(host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"], ice_udp_port=one_port,
                                   **QUICK_PINGS)
        alice = await publishing_client(server, "moving")
        page = await browser(server, "moving", "chromium", prefix=link.command())
        me = (await joined(page))["participant"]
        sink = await media_both_ways(page, alice, me, frames=15)
        assert remote_addresses(server, me["id"]) == (CLIENT_IP, CLIENT_IP)

        seen = len(alice.messages)
        link.readdress(NEW_ADDRESS)

        await poll(moved_to(server, me["id"], NEW_ADDRESS), "the SFU's pairs for the page on its new address",
                   timeout=40)
        # media flows both ways again: the page decodes alice's video, alice decodes the page's
        await wait_decoding(page, alice.participant["id"], more=20, timeout=30)
        before = sink.frames
        await sink.wait_frames(before + 20, timeout=30)
        # both connections restarted ICE (not new connections: the same participant, tracks, m-lines)
        restarts = await page.evaluate("window.basement.iceRestarts || {}")
        assert restarts.get("publisher", 0) >= 1 and restarts.get("subscriber", 0) >= 1, restarts
        peer = server.node.peers[me["id"]]
        assert peer.publisher.ice_restarts >= 1 and peer.subscriber.ice_restarts >= 1
        assert await page.evaluate("window.basement.participant.id") == me["id"]
        # and the room saw no leave or join since
        assert not [m for m in alice.messages[seen:] if m.get("type") in ("participant_left", "participant_joined")]
    finally:
        if alice is not None:
            await alice.close()
        link.stop()
