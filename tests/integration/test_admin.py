"""Admin API: bearer key, room CRUD, validation errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from signalling.access.admin import admin_app
from signalling.access.gating import MemoryRoomRegistry

KEY = "s3cret-admin-key"
ADDR = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
AUTH = {"Authorization": f"Bearer {KEY}"}
Admin = tuple[TestClient, MemoryRoomRegistry]
GATE = {"standard": "erc721", "chainId": 31337, "contract": ADDR}


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    registry = MemoryRoomRegistry()
    app = web.Application()
    app.add_subapp("/admin", admin_app(registry, KEY, chain_ids=[31337]))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, registry


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                                     {"Authorization": f"Bearer {KEY}x"}])
async def test_requires_bearer_key(admin: Admin, headers: dict) -> None:
    client, _ = admin
    for method, path in (("GET", "/admin/rooms"), ("PUT", "/admin/rooms/x"), ("DELETE", "/admin/rooms/x")):
        r = await client.request(method, path, headers=headers, json={})
        assert r.status == 401, (method, path)
        assert (await r.json()) == {"error": "admin key required"}


async def test_room_crud(admin: Admin) -> None:
    client, registry = admin
    r = await client.put("/admin/rooms/vip", headers=AUTH, json={"gate": {"all": [GATE]}, "max_participants": 12})
    assert r.status == 201, await r.text()
    assert (await r.json())["gate"] == {"all": [GATE]}
    assert (await registry.get("vip")).max_participants == 12
    r = await client.put("/admin/rooms/lobby", headers=AUTH, json={})
    assert r.status == 201 and (await r.json())["gate"] is None
    r = await client.put("/admin/rooms/vip", headers=AUTH, json={"gate": GATE})
    assert r.status == 200 and (await r.json())["max_participants"] is None
    r = await client.get("/admin/rooms", headers=AUTH)
    assert [room["name"] for room in (await r.json())["rooms"]] == ["lobby", "vip"]
    r = await client.get("/admin/rooms/vip", headers=AUTH)
    assert (await r.json())["gate"] == GATE
    r = await client.delete("/admin/rooms/vip", headers=AUTH)
    assert r.status == 204 and await registry.get("vip") is None
    r = await client.get("/admin/rooms/vip", headers=AUTH)
    assert r.status == 404 and (await r.json())["error"] == "no room 'vip'"
    r = await client.delete("/admin/rooms/vip", headers=AUTH)
    assert r.status == 404


async def test_a_room_goes_peer_to_peer_or_not_whatever_the_server_setting(admin: Admin) -> None:
    client, registry = admin
    r = await client.put("/admin/rooms/duo", headers=AUTH, json={"p2p": True})
    assert r.status == 201 and (await r.json())["p2p"] is True
    assert (await registry.get("duo")).p2p is True
    r = await client.put("/admin/rooms/duo", headers=AUTH, json={"p2p": False})
    assert (await registry.get("duo")).p2p is False
    # unset: the server's setting decides (and the field is left out for older replicas)
    r = await client.put("/admin/rooms/duo", headers=AUTH, json={})
    assert "p2p" not in await r.json() and (await registry.get("duo")).p2p is None


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "malformed JSON body: Expecting property name"),
    (b"[1, 2]", "malformed JSON body: expected an object, got list"),
    (b'{"gate": {"standard": "erc721", "chainId": 31337, "contract": "0x5fbdb2315678afecb367f032d93f642f64180aa3"}}',
     "bad checksum"),
    (b'{"gate": {"standard": "erc999", "chainId": 31337, "contract": "%s"}}' % ADDR.encode(), "unknown standard"),
    (b'{"gate": {"standard": "erc721", "chainId": 1, "contract": "%s"}}' % ADDR.encode(),
     "chain 1 is not served here"),
    (b'{"max_participants": -3}', "max_participants"),
    (b'{"colour": "blue"}', "unknown field(s) in room config: colour"),
    (b'{"p2p": "yes"}', "p2p: must be true, false or null"),
])
async def test_validation_errors(admin: Admin, body: bytes, reason: str) -> None:
    client, registry = admin
    r = await client.put("/admin/rooms/vip", headers={**AUTH, "Content-Type": "application/json"}, data=body)
    assert r.status == 400
    assert reason in (await r.json())["error"]
    assert await registry.list() == []


async def test_bad_room_name(admin: Admin) -> None:
    client, _ = admin
    r = await client.put("/admin/rooms/-bad", headers=AUTH, json={})
    assert r.status == 400 and "room name '-bad'" in (await r.json())["error"]
