"""`POST /api/dev-wallet/faucet`: ether for a fresh wallet on the embedded (dev) chain.

A wallet that a user just made holds nothing, so it cannot pay the gas (or the price) of buying
the demo membership pass through `/rpc`. The faucet tops it up from the chain's deployer account.
It exists only with `chain=embedded`, whose ether is worthless by construction; it still answers
only pages of this server (Origin), a few times a minute per client address, and never sends to an
address that already holds enough to buy a pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from eth_utils import to_checksum_address

from signalling.access.throttle import RateLimiter, request_client
from signalling.chain import contracts
from signalling.chain.evm import ETHER
from signalling.httpjson import BodyError, error, read_object
from signalling.protocol.edge import EDGE_KEY

ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class DevFaucet:
    def __init__(self, chain: Any, *, amount: int = ETHER, below: int = ETHER // 10, per_minute: float = 6,
                 on_funded: Callable[[], None] | None = None) -> None:
        self.chain = chain
        self.amount, self.below = amount, below
        self.on_funded = on_funded
        self.clients = RateLimiter(per_minute, burst=3)

    async def fund(self, address: str) -> dict[str, Any]:
        """Send `amount` to `address` unless it holds `below` already; says what it did."""
        w3 = self.chain.w3
        balance = await w3.eth.get_balance(address)
        sent = 0
        if balance < self.below:
            admin = (await self.chain.dev_accounts())[0]
            await contracts.transfer_eth(w3, admin, address, self.amount)
            sent = self.amount
            balance = await w3.eth.get_balance(address)
            if self.on_funded is not None:
                self.on_funded()
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
    return web.json_response(await faucet.fund(to_checksum_address(address)))


def mount_faucet(app: web.Application, faucet: DevFaucet) -> None:
    app[FAUCET_KEY] = faucet
    app.router.add_post("/api/dev-wallet/faucet", faucet_handler)
