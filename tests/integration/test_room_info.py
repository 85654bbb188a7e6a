"""GET /api/rooms/{room}: what a room asks of a participant, readable before any signature (#17)."""

from __future__ import annotations

import aiohttp

KEY = "room-info-admin-key"
ADDR_A = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ADDR_B = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


async def test_open_gated_and_nested_rooms_in_words(make_server):
    server = await make_server(admin_key=KEY)
    chain = server.control.chain_id
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/rooms/lobby") as r:
            assert r.status == 200
            assert await r.json() == {"room": "lobby", "gated": False, "requirement": None, "conditions": [],
                                      "gate": None, "maxParticipants": None, "e2ee": "optional"}
        async with http.get(f"{server.url}/api/rooms/demo-gated") as r:
            demo = await r.json()
        assert demo["gated"] is True and demo["gate"] is not None
        assert demo["conditions"] and demo["requirement"] in (" and ".join(demo["conditions"]),
                                                              " or ".join(demo["conditions"]))
        gate = {"any": [{"standard": "erc721", "chainId": chain, "contract": ADDR_A, "label": "Pass"},
                        {"all": [{"standard": "erc20", "chainId": chain, "contract": ADDR_B, "minBalance": "5",
                                  "label": "BSMT"},
                                 {"standard": "erc1155", "chainId": chain, "contract": ADDR_A, "tokenId": "1",
                                  "label": "Badge"}]}]}
        async with http.put(f"{server.url}/admin/rooms/vip", json={"gate": gate, "max_participants": 9},
                            headers={"Authorization": f"Bearer {KEY}"}) as r:
            assert r.status == 201, await r.text()
        async with http.get(f"{server.url}/api/rooms/vip") as r:
            vip = await r.json()
        assert vip["requirement"] == (
            f"hold a Pass (ERC-721 {ADDR_A} on chain {chain}) or "
            f"(hold at least 5 BSMT (ERC-20 {ADDR_B} on chain {chain}) and "
            f"hold at least 1 of Badge id 1 (ERC-1155 {ADDR_A} on chain {chain}))")
        assert len(vip["conditions"]) == 3 and vip["maxParticipants"] == 9
        assert vip["gate"]["any"][0]["label"] == "Pass" and vip["e2ee"] == "optional"
        async with http.put(f"{server.url}/admin/rooms/sealed", json={"e2ee": "required"},
                            headers={"Authorization": f"Bearer {KEY}"}) as r:
            assert r.status == 201, await r.text()
        async with http.get(f"{server.url}/api/rooms/sealed") as r:
            sealed = await r.json()
        assert (sealed["gated"], sealed["e2ee"]) == (False, "required")
        async with http.get(f"{server.url}/api/rooms/bad%20name") as r:
            assert r.status == 400 and "room name" in (await r.json())["error"]
