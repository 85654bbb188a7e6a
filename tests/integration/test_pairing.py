"""Peer to peer for two, the signalling side (sfu/pairing.py): who is paired, what is relayed, and
that nothing else is — in `basement serve` and across two replicas of a cluster. (The media side,
with two Chromium pages: tests/e2e/browser/test_p2p_browser.py.)"""

from __future__ import annotations

import pytest

from signalling.protocol.client import Client, ServerError
from signalling.protocol.rooms import Admission


@pytest.fixture
def each_data_path() -> str:
    """One run, forwarding natively: what is tested here is signalling (which replica or node says
    what to whom); the data paths each run every forwarding test of this tier."""
    return "native"


async def joined_p2p(url: str, room: str, name: str, made: list[Client], p2p: bool = True) -> Client:
    cl = Client(url)
    made.append(cl)
    await cl.connect()
    reply = await cl.request({"type": "join", "room": room, "name": name, "p2p": p2p})
    cl.participant = reply["participant"]
    return cl


def p2p_events(cl: Client) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "n"} for m in cl.messages if m.get("type") == "p2p"]


@pytest.fixture
async def clients():
    made: list[Client] = []
    yield made
    for cl in made:
        await cl.close()


async def pairing_round(urls: list[str], clients: list[Client]) -> None:
    ann = await joined_p2p(urls[0], "pair", "ann", clients)
    ben = await joined_p2p(urls[1], "pair", "ben", clients)
    ann_id, ben_id = ann.participant["id"], ben.participant["id"]
    await ann.wait_message("p2p", state="on")
    await ben.wait_message("p2p", state="on")
    assert p2p_events(ann) == [{"type": "p2p", "state": "on", "peer": ben_id, "offerer": True}]
    assert p2p_events(ben) == [{"type": "p2p", "state": "on", "peer": ann_id, "offerer": False}]
    # signalling for the direct connection goes to the partner, opaque, with who sent it
    await ann.send({"type": "p2p_signal", "to": ben_id, "data": {"sdp": {"type": "offer", "sdp": "v=0..."}}})
    got = await ben.wait_message("p2p_signal")
    assert got["from"] == ann_id and got["data"] == {"sdp": {"type": "offer", "sdp": "v=0..."}}
    # to anyone else: refused
    with pytest.raises(ServerError) as e:
        await ann.request({"type": "p2p_signal", "to": "PA_nobody", "data": {}})
    assert e.value.code == "not_paired"
    # a third (who cannot go direct) unpairs them; they cannot relay to each other any more
    carl = await joined_p2p(urls[0], "pair", "carl", clients, p2p=False)
    for cl in (ann, ben):
        await cl.wait_message("p2p", state="off", reason="joined")
    with pytest.raises(ServerError) as e:
        await ben.request({"type": "p2p_signal", "to": ann_id, "data": {"candidate": None}})
    assert e.value.code == "not_paired"
    assert p2p_events(carl) == []
    # the third leaves: paired again
    await carl.leave()
    await ben.wait_for(lambda: len([m for m in p2p_events(ben) if m["state"] == "on"]) == 2)
    # one leaves: the other is told its partner left
    await ben.leave()
    await ann.wait_message("p2p", state="off", reason="left")


async def test_serve_pairs_two_relays_their_signalling_and_unpairs_for_a_third(make_server, clients):
    server = await make_server(p2p=True)
    await pairing_round([server.url, server.url], clients)


async def test_a_room_that_does_not_allow_it_pairs_nobody(make_server, clients):
    server = await make_server()
    ann = await joined_p2p(server.url, "nop", "ann", clients)
    ben = await joined_p2p(server.url, "nop", "ben", clients)
    await ben.request({"type": "ping"})
    await ann.request({"type": "ping"})
    assert p2p_events(ann) == p2p_events(ben) == []
    with pytest.raises(ServerError) as e:
        await ann.request({"type": "p2p_signal", "to": ben.participant["id"], "data": {}})
    assert e.value.code == "not_paired"


async def test_a_room_config_decides_over_the_server_setting(make_server, clients):
    from signalling.access.gating import RoomConfig

    server = await make_server()  # p2p off by default ...
    await server.control.registry.put(RoomConfig("duo", p2p=True))  # ... on for this room
    await server.control.registry.put(RoomConfig("never", p2p=False))
    ann = await joined_p2p(server.url, "duo", "ann", clients)
    await joined_p2p(server.url, "duo", "ben", clients)
    await ann.wait_message("p2p", state="on")
    on = await make_server(p2p=True)  # and the other way round
    await on.control.registry.put(RoomConfig("never", p2p=False))
    cy = await joined_p2p(on.url, "never", "cy", clients)
    dee = await joined_p2p(on.url, "never", "dee", clients)
    await dee.request({"type": "ping"})
    await cy.request({"type": "ping"})
    assert p2p_events(cy) == p2p_events(dee) == []


async def test_across_two_replicas_the_node_pairs_and_relays(mcluster, clients):
    async def admit_p2p(room: str, grant: str | None) -> Admission:
        return Admission(identity="guest", p2p=True)

    for r in mcluster.replicas.values():
        r.rooms.admit = admit_p2p
    await pairing_round([mcluster.url("r1"), mcluster.url("r2")], clients)
