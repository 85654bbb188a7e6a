"""Chain fixtures: the embedded eth-tester chain and a real anvil, both with Basement deployed.

Registered for every test by `pytest_plugins` in tests/conftest.py. Both chains are
session-scoped because deployment dominates their cost; tests stay independent by minting to fresh
random accounts (`ChainHandle.fresh_account`) and unique token ids, never by resetting the chain.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3
from web3.contract import AsyncContract

from signalling.chain import contracts
from signalling.chain.evm import Anvil, Deployment, EmbeddedChain, deploy_basement

__all__ = ["AnvilNode", "ChainHandle", "anvil_node", "chain", "embedded", "embedded_chain", "fresh_anvil",
           "run_sync"]

T = TypeVar("T")
_token_ids = itertools.count(10_000 + secrets.randbelow(1_000_000) * 1000)


@dataclass
class ChainHandle:
    """One chain as a test sees it: a web3 for the current loop plus mint/transfer helpers."""

    kind: str
    w3: AsyncWeb3
    deployment: Deployment
    owner: str  # unlocked account that owns the demo tokens
    writer: LocalAccount  # allowed SessionLog writer (funded)
    accounts: list[str] = field(default_factory=list)

    @property
    def chain_id(self) -> int:
        return self.deployment.chain_id

    def fresh_account(self) -> LocalAccount:
        return Account.create()

    def new_token_id(self) -> int:
        return next(_token_ids)

    def contract(self, name: str, address: str | None = None) -> AsyncContract:
        default = {"SessionLog": self.deployment.session_log, "Multicall3": self.deployment.multicall,
                   "AccessToken": self.deployment.access_token,
                   "MembershipPass": self.deployment.membership_pass, "Badges": self.deployment.badges}
        return contracts.contract_at(self.w3, name, address or default[name])

    async def mint_pass(self, to: str, token_id: int | None = None) -> int:
        token_id = self.new_token_id() if token_id is None else token_id
        c = self.contract("MembershipPass")
        await contracts.send(self.w3, c.functions.mint(to, token_id), self.owner)
        return token_id

    async def mint_tokens(self, to: str, wei: int) -> None:
        c = self.contract("AccessToken")
        await contracts.send(self.w3, c.functions.mint(to, wei), self.owner)

    async def mint_badge(self, to: str, badge_id: int, amount: int) -> None:
        c = self.contract("Badges")
        await contracts.send(self.w3, c.functions.mint(to, badge_id, amount), self.owner)

    async def fund(self, to: str, wei: int = 10**18) -> None:
        await contracts.transfer_eth(self.w3, self.owner, to, wei)

    async def transfer_pass(self, holder: LocalAccount, to: str, token_id: int) -> None:
        await self.fund(holder.address)
        c = self.contract("MembershipPass")
        await contracts.send(self.w3, c.functions.transferFrom(holder.address, to, token_id), holder)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, on its own thread and loop, so it works even
    when called from inside a running test loop and never replaces that thread's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def embedded_chain() -> EmbeddedChain:
    # eth-tester's provider holds no loop-bound state, so one chain serves every test's loop.
    chain = EmbeddedChain()
    run_sync(chain.start())
    return chain


@dataclass
class AnvilNode:
    anvil: Anvil
    deployment: Deployment
    owner: str
    writer: LocalAccount


async def _deploy_on(anvil: Anvil) -> AnvilNode:
    w3 = anvil.w3()
    try:
        owner = (await w3.eth.accounts)[0]
        writer = Account.create()
        return AnvilNode(anvil, await deploy_basement(w3, admin=owner, writer=writer.address), owner, writer)
    finally:
        await w3.provider.disconnect()


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    with Anvil() as anvil:
        yield run_sync(_deploy_on(anvil))


@pytest.fixture
async def fresh_anvil() -> AsyncIterator[AnvilNode]:
    """A private anvil for tests that stop/restart the node."""
    anvil = Anvil()
    anvil.start()
    try:
        yield await _deploy_on(anvil)
    finally:
        anvil.close()


@pytest.fixture
async def embedded(embedded_chain: EmbeddedChain) -> ChainHandle:
    d = embedded_chain.deployment
    return ChainHandle("embedded", embedded_chain.w3, d, d.admin, embedded_chain.writer,
                       await embedded_chain.dev_accounts())


@pytest.fixture(params=["embedded", "anvil"])
async def chain(request: pytest.FixtureRequest) -> AsyncIterator[ChainHandle]:
    """Runs the test once on the embedded chain and once on anvil."""
    if request.param == "embedded":
        ec: EmbeddedChain = request.getfixturevalue("embedded_chain")
        d = ec.deployment
        yield ChainHandle("embedded", ec.w3, d, d.admin, ec.writer, await ec.dev_accounts())
        return
    node: AnvilNode = request.getfixturevalue("anvil_node")
    w3 = node.anvil.w3()
    try:
        yield ChainHandle("anvil", w3, node.deployment, node.owner, node.writer, list(await w3.eth.accounts))
    finally:
        await w3.provider.disconnect()
