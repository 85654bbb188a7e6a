"""Gates: strict JSON, evaluation on both chains via one Multicall3 call, cache, re-check, fail-closed."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, web
from eth_account import Account
from web3 import AsyncWeb3

from signalling.access.gating import (
    CANNOT_VERIFY,
    Gate,
    GateEvaluator,
    GateResult,
    MemoryRoomRegistry,
    Rechecker,
    RoomConfig,
)
from signalling.ports import free_port
from tests.support.chainfix import AnvilNode, ChainHandle

E18 = 10**18


def erc20(c: ChainHandle, amount: str) -> dict:
    return {"standard": "erc20", "chainId": c.chain_id, "contract": c.deployment.access_token,
            "minBalance": amount, "label": "BSMT"}


def erc721(c: ChainHandle, token_id: int | None = None) -> dict:
    leaf = {"standard": "erc721", "chainId": c.chain_id, "contract": c.deployment.membership_pass, "label": "Pass"}
    if token_id is not None:
        leaf["tokenId"] = str(token_id)
    return leaf


def erc1155(c: ChainHandle, badge: int, amount: int = 1) -> dict:
    return {"standard": "erc1155", "chainId": c.chain_id, "contract": c.deployment.badges,
            "tokenId": str(badge), "minAmount": str(amount), "label": "Badge"}


def evaluator_for(c: ChainHandle, **kw: object) -> GateEvaluator:
    return GateEvaluator(c.w3, c.deployment.multicall, c.chain_id, **kw)


async def test_nft_holder_allowed_and_non_holder_denied(chain: ChainHandle) -> None:
    holder, outsider = Account.create().address, Account.create().address
    token_id = await chain.mint_pass(holder)
    ev = evaluator_for(chain)
    any_pass = Gate.from_json(erc721(chain))
    assert await ev.evaluate(any_pass, holder) == GateResult(True)
    denied = await ev.evaluate(any_pass, outsider)
    assert not denied.allowed
    assert denied.unmet == [f"hold a Pass (ERC-721 {chain.deployment.membership_pass} on chain {chain.chain_id})"]
    assert denied.reason.startswith("unmet condition: hold a Pass")
    exact = Gate.from_json(erc721(chain, token_id))
    assert (await ev.evaluate(exact, holder)).allowed
    other = await ev.evaluate(Gate.from_json(erc721(chain, token_id + 1)), holder)  # never minted: reverts
    assert not other.allowed and other.unmet[0].startswith(f"own Pass #{token_id + 1}")
    assert "[ownerOf call failed]" in other.unmet[0]


async def test_erc20_minimum_in_token_units(chain: ChainHandle) -> None:
    rich, poor = Account.create().address, Account.create().address
    await chain.mint_tokens(rich, 10 * E18)
    await chain.mint_tokens(poor, 10 * E18 - 1)
    ev = evaluator_for(chain)
    gate = Gate.from_json(erc20(chain, "10"))
    assert (await ev.evaluate(gate, rich)).allowed
    below = await ev.evaluate(gate, poor)
    assert not below.allowed and below.unmet[0].startswith("hold at least 10 BSMT (ERC-20")
    assert (await ev.evaluate(Gate.from_json(erc20(chain, "9.999999999999999999")), poor)).allowed


async def test_and_or_combinations(chain: ChainHandle) -> None:
    only_nft, both = Account.create().address, Account.create().address
    for who in (only_nft, both):
        await chain.mint_pass(who)
    badge = chain.new_token_id()
    await chain.mint_badge(both, badge, 3)
    ev = evaluator_for(chain)
    and_gate = Gate.from_json({"all": [erc721(chain), erc1155(chain, badge, 2)]})
    or_gate = Gate.from_json({"any": [erc20(chain, "1000"), erc1155(chain, badge, 2)]})
    assert (await ev.evaluate(and_gate, both)).allowed
    r = await ev.evaluate(and_gate, only_nft)
    assert not r.allowed and len(r.unmet) == 1 and r.unmet[0].startswith(f"hold at least 2 of Badge id {badge}")
    assert (await ev.evaluate(or_gate, both)).allowed
    r = await ev.evaluate(or_gate, only_nft)
    assert not r.allowed and r.unmet[0].startswith("one of: hold at least 1000 BSMT") and " OR " in r.unmet[0]
    assert not (await ev.evaluate(Gate.from_json(erc1155(chain, badge, 4)), both)).allowed


async def test_transferred_nft_is_caught_by_recheck(chain: ChainHandle) -> None:
    holder, buyer = Account.create(), Account.create().address
    token_id = await chain.mint_pass(holder.address)
    registry = MemoryRoomRegistry([RoomConfig("vip", Gate.from_json(erc721(chain, token_id))), RoomConfig("open")])
    ev = evaluator_for(chain, cache_ttl_s=3600)  # re-checks must bypass even a long cache
    assert (await ev.evaluate((await registry.get("vip")).gate, holder.address)).allowed
    removed: list[tuple[str, str, GateResult]] = []

    async def present() -> list[tuple[str, str]]:
        return [("vip", holder.address), ("open", holder.address), ("vip", "guest-abc")]

    async def on_revoked(room: str, address: str, result: GateResult) -> None:
        removed.append((room, address, result))

    checker = Rechecker(ev, registry, present, on_revoked, interval_s=0.01)
    # a guest in a gated room (it came in while the room was open) is a definite "no"
    assert [(r, a) for r, a, _ in await checker.check_once()] == [("vip", "guest-abc")]
    removed.clear()
    await chain.transfer_pass(holder, buyer, token_id)
    revoked = await checker.check_once()
    assert [(r, a) for r, a, _ in removed] == [("vip", holder.address), ("vip", "guest-abc")]
    assert [(r, a) for r, a, _ in revoked] == [(r, a) for r, a, _ in removed]
    assert removed[0][2].unmet[0].startswith(f"own Pass #{token_id}")


async def test_cache_ttl(embedded: ChainHandle) -> None:
    now = [0.0]
    holder = Account.create()
    token_id = await embedded.mint_pass(holder.address)
    ev = evaluator_for(embedded, cache_ttl_s=30, clock=lambda: now[0])
    gate = Gate.from_json(erc721(embedded, token_id))
    assert (await ev.evaluate(gate, holder.address)).allowed
    await embedded.transfer_pass(holder, Account.create().address, token_id)
    now[0] = 29
    assert (await ev.evaluate(gate, holder.address)).allowed  # cached
    assert not (await ev.evaluate(gate, holder.address, use_cache=False)).allowed
    now[0] = 10
    assert not (await ev.evaluate(gate, holder.address)).allowed  # bypass refreshed the cache


class CountingProxy:
    """A JSON-RPC pass-through on 127.0.0.1 that counts methods on their way to the node."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.methods: Counter[str] = Counter()
        self.port = free_port()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = json.loads(body)
        for item in payload if isinstance(payload, list) else [payload]:
            self.methods[item["method"]] += 1
        async with self.session.post(self.upstream, data=body, headers={"Content-Type": "application/json"}) as r:
            return web.Response(body=await r.read(), status=r.status, content_type="application/json")

    async def __aenter__(self) -> CountingProxy:
        self.session = ClientSession()
        app = web.Application()
        app.router.add_post("/", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()
        await self.session.close()


@pytest.fixture
async def counted(anvil_node: AnvilNode) -> AsyncIterator[tuple[CountingProxy, ChainHandle, ChainHandle]]:
    """(proxy, handle whose w3 goes through the proxy, direct handle for setup transactions)."""
    direct = anvil_node.anvil.w3()
    async with CountingProxy(anvil_node.anvil.url) as proxy:
        via = AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(f"http://127.0.0.1:{proxy.port}", cache_allowed_requests=True))
        d = anvil_node.deployment
        try:
            yield (proxy, ChainHandle("anvil", via, d, anvil_node.owner, anvil_node.writer),
                   ChainHandle("anvil", direct, d, anvil_node.owner, anvil_node.writer))
        finally:
            await via.provider.disconnect()
            await direct.provider.disconnect()


async def test_five_conditions_one_eth_call(counted: tuple[CountingProxy, ChainHandle, ChainHandle]) -> None:
    proxy, via, direct = counted
    who = Account.create().address
    token_id = await direct.mint_pass(who)
    await direct.mint_tokens(who, 5 * E18)
    badge = direct.new_token_id()
    await direct.mint_badge(who, badge, 1)
    gate = Gate.from_json({"all": [
        erc721(via), erc721(via, token_id), erc20(via, "5"), erc1155(via, badge),
        {"any": [erc20(via, "1000"), erc1155(via, badge, 1)]},
    ]})
    ev = evaluator_for(via)
    assert (await ev.evaluate(gate, who)).allowed
    assert proxy.methods["eth_call"] == 1, proxy.methods  # includes the first-time decimals() lookup
    assert (await ev.evaluate(gate, who)).allowed
    assert proxy.methods["eth_call"] == 1, "second evaluation must come from the cache"
    assert (await ev.evaluate(gate, who, use_cache=False)).allowed
    assert proxy.methods["eth_call"] == 2 and sum(proxy.methods.values()) == 2, proxy.methods


async def test_rpc_down_fails_closed(fresh_anvil: AnvilNode) -> None:
    node = fresh_anvil
    w3 = node.anvil.w3()
    c = ChainHandle("anvil", w3, node.deployment, node.owner, node.writer)
    holder = Account.create().address
    await c.mint_pass(holder)
    gate = Gate.from_json(erc721(c))
    registry = MemoryRoomRegistry([RoomConfig("vip", gate)])
    ev = evaluator_for(c, timeout_s=2)
    removed: list[str] = []

    async def present() -> list[tuple[str, str]]:
        return [("vip", holder)]

    async def on_revoked(room: str, address: str, result: GateResult) -> None:
        removed.append(address)

    checker = Rechecker(ev, registry, present, on_revoked)
    try:
        assert (await ev.evaluate(gate, holder)).allowed
        node.anvil.stop()
        down = await ev.evaluate(gate, holder, use_cache=False)
        assert down == GateResult(False, [CANNOT_VERIFY]) and down.reason == CANNOT_VERIFY
        assert await checker.check_once() == [] and removed == []  # an outage kicks no one
        node.anvil.start()  # same port, same state
        assert (await ev.evaluate(gate, holder, use_cache=False)).allowed
    finally:
        await w3.provider.disconnect()


async def test_no_multicall_at_address_fails_closed(embedded: ChainHandle) -> None:
    ev = GateEvaluator(embedded.w3, Account.create().address, embedded.chain_id)
    r = await ev.evaluate(Gate.from_json(erc721(embedded)), embedded.deployment.demo_wallet)
    assert r == GateResult(False, [CANNOT_VERIFY])


async def test_condition_on_unserved_chain_is_unmet(embedded: ChainHandle) -> None:
    leaf = dict(erc721(embedded), chainId=1)
    r = await evaluator_for(embedded).evaluate(Gate.from_json(leaf), embedded.deployment.demo_wallet)
    assert not r.allowed and "[chain 1 is not served here]" in r.unmet[0]


async def test_demo_wallet_holds_the_demo_pass(embedded: ChainHandle) -> None:
    d = embedded.deployment
    gate = Gate.from_json(erc721(embedded, d.demo_pass_token_id))
    assert (await evaluator_for(embedded).evaluate(gate, d.demo_wallet)).allowed
