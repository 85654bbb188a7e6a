"""The Python client takes the TURN credentials `joined` hands out: its ICE agent (aioice) gets a
relayed address from a real coturn with them. (Chromium relayed end to end: tests/e2e/browser/test_turn.py.)"""

from __future__ import annotations

from signalling.protocol.client import Client
from tests.support.coturn import RELAY_PORTS, Coturn
from tests.support.media import Tone


async def test_python_client_allocates_on_the_turn_server_it_is_given(make_server, tmp_path):
    turn = await Coturn(tmp_path / "turn").start()
    client = Client("")
    try:
        server = await make_server(turn_urls=[turn.url("udp")], turn_secret=turn.secret)
        client = Client(server.url)
        await client.connect()
        joined = await client.join("t", "bot")
        (relay,) = joined["ice_servers"]
        assert relay["urls"] == [turn.url("udp")]
        assert relay["username"].endswith(":" + joined["participant"]["id"])
        await client.publish(audio=Tone())
        sdp = client.publisher.localDescription.sdp
        relayed = [line for line in sdp.splitlines() if " typ relay " in line]
        assert relayed, sdp
        port = int(relayed[0].split()[5])
        assert RELAY_PORTS[0] <= port <= RELAY_PORTS[1]
        assert f"user <{relay['username']}>: incoming packet ALLOCATE processed, success" in turn.log
        # a resume hands out fresh credentials (for connections made after it)
        other = Client(server.url, resume=False)
        await other.connect()
        resumed = await other.request({"type": "resume", "token": joined["resume"]["token"], "n": client._n})
        (again,) = resumed["ice_servers"]
        assert again["urls"] == relay["urls"] and again["username"].endswith(":" + joined["participant"]["id"])
        assert int(again["username"].split(":")[0]) >= int(relay["username"].split(":")[0])
        await other.close()
        # a server without TURN hands out nothing, and the client asks no STUN server of its own
        plain = await make_server()
        other = Client(plain.url)
        await other.connect()
        assert (await other.join("t", "bot"))["ice_servers"] == []
        await other.close()
    finally:
        await client.close()
        turn.stop()
