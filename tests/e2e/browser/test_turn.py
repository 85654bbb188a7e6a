"""Chromium's media through a real TURN server (coturn), with credentials the SFU hands out.

The page runs with `relay=1` (iceTransportPolicy "relay"): it may use no path but a TURN relay, as
on a network that lets nothing else out. It gets its TURN credentials in `joined.ice_servers`
(TURN REST API: coturn checks them against the shared secret); the SFU sees only coturn's relayed
addresses. Over UDP, TCP, and TLS (a `turns:` URL, TURN's answer to networks that pass only TLS
on 443): there coturn's certificate is self-signed, and Chromium accepts exactly that one (pinned by
its public key, as test_tls_browser.py does for the web server).

The second test is the network that forces it: Chromium in a network namespace of its own
(tests/support/netns.py) whose UDP nftables drops, with no transport policy at all. TURN over TCP or
TLS to coturn, across the link, is then the only way its media can go.
"""

from __future__ import annotations

import pytest

from signalling.protocol.client import Client
from tests.e2e.browser.test_browser import joined, media_both_ways
from tests.support.browser import poll
from tests.support.coturn import RELAY_PORTS, Coturn
from tests.support.linked import publishing_client
from tests.support.media import CounterVideo, Tone
from tests.support.netns import SERVER_IP, Link

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_chromium_relayed_through_turn_sends_and_receives(make_server, browser, tmp_path, transport):
    turn = await Coturn(tmp_path / "turn").start()
    try:
        server = await make_server(turn_urls=[turn.url(transport)], turn_secret=turn.secret)
        alice = Client(server.url)
        await alice.connect()
        try:
            await alice.join("relayed", "alice")
            await alice.publish(audio=Tone(), video=CounterVideo())
            page = await browser(server, "relayed", "chromium", relay="1",
                                 extra_flags=[f"--ignore-certificate-errors-spki-list={turn.spki_sha256}"])
            me = (await joined(page))["participant"]
            # the page's own credentials: "<expiry>:<participant id>", for this TURN server only
            servers = (await page.evaluate("window.basement.events.find(m => m.type === 'joined')"))["ice_servers"]
            assert [s["urls"] for s in servers] == [[turn.url(transport)]]
            assert servers[0]["username"].split(":", 1)[1] == me["id"]

            await media_both_ways(page, alice, me, frames=20)

            await _relayed(page, server, me["id"], transport)
            # coturn accepted the page's credentials (it logs each request with its username)
            assert f"user <{servers[0]['username']}>: incoming packet ALLOCATE processed, success" in turn.log
        finally:
            await alice.close()
    finally:
        turn.stop()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_chromium_whose_udp_is_blocked_gets_through_turn_over_tcp(make_server, browser, tmp_path, transport):
    link = Link().start()
    turn = alice = None
    try:
        link.block_udp()
        turn = await Coturn(tmp_path / "turn", host=SERVER_IP).start()
        # the page reaches the server and coturn on the link's address; the SFU's candidates are on the
        # link's address (blocked for UDP) and loopback (which only coturn's relay reaches)
        server = await make_server(host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"],
                                   turn_urls=[turn.url(transport)], turn_secret=turn.secret)
        alice = await publishing_client(server, "no-udp-turn")
        page = await browser(server, "no-udp-turn", "chromium", prefix=link.command(),
                             extra_flags=[f"--ignore-certificate-errors-spki-list={turn.spki_sha256}"])
        me = (await joined(page))["participant"]
        await media_both_ways(page, alice, me, frames=20)
        await _relayed(page, server, me["id"], transport)
    finally:
        if alice is not None:
            await alice.close()
        if turn is not None:
            turn.stop()
        link.stop()


async def _relayed(page, server, participant: str, transport: str) -> None:
    """Both of the page's connections are relayed, over `transport`, and the SFU talks to coturn's
    relayed addresses only."""
    paths = await poll(lambda: _paths(page), "both connections' selected candidate pairs")
    for target in ("publisher", "subscriber"):
        assert paths[target]["localType"] == "relay", paths
        assert paths[target]["relayProtocol"] == transport, paths
    page_peer = server.node.peers[participant]
    for target in (page_peer.publisher, page_peer.subscriber):
        remote = _remote(target)
        assert remote[0] == "127.0.0.1" and RELAY_PORTS[0] <= remote[1] <= RELAY_PORTS[1], remote


async def _paths(page):
    paths = (await page.evaluate("window.basement.stats()"))["paths"]
    return paths if paths["publisher"] and paths["subscriber"] else None


def _remote(transport) -> tuple[str, int]:
    """The remote address of the pair the SFU's ICE connection nominated (aioice's state)."""
    ice = transport.pc.getTransceivers()[0].receiver.transport.transport
    pair = ice._connection._nominated[1]
    return pair.remote_candidate.host, pair.remote_candidate.port
