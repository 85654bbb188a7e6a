"""SIWE (EIP-4361) verification, grants, and the /auth HTTP endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from eth_account import Account
from eth_account.signers.local import LocalAccount

from signalling.access.auth import AuthService, auth_routes
from signalling.access.errors import AuthError
from signalling.access.gating import Gate, GateEvaluator, MemoryRoomRegistry, RoomConfig
from signalling.chain import contracts
from tests.support.chainfix import ChainHandle
from tests.support.signin import make_service, sign, signed

Http = tuple[TestClient, AuthService, ChainHandle]


async def test_eip1271_contract_wallet(embedded: ChainHandle) -> None:
    owner, stranger = Account.create(), Account.create()
    wallet = await contracts.deploy(embedded.w3, "OwnedWallet", owner.address, sender=embedded.owner)
    service = make_service(chain_id=embedded.chain_id, w3=embedded.w3)
    nonce, _ = await service.new_nonce()
    text = service.message_for(wallet.address, nonce).to_text()
    with pytest.raises(AuthError, match="^signature does not match address$"):
        await service.verify_siwe(text, sign(stranger, text))
    nonce, _ = await service.new_nonce()  # the failure burnt the first one
    text = service.message_for(wallet.address, nonce).to_text()
    assert await service.verify_siwe(text, sign(owner, text)) == wallet.address


@pytest.fixture
async def http(embedded: ChainHandle) -> AsyncIterator[Http]:
    d = embedded.deployment
    registry = MemoryRoomRegistry([
        RoomConfig("vip", Gate.from_json({"standard": "erc721", "chainId": d.chain_id,
                                          "contract": d.membership_pass, "label": "Basement Pass"})),
    ])
    evaluator = GateEvaluator(embedded.w3, d.multicall, d.chain_id)
    service = make_service(chain_id=d.chain_id, registry=registry, evaluator=evaluator, w3=embedded.w3)
    app = web.Application()
    app.add_routes(auth_routes(service))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, service, embedded


async def _http_sign_in(client: TestClient, service: AuthService, who: LocalAccount) -> dict:
    r = await client.get("/auth/nonce")
    assert r.status == 200
    body = await r.json()
    assert body["domain"] == service.domain and "expiresAt" in body
    text = service.message_for(who.address, body["nonce"]).to_text()
    r = await client.post("/auth/siwe", json={"message": text, "signature": sign(who, text)})
    assert r.status == 200, await r.text()
    return await r.json()


async def test_http_sign_in_and_gated_grant(http: Http) -> None:
    client, service, chain = http
    holder, outsider = Account.create(), Account.create()
    await chain.mint_pass(holder.address)

    signin = await _http_sign_in(client, service, holder)
    assert signin["address"] == holder.address
    r = await client.post("/auth/grant", json={"room": "vip", "signInToken": signin["signInToken"]})
    assert r.status == 200, await r.text()
    grant = service.grants.verify((await r.json())["grant"], "vip")
    assert grant.identity == holder.address

    other = await _http_sign_in(client, service, outsider)
    r = await client.post("/auth/grant", json={"room": "vip"},
                          headers={"Authorization": f"Bearer {other['signInToken']}"})
    assert r.status == 403
    assert "unmet condition: hold a Basement Pass" in (await r.json())["error"]

    r = await client.post("/auth/grant", json={"room": "lobby"})  # open room: guests welcome
    assert r.status == 200 and (await r.json())["identity"].startswith("guest-")
    r = await client.post("/auth/grant", json={"room": "vip"})
    assert r.status == 401 and (await r.json())["error"] == "sign in with Ethereum first"


async def test_http_old_session_token_field_still_works_for_one_release(http: Http) -> None:
    """Deprecated: /auth/siwe also answers `sessionToken`, /auth/grant still accepts it."""
    client, service, _ = http
    alice = Account.create()
    signin = await _http_sign_in(client, service, alice)
    assert signin["sessionToken"] == signin["signInToken"]
    r = await client.post("/auth/grant", json={"room": "lobby", "sessionToken": signin["sessionToken"]})
    assert r.status == 200 and (await r.json())["identity"] == alice.address
    r = await client.post("/auth/grant", json={"room": "lobby", "sessionToken": "garbage"})
    assert r.status == 401 and (await r.json())["error"] == "malformed sign-in token"


async def test_http_errors(http: Http) -> None:
    client, service, _ = http
    alice = Account.create()
    text, sig = await signed(service, alice)
    r = await client.post("/auth/siwe", json={"message": text, "signature": sign(Account.create(), text)})
    assert r.status == 401 and (await r.json()) == {"error": "signature does not match address"}
    r = await client.post("/auth/siwe", data=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status == 400 and (await r.json())["error"].startswith("malformed JSON body")
    r = await client.post("/auth/grant", json={"room": "vip", "signInToken": "garbage"})
    assert r.status == 401 and (await r.json())["error"] == "malformed sign-in token"
    r = await client.post("/auth/grant", json={"room": "vip", "signInToken": 7})
    assert r.status == 400 and (await r.json())["error"] == "'signInToken' must be a string"
