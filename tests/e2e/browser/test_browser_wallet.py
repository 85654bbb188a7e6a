"""The web client joins a token-gated room by Sign-In with Ethereum, in headless Chromium.

The browser-wallet tests inject an EIP-1193 provider (`window.ethereum`, tests/support/injected_wallet.py)
before the page's scripts run; `personal_sign` signs with a real key (eth_account), and the server
verifies that signature like any other.

Everything stays on 127.0.0.1 (run inside the loopback-only network namespace, as `make test` does).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from signalling.access.siwe import SiweMessage
from signalling.chain import contracts
from signalling.chain.evm import DEMO_WALLET_KEY
from signalling.protocol.client import Client
from tests.support.browser import Browser
from tests.support.injected_wallet import InjectedWallet, WalletRefusal
from tests.support.media import decoded_sizes
from tests.support.servers import native_only

# the subject is the page's sign-in and the gate, not forwarding: one run, on the native path
pytestmark = [pytest.mark.timeout(120), native_only]  # chromium comes with `make test` (system-deps): never skipped

ROOM = "demo-gated"
VIDEO = "640x360"


class RpcWallet(InjectedWallet):
    """A wallet that behaves as MetaMask does with a chain it does not know.

    It starts on mainnet, which it cannot reach from here. It adds a chain the page asks for once
    that chain's RPC answers with the same id, then switches to it. Reads go to the chain's RPC URL
    over HTTP, as a wallet's background does. Transactions are signed here, with nonce, gas and fees
    read from that RPC."""

    def __init__(self, page: Browser, account: LocalAccount, chain_id: int = 1) -> None:
        super().__init__(page, account, chain_id)
        self.rpc_urls: dict[int, str] = {}
        self.rpc_calls: list[tuple[str, dict[str, Any]]] = []  # (method, the node's whole answer)

    async def rpc(self, method: str, params: list[Any]) -> Any:
        url = self.rpc_urls.get(self.chain_id)
        if url is None:
            raise WalletRefusal(4900, f"no RPC for chain {self.chain_id}")
        async with self._http.post(url, json={"jsonrpc": "2.0", "id": len(self.rpc_calls) + 1, "method": method,
                                              "params": params}) as r:
            body = await r.json()
        self.rpc_calls.append((method, body))
        if "error" in body:
            raise WalletRefusal(body["error"]["code"], body["error"]["message"])
        return body["result"]

    async def answer(self, method: str, params: list[Any]) -> Any:  # type: ignore[override]
        if method == "wallet_addEthereumChain":
            chain = params[0]
            wanted, url = int(chain["chainId"], 16), chain["rpcUrls"][0]
            assert chain["nativeCurrency"]["decimals"] == 18 and chain["chainName"]
            before = self.chain_id
            self.rpc_urls[wanted], self.chain_id = url, wanted
            if int(await self.rpc("eth_chainId", []), 16) != wanted:  # MetaMask checks this too
                del self.rpc_urls[wanted]
                self.chain_id = before
                raise WalletRefusal(-32602, f"the RPC at {url} is not chain {wanted}")
            return None
        if method == "wallet_switchEthereumChain":
            wanted = int(params[0]["chainId"], 16)
            if wanted not in self.rpc_urls:
                raise WalletRefusal(4902, f"unrecognized chain id {params[0]['chainId']}")
            self.chain_id = wanted
            return None
        if method == "eth_sendTransaction":
            tx, me = params[0], self.account.address
            if tx["from"].lower() != me.lower():
                raise WalletRefusal(4100, f"eth_sendTransaction from an account not held here: {tx['from']}")
            call = {"from": me, "to": tx["to"], "value": tx.get("value", "0x0"), "data": tx.get("data", "0x")}
            gas = int(await self.rpc("eth_estimateGas", [call]), 16)
            base = int((await self.rpc("eth_getBlockByNumber", ["latest", False]))["baseFeePerGas"], 16)
            tip = int(await self.rpc("eth_maxPriorityFeePerGas", []), 16)
            signed = self.account.sign_transaction({
                "type": 2, "chainId": self.chain_id, "to": tx["to"], "value": int(call["value"], 16),
                "data": call["data"], "gas": gas * 6 // 5, "maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip,
                "nonce": int(await self.rpc("eth_getTransactionCount", [me, "pending"]), 16)})
            return await self.rpc("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex().removeprefix("0x")])
        if method in ("eth_requestAccounts", "eth_accounts", "eth_chainId", "personal_sign"):
            return super().answer(method, params)
        return await self.rpc(method, params)


@pytest.fixture
async def gated_page():
    """gated_page(server, name, wallet=(account, chain_id) | None, **query) -> (Browser, InjectedWallet | None)

    The page has tried to join `demo-gated` (autojoin + a click on Join) without a grant; unless a `grant` is in the
    query, it waits until the page offers the wallets."""
    made: list[tuple[Browser, InjectedWallet | None]] = []

    async def launch(server, name: str, wallet: tuple[LocalAccount, int] | None = None,
                     wallet_type: type[InjectedWallet] = InjectedWallet,
                     **query: str) -> tuple[Browser, InjectedWallet | None]:
        params = {"room": ROOM, "name": name, "video": VIDEO, **query}
        autojoin = f"{server.url}/?{urlencode({**params, 'autojoin': '1'})}"
        b = Browser(autojoin if wallet is None else f"{server.url}/?{urlencode(params)}")
        tw = None
        made.append((b, None))
        await b.start()
        if wallet is not None:
            tw = wallet_type(b, *wallet)
            made[-1] = (b, tw)
            await tw.install()
            await b.navigate(autojoin)
            assert await b.evaluate("!!(window.ethereum && window.ethereum.isBasementInjectedWallet)")
        # autojoin only prefills the form and focuses Join: capture needs the user's click
        await b.wait_for("!!window.basement && document.activeElement.id === 'join-button'")
        await b.click("#join-button")
        if "grant" not in query:
            await b.wait_for("window.basement && window.basement.state === 'gated' && "
                             "!document.querySelector('#grant-slot').hidden")
        return b, tw

    yield launch
    for b, tw in made:
        if tw is not None:
            await tw.close()
        await b.close()


async def joined(page: Browser) -> dict[str, Any]:
    """Wait until the page has joined and published audio + video; returns its participant."""
    state = await page.wait_for("(window.basement.state === 'joined' || window.basement.walletError) && "
                                "{state: window.basement.state, walletError: window.basement.walletError}", timeout=30)
    assert state["state"] == "joined", state
    await page.wait_for("window.basement.published.video && window.basement.published.audio", timeout=30)
    return await page.evaluate("window.basement.participant")


async def server_info(server) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/info") as r:
        assert r.status == 200
        return await r.json()


def in_room(server, identity: str) -> list[Any]:
    return [p for p in server.rooms.in_room(ROOM) if p.identity == identity]


async def observer(server) -> Client:
    """A Python participant already in the gated room: a second holder of the pass (minted to it here), so
    it passes the room's gate at join as anyone must; its grant comes straight from the issuer."""
    chain = server.control.embedded
    holder = Account.create()
    membership = contracts.contract_at(chain.w3, "MembershipPass", chain.deployment.membership_pass)
    await contracts.send(chain.w3, membership.functions.mint(holder.address, 424242), chain.w3.eth.default_account)
    c = Client(server.url)
    await c.connect()
    await c.join(ROOM, "observer", grant=server.control.auth.grants.issue(ROOM, holder.address))
    return c


async def test_browser_wallet_signs_in_and_joins_the_gated_room(server, gated_page):
    info = await server_info(server)
    demo = Account.from_key(DEMO_WALLET_KEY)
    assert demo.address == info["demoWallet"]  # the key that holds the demo membership pass
    watcher = await observer(server)
    try:
        page, wallet = await gated_page(server, "web-wallet", wallet=(demo, info["chainId"]))
        # the refused join is not an error banner but the wallet choices, both offered (embedded chain)
        gate = await page.evaluate("window.basement.gate")
        assert gate["room"] == ROOM and "token-gated" in gate["reason"]
        # the page says what the room asks before any signature (GET /api/rooms/{room})
        requirement = await page.wait_for("window.basement.gate.requirement")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/api/rooms/{ROOM}") as r:
                assert requirement == (await r.json())["requirement"] and "ERC-721" in requirement
        prompt = await page.evaluate("document.querySelector('#wallet-prompt').textContent")
        assert ROOM in prompt and f"To join, {requirement}." in prompt
        assert await page.evaluate("document.querySelector('#wallet-dev').hidden") is False
        assert await page.evaluate("document.querySelector('#error-banner').hidden") is True
        assert in_room(server, demo.address) == []

        await page.click("#wallet-browser")
        me = await joined(page)
        assert me["name"] == "web-wallet" and me["identity"] == demo.address
        assert wallet.errors == []
        assert wallet.methods() == ["eth_requestAccounts", "eth_chainId", "personal_sign"]
        # the wallet said 0xabc… in lowercase; the page signed and sent an EIP-55 address
        hex_message, address = wallet.requests[-1]["params"]
        assert address == demo.address != demo.address.lower()
        siwe = SiweMessage.parse(bytes.fromhex(hex_message.removeprefix("0x")).decode())
        assert siwe.address == demo.address and siwe.chain_id == info["chainId"]
        assert siwe.uri == server.control.auth.origin and siwe.expiration_time
        assert await page.evaluate("window.basement.wallet") == {"kind": "browser", "address": demo.address}

        # the server admitted it under the wallet's identity; the other participant sees it and its video
        [p] = in_room(server, demo.address)
        assert p.id == me["id"] and p.name == "web-wallet"
        msg = await watcher.wait_for(lambda: next((m for m in watcher.messages if m.get("type") == "participant_joined"
                                                   and m["participant"]["id"] == me["id"]), None), timeout=15)
        assert msg["participant"]["identity"] == demo.address
        _, track = await watcher.wait_track(kind="video", participant=me["id"], timeout=30)
        await decoded_sizes(track, 10)
    finally:
        await watcher.close()


async def test_wallet_without_the_pass_is_refused_with_the_unmet_condition(server, gated_page):
    info = await server_info(server)
    stranger = Account.create()
    page, wallet = await gated_page(server, "stranger", wallet=(stranger, info["chainId"]))
    await page.click("#wallet-browser")

    shown = await page.wait_for("!document.querySelector('#wallet-error').hidden && "
                                "document.querySelector('#wallet-error').textContent")
    # the signature was fine (signed in), the gate said no and the page names the unmet condition
    assert wallet.methods() == ["eth_requestAccounts", "eth_chainId", "personal_sign"]
    assert await page.evaluate("window.basement.wallet") == {"kind": "browser", "address": stranger.address}
    assert "unmet condition" in shown and "Basement demo membership pass" in shown, shown
    assert stranger.address in shown and ROOM in shown
    assert await page.evaluate("window.basement.walletError") == shown
    assert await page.evaluate("window.basement.state") != "joined"
    assert await page.evaluate("document.querySelector('#join-view').hidden") is False
    assert in_room(server, stranger.address) == []
    assert server.rooms.in_room(ROOM) == []

    # trying again asks the server again (no new signature: the sign-in token is reused) and is refused again
    await page.evaluate("document.querySelector('#wallet-error').hidden = true")
    await page.click("#wallet-browser")
    again = await page.wait_for("!document.querySelector('#wallet-error').hidden && "
                                "document.querySelector('#wallet-error').textContent")
    assert "unmet condition" in again
    assert wallet.methods().count("personal_sign") == 1
    assert server.rooms.in_room(ROOM) == []


async def test_dev_wallet_button_joins_the_gated_room(server, gated_page):
    info = await server_info(server)
    page, _ = await gated_page(server, "dev")
    await page.wait_for("!document.querySelector('#wallet-dev').hidden")
    await page.click("#wallet-dev")
    me = await joined(page)
    assert me["identity"] == info["demoWallet"]
    assert await page.evaluate("window.basement.wallet") == {"kind": "dev", "address": info["demoWallet"]}
    [p] = in_room(server, info["demoWallet"])
    assert p.id == me["id"]
    await page.wait_for("window.basement.publisherState === 'connected'")


async def test_wallet_on_another_chain_gets_a_clear_message(server, gated_page):
    info = await server_info(server)
    page, wallet = await gated_page(server, "wrong-net", wallet=(Account.from_key(DEMO_WALLET_KEY), 1))
    await page.click("#wallet-browser")
    shown = await page.wait_for("!document.querySelector('#wallet-error').hidden && "
                                "document.querySelector('#wallet-error').textContent")
    assert "Wrong network" in shown and "chain 1," in shown and str(info["chainId"]) in shown, shown
    # it asked the wallet to switch (refused: unknown chain) and never asked for a signature
    # it asked the wallet to switch, then (unknown chain, and this server serves its chain at /rpc) to add
    # it; this wallet can do neither, and no signature was asked for
    assert wallet.methods() == ["eth_requestAccounts", "eth_chainId", "wallet_switchEthereumChain",
                                "wallet_addEthereumChain", "eth_chainId"]
    assert await page.evaluate("window.basement.wallet") is None
    assert server.rooms.in_room(ROOM) == []


async def test_grant_in_the_url_still_joins_directly(server, gated_page):
    info = await server_info(server)
    grant = server.control.auth.grants.issue(ROOM, info["demoWallet"])
    page, _ = await gated_page(server, "url-grant", grant=grant)
    me = await joined(page)
    assert me["identity"] == info["demoWallet"]
    assert await page.evaluate("document.querySelector('#grant-slot').hidden") is True
    assert await page.evaluate("window.basement.gate") is None


async def test_page_checksums_addresses_like_eth_utils(server, gated_page):
    page, _ = await gated_page(server, "checksum")
    addresses = [Account.create().address.lower() for _ in range(25)]
    addresses += ["0x" + "0" * 40, "0x" + "f" * 40, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"]
    got = await page.evaluate(f"{json.dumps(addresses)}.map(a => window.basement.toChecksumAddress(a))")
    assert got == [to_checksum_address(a) for a in addresses]
    # Keccak-256 itself, across the 136-byte block boundary
    for text in ("", "abc", "x" * 135, "y" * 136, "z" * 300):
        assert await page.evaluate(f"window.basement.keccak256({json.dumps(text)})") == keccak(text=text).hex()


async def test_a_fresh_wallet_adds_the_dev_chain_buys_the_pass_and_joins(server, gated_page):
    """#17: the page adds the embedded chain to a wallet that forwards RPC calls to /rpc; the wallet
    (holding nothing) gets ether from the dev faucet, buys the pass, signs in and joins `demo-gated`."""
    info = await server_info(server)
    buyer = Account.create()
    chain = server.control.embedded
    membership = contracts.contract_at(chain.w3, "MembershipPass", chain.deployment.membership_pass)
    assert await chain.w3.eth.get_balance(buyer.address) == 0
    watcher = await observer(server)
    try:
        page, wallet = await gated_page(server, "buyer", wallet=(buyer, 1), wallet_type=RpcWallet)
        await page.wait_for("!document.querySelector('#wallet-pass').hidden")
        await page.click("#wallet-pass")
        me = await joined(page)
        assert me["identity"] == buyer.address and me["name"] == "buyer"
        assert wallet.errors == []

        methods = wallet.methods()
        assert methods[:5] == ["eth_requestAccounts", "eth_chainId", "wallet_switchEthereumChain",
                               "wallet_addEthereumChain", "eth_chainId"], methods
        [added] = [r["params"][0] for r in wallet.requests if r["method"] == "wallet_addEthereumChain"]
        assert added["chainId"] == hex(info["chainId"]) and added["rpcUrls"] == [f"{server.url}/rpc"]
        assert methods.count("eth_sendTransaction") == 1 and methods[-1] == "personal_sign"
        [purchase] = [r["params"][0] for r in wallet.requests if r["method"] == "eth_sendTransaction"]
        assert purchase["to"] == info["membershipPass"] and int(purchase["value"], 16) == int(info["passPrice"])
        # every call the wallet forwarded was answered by /rpc without an error
        assert [m for m, body in wallet.rpc_calls if "error" in body] == []
        sent = [m for m, _ in wallet.rpc_calls]
        assert {"eth_chainId", "eth_call", "eth_estimateGas", "eth_getBlockByNumber", "eth_sendRawTransaction",
                "eth_getTransactionReceipt"} <= set(sent), sent

        # the chain agrees: the buyer paid and holds one pass (its ether came from the faucet)
        assert await membership.functions.balanceOf(buyer.address).call() == 1
        assert 0 < await chain.w3.eth.get_balance(buyer.address) < 10**18 - int(info["passPrice"])
        assert "bought the demo membership pass" in await page.evaluate(
            "document.querySelector('#event-log').textContent")
        [p] = in_room(server, buyer.address)
        assert p.id == me["id"]
        _, track = await watcher.wait_track(kind="video", participant=me["id"], timeout=30)
        await decoded_sizes(track, 10)
    finally:
        await watcher.close()
