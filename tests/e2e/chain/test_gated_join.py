"""Token-gated entry end to end: admin API -> SIWE -> grant -> WebSocket join -> periodic re-check.

Runs against the embedded chain (what `basement serve` uses) and against a real anvil node.
"""

from __future__ import annotations

import aiohttp
import pytest
from eth_account import Account

from signalling.protocol.client import Client, ServerError
from tests.support.chainfix import ChainHandle
from tests.support.signin import now as _now
from tests.support.signin import sign_in as _sign_in

ADMIN_KEY = "test-admin-key-" + "x" * 16


@pytest.fixture(params=["embedded", "anvil"])
async def gated(request, make_server):
    """(server, chain handle) with admin API on and a 1 s holdings re-check."""
    common = dict(admin_key=ADMIN_KEY, gate_recheck_s=1, gate_cache_ttl_s=0)
    if request.param == "embedded":
        srv = await make_server(**common)
        ec = srv.control.embedded
        d = ec.deployment
        handle = ChainHandle("embedded", ec.w3, d, d.admin, ec.writer, await ec.dev_accounts())
        yield srv, handle
        return
    node = request.getfixturevalue("anvil_node")
    srv = await make_server(chain="rpc", rpc_url=node.anvil.url, chain_id=31337,
                            multicall_address=node.deployment.multicall,
                            session_log_address=node.deployment.session_log,
                            writer_key=node.writer.key.hex(), **common)
    w3 = node.anvil.w3()
    yield srv, ChainHandle("anvil", w3, node.deployment, node.owner, node.writer, list(await w3.eth.accounts))
    await w3.provider.disconnect()


async def _grant(http, url, token, room) -> tuple[int, dict]:
    async with http.post(f"{url}/auth/grant", json={"room": room, "signInToken": token}) as r:
        return r.status, await r.json()


async def test_gated_room_end_to_end(gated):
    srv, chain = gated
    url = srv.url
    d = chain.deployment
    gate = {"any": [
        {"standard": "erc721", "chainId": chain.chain_id, "contract": d.membership_pass, "label": "pass"},
        {"all": [
            {"standard": "erc20", "chainId": chain.chain_id, "contract": d.access_token, "minBalance": "5",
             "label": "5 ACCESS"},
            {"standard": "erc1155", "chainId": chain.chain_id, "contract": d.badges, "tokenId": "3",
             "minAmount": "2", "label": "2 badges #3"},
        ]},
    ]}
    holder, below, combo, nobody = (Account.create() for _ in range(4))
    pass_id = chain.new_token_id()
    await chain.mint_pass(holder.address, pass_id)
    await chain.fund(holder.address)
    await chain.mint_tokens(below.address, 10**18)  # 1 token: below the minimum of 5
    await chain.mint_badge(below.address, 3, 2)
    await chain.mint_tokens(combo.address, 10 * 10**18)
    await chain.mint_badge(combo.address, 3, 2)

    async with aiohttp.ClientSession() as http:
        # the admin API needs its key
        async with http.put(f"{url}/admin/rooms/vip", json={"gate": gate}) as r:
            assert r.status == 401
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with http.put(f"{url}/admin/rooms/vip", json={"gate": gate}, headers=headers) as r:
            assert r.status == 201, await r.text()
        async with http.put(f"{url}/admin/rooms/vip", json={"gate": {"standard": "erc999"}}, headers=headers) as r:
            assert r.status == 400 and "erc999" in (await r.json())["error"]

        tokens = {a.address: await _sign_in(http, url, a) for a in (holder, below, combo, nobody)}
        status, g_holder = await _grant(http, url, tokens[holder.address], "vip")
        assert status == 200 and g_holder["identity"] == holder.address
        status, g_combo = await _grant(http, url, tokens[combo.address], "vip")
        assert status == 200
        status, body = await _grant(http, url, tokens[below.address], "vip")
        assert status == 403 and "5 ACCESS" in body["error"] and "pass" in body["error"]
        status, body = await _grant(http, url, tokens[nobody.address], "vip")
        assert status == 403 and "pass" in body["error"]

    # the grant is what the media server admits on
    c = Client(url)
    await c.connect()
    try:
        with pytest.raises(ServerError) as e:
            await c.join("vip", "no grant")
        assert e.value.code == "unauthorized" and "token-gated" in e.value.message
        with pytest.raises(ServerError) as e:
            await c.join("elsewhere", "wrong room", grant=g_holder["grant"])
        assert e.value.code == "unauthorized" and "another room" in e.value.message
        forged = g_holder["grant"][:-4] + ("AAAA" if not g_holder["grant"].endswith("AAAA") else "BBBB")
        with pytest.raises(ServerError) as e:
            await c.join("vip", "forger", grant=forged)
        assert e.value.code == "unauthorized"
        joined = await c.join("vip", "holder", grant=g_holder["grant"])
        assert joined["participant"]["identity"] == holder.address

        # the pass leaves the wallet mid-session: removed within a re-check period
        await chain.transfer_pass(holder, nobody.address, pass_id)
        removed = await c.wait_message("removed", timeout=15)
        assert "pass" in removed["reason"]
        assert holder.address not in {p.identity for p in srv.rooms.participants.values()}
    finally:
        await c.close()


async def test_open_rooms_admit_guests_and_demo_room_is_gated(server):
    c = Client(server.url)
    await c.connect()
    try:
        joined = await c.join("lobby", "guest")
        assert joined["participant"]["identity"].startswith("guest-")
    finally:
        await c.close()
    c = Client(server.url)
    await c.connect()
    try:
        with pytest.raises(ServerError) as e:
            await c.join("demo-gated", "guest")
        assert e.value.code == "unauthorized"
    finally:
        await c.close()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/info") as r:
            info = await r.json()
        assert info["embedded"] is True and info["demoGatedRoom"] == "demo-gated"
        # the built-in dev wallet holds the demo pass: sign in with it and get a grant for the demo room
        async with http.get(f"{server.url}/auth/nonce") as r:
            n = await r.json()
        # asked for port 0: the SIWE domain is the port really bound, as the page's host shows it
        assert n["domain"] == f"127.0.0.1:{server.port}" and n["uri"] == server.url, n
        from signalling.access.siwe import SiweMessage

        msg = SiweMessage(domain=n["domain"], address=info["demoWallet"], uri=n["uri"], version="1",
                          chain_id=n["chainId"], nonce=n["nonce"], issued_at=_now()).to_text()
        async with http.post(f"{server.url}/api/dev-wallet/sign", json={"message": msg}) as r:
            signed = await r.json()
        assert signed["address"] == info["demoWallet"]
        async with http.post(f"{server.url}/auth/grant",
                             json={"room": "demo-gated", "message": msg, "signature": signed["signature"]}) as r:
            assert r.status == 200, await r.text()
            grant = (await r.json())["grant"]
    c = Client(server.url)
    await c.connect()
    try:
        joined = await c.join("demo-gated", "demo", grant=grant)
        assert joined["participant"]["identity"] == info["demoWallet"]
    finally:
        await c.close()
