"""`POST /api/dev-wallet/faucet`: ether for a fresh wallet on the embedded (dev) chain.

A wallet that a user just made holds nothing, so it cannot pay the gas (or the price) of buying
the demo membership pass through `/rpc`. The faucet tops it up from the chain's deployer account.
It exists only with `chain=embedded`, whose ether is worthless by construction; it still refuses
pages of other origins (a request without Origin is not a browser page and is served), answers a
few times a minute per client address, never sends to an address that already holds enough to buy
a pass, and never to a contract (a transfer would run its code on the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from aiohttp import web
from eth_utils import to_checksum_address

from signalling.access.throttle import RateLimiter, request_client
from signalling.chain.evm import ETHER
from signalling.chain.rpc import DevChainRpc
from signalling.httpjson import BodyError, error, read_object
from signalling.protocol.edge import EDGE_KEY

log = logging.getLogger(__name__)

ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class FaucetRefusal(Exception):
    """The faucet will not send to this address; the message says why."""


class FaucetClosed(Exception):
    """The chain took all the transactions it may hold; the message says so."""


class DevFaucet:
    def __init__(self, chain: Any, rpc: DevChainRpc, *, amount: int = ETHER, below: int = ETHER // 10,
                 per_minute: float = 6) -> None:
        self.chain = chain
        self.rpc = rpc  # its transaction cap and on_transaction hook cover the faucet's transfers too
        self.amount, self.below = amount, below
        self.clients = RateLimiter(per_minute, burst=3)
        self._lock = asyncio.Lock()

    async def fund(self, address: str) -> dict[str, Any]:
        """Send `amount` to `address` unless it holds `below` already; says what it did.

        Raises FaucetRefusal for an address with code: a plain transfer runs the recipient's code,
        which nothing here bounds (a wallet is an address without code)."""
        w3 = self.chain.w3
        async with self._lock:  # one at a time: two requests for one address must not both pay
            if await w3.eth.get_code(address):
                raise FaucetRefusal(f"{address} is a contract: the faucet sends only to wallet accounts")
            balance = await w3.eth.get_balance(address)
            sent = 0
            if balance < self.below:
                full = self.rpc.full()
                if full:
                    raise FaucetClosed(full)
                admin = (await self.chain.dev_accounts())[0]
                # gas given, never estimated: estimating would run whatever the address holds
                receipt = await w3.eth.wait_for_transaction_receipt(await w3.eth.send_transaction(
                    {"from": admin, "to": address, "value": self.amount, "gas": 21_000}))
                if receipt["status"] != 1:
                    raise FaucetRefusal(f"the transfer to {address} failed")
                sent = self.amount
                self.rpc.took_transaction()
                balance = await w3.eth.get_balance(address)
        return {"address": address, "sent": str(sent), "balance": str(balance)}


FAUCET_KEY = web.AppKey("dev_faucet", DevFaucet)


async def faucet_handler(request: web.Request) -> web.Response:
    faucet = request.app[FAUCET_KEY]
    edge = request.config_dict.get(EDGE_KEY)
    problem = edge.origin_problem(request) if edge is not None else None
    if problem:
        return error(403, problem)
    wait = faucet.clients.take(request_client(request))
    if wait:
        return error(429, f"the faucet gives a few times a minute; retry in {wait:.0f} s",
                     headers={"Retry-After": str(max(1, round(wait)))})
    try:
        body = await read_object(request, max_bytes=1024, max_depth=2)
        address = body.get("address")
        if not isinstance(address, str) or not ADDRESS.fullmatch(address):
            raise BodyError("address must be a 0x-prefixed 20-byte hex address")
    except BodyError as e:
        return error(e.status, f"bad request: {e.reason}")
    try:
        return web.json_response(await faucet.fund(to_checksum_address(address)))
    except FaucetRefusal as e:
        return error(400, str(e))
    except FaucetClosed as e:
        return error(503, str(e))
    except Exception as e:  # noqa: BLE001 - the chain failed: say so rather than a bare 500
        log.warning("dev faucet failed: %s", e)
        return error(503, f"the faucet could not send: {type(e).__name__}")


def mount_faucet(app: web.Application, faucet: DevFaucet) -> None:
    app[FAUCET_KEY] = faucet
    app.router.add_post("/api/dev-wallet/faucet", faucet_handler)
