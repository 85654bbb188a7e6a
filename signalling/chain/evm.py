"""Chains Basement runs against without any external infrastructure.

- `EmbeddedChain`: eth-tester + py-evm inside this process (the default `chain=embedded`), with
  every Basement contract deployed and a demo wallet that holds the demo membership pass.
- `Anvil`: a real JSON-RPC node (foundry's anvil from contracts/node_modules) on 127.0.0.1, for
  tests and local runs that need a node over HTTP; it can be stopped and restarted with its state.
- `deploy_basement`: the one deployment recipe both use.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import AsyncWeb3
from web3.providers.eth_tester import AsyncEthereumTesterProvider

from signalling.chain import contracts
from signalling.ports import free_port

log = logging.getLogger(__name__)

# Publicly known, deterministic keys for the *demo* only: anyone can derive them, so they must
# never hold anything of value. They exist so a developer can import the demo wallet (which holds
# the demo MembershipPass) into a browser wallet and walk through a gated join.
DEMO_WALLET_KEY = "0x" + keccak(text="basement demo dev wallet").hex()
DEV_WRITER_KEY = "0x" + keccak(text="basement dev session writer").hex()
DEMO_PASS_TOKEN_ID = 1
DEMO_BADGE_ID = 1
ETHER = 10**18
# What a demo MembershipPass costs a wallet that buys one (`buy()`), on the chains this module sets up.
DEMO_PASS_PRICE = ETHER // 100


@dataclass(frozen=True)
class Deployment:
    """Addresses of everything `deploy_basement` put on a chain (all checksummed)."""

    chain_id: int
    admin: str
    writer: str
    session_log: str
    multicall: str
    access_token: str
    membership_pass: str
    badges: str
    demo_wallet: str
    demo_pass_token_id: int = DEMO_PASS_TOKEN_ID
    demo_badge_id: int = DEMO_BADGE_ID

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def deploy_basement(w3: AsyncWeb3, *, admin: str, writer: str, demo_wallet: str | None = None) -> Deployment:
    """Deploy Multicall3, SessionLog (with `writer` allowed) and the demo tokens.

    `admin` must be an account the node holds unlocked with enough ether (eth-tester and anvil
    dev accounts); it deploys, owns the demo tokens and funds `writer` and `demo_wallet`.
    """
    multicall = await contracts.deploy(w3, "Multicall3", sender=admin)
    session_log = await contracts.deploy(w3, "SessionLog", admin, sender=admin)
    await contracts.send(w3, session_log.functions.setWriter(writer, True), admin)
    token = await contracts.deploy(w3, "AccessToken", "Basement Access", "BSMT", admin, sender=admin)
    pass_ = await contracts.deploy(w3, "MembershipPass", "Basement Pass", "PASS", admin, sender=admin)
    badges = await contracts.deploy(w3, "Badges", "", admin, sender=admin)
    await contracts.transfer_eth(w3, admin, writer, 100 * ETHER)
    demo = demo_wallet or Account.from_key(DEMO_WALLET_KEY).address
    await contracts.transfer_eth(w3, admin, demo, 10 * ETHER)
    await contracts.send(w3, pass_.functions.mint(demo, DEMO_PASS_TOKEN_ID), admin)
    await contracts.send(w3, pass_.functions.setPrice(DEMO_PASS_PRICE), admin)
    await contracts.send(w3, token.functions.mint(demo, 100 * ETHER), admin)
    await contracts.send(w3, badges.functions.mint(demo, DEMO_BADGE_ID, 1), admin)
    return Deployment(
        chain_id=await w3.eth.chain_id, admin=admin, writer=writer,
        session_log=session_log.address, multicall=multicall.address, access_token=token.address,
        membership_pass=pass_.address, badges=badges.address, demo_wallet=demo,
    )


class EmbeddedChain:
    """An in-process EVM (eth-tester + py-evm) with Basement's contracts deployed.

    Transactions are mined instantly; state is lost when the process exits. The chain id is
    eth-tester's fixed 131277322940537, so SIWE messages for it must use that id.
    """

    def __init__(self, writer_key: str = "") -> None:
        self.writer: LocalAccount = Account.from_key(writer_key or DEV_WRITER_KEY)
        self.demo: LocalAccount = Account.from_key(DEMO_WALLET_KEY)
        self.provider = AsyncEthereumTesterProvider()
        self.w3 = AsyncWeb3(self.provider)
        self._deployment: Deployment | None = None

    @property
    def tester(self) -> Any:
        """The underlying `eth_tester.EthereumTester` (time travel, snapshots)."""
        return self.provider.ethereum_tester

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            raise RuntimeError("EmbeddedChain.start() has not run")
        return self._deployment

    async def start(self) -> Deployment:
        if self._deployment is None:
            accounts = await self.w3.eth.accounts
            self.w3.eth.default_account = accounts[0]
            self._deployment = await deploy_basement(
                self.w3, admin=accounts[0], writer=self.writer.address, demo_wallet=self.demo.address
            )
            log.info("embedded chain ready: %s", self._deployment)
        return self._deployment

    async def dev_accounts(self) -> list[str]:
        """Unlocked, funded accounts (index 0 is the deployer and token owner)."""
        return list(await self.w3.eth.accounts)


# ---------------------------------------------------------------------------------------------
# anvil


def anvil_binary() -> Path:
    """anvil from contracts/node_modules (pinned in package.json), else $BASEMENT_ANVIL or PATH."""
    env = os.environ.get("BASEMENT_ANVIL")
    if env:
        return Path(env)
    local = (Path(__file__).resolve().parents[2] / "contracts" / "node_modules" / "@foundry-rs"
             / "anvil-linux-amd64" / "bin" / "anvil")
    if local.exists():
        return local
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise FileNotFoundError(f"anvil not found at {local}; run `make node-deps`")



# Loopback probes must never go through an http_proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Anvil:
    """An anvil node on 127.0.0.1 that can be stopped and restarted with its chain state.

    State lives in `state_path` (a temp file unless given): anvil loads it on start and dumps it
    on a clean exit (SIGTERM), so `restart()` brings back the same accounts, contracts and
    balances on the same port, which is what an RPC-outage test needs.
    """

    def __init__(self, *, chain_id: int = 31337, port: int = 0, state_path: str | Path | None = None,
                 binary: str | Path | None = None, start_timeout_s: float = 10.0,
                 network: str = "") -> None:
        self.chain_id = chain_id
        self.network = network  # "" = Ethereum; "optimism" = anvil's OP-stack mode
        self.port = port or free_port()
        self.binary = Path(binary) if binary else anvil_binary()
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        if state_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="basement-anvil-")
            state_path = Path(self._tmpdir.name) / "state.json"
        self.state_path = Path(state_path)
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def w3(self) -> AsyncWeb3:
        """A fresh AsyncWeb3 for the calling event loop (aiohttp sessions are per loop)."""
        return AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(self.url, cache_allowed_requests=True))

    def start(self) -> None:
        if self.running:
            return
        cmd = [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port),
               "--chain-id", str(self.chain_id), "--state", str(self.state_path), "--silent"]
        if self.network:
            cmd += ["--network", self.network]
        # stderr to a file, not a pipe: nobody drains a pipe, and a full one would block anvil.
        self.log_path = self.state_path.with_suffix(".log")
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.log_path.read_text(errors="replace")[-2000:]
                self.proc = None
                raise RuntimeError(f"anvil exited at start: {err.strip()}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"anvil did not answer on {self.url} within {self.start_timeout_s}s")

    def _answers(self) -> bool:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with _NO_PROXY.open(req, timeout=0.5) as resp:
                return int(json.loads(resp.read())["result"], 16) == self.chain_id
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return False

    def stop(self) -> None:
        """Stop anvil; SIGTERM lets it dump its state to `state_path` first."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> Anvil:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def deploy_on_anvil(anvil: Anvil, writer_key: str = "") -> Deployment:
    """Deploy Basement on `anvil` once; later calls (also after a restart from saved state) return
    the deployment recorded next to the state file instead of deploying a second copy."""
    record = anvil.state_path.with_suffix(".deployment.json")
    if record.exists() and anvil.state_path.exists():
        return Deployment(**json.loads(record.read_text()))
    w3 = anvil.w3()
    try:
        admin = (await w3.eth.accounts)[0]
        writer = Account.from_key(writer_key or DEV_WRITER_KEY).address
        deployment = await deploy_basement(w3, admin=admin, writer=writer)
    finally:
        await w3.provider.disconnect()
    record.write_text(json.dumps(deployment.to_json(), indent=2) + "\n")
    return deployment


def settings_env(url: str, deployment: Deployment, writer_key: str = DEV_WRITER_KEY) -> dict[str, str]:
    """BASEMENT_* variables that point a server at a chain with this deployment."""
    return {"BASEMENT_CHAIN": "rpc", "BASEMENT_RPC_URL": url, "BASEMENT_CHAIN_ID": str(deployment.chain_id),
            "BASEMENT_SESSION_LOG_ADDRESS": deployment.session_log,
            "BASEMENT_MULTICALL_ADDRESS": deployment.multicall, "BASEMENT_WRITER_KEY": writer_key}


def main(argv: list[str] | None = None) -> None:
    """`python -m signalling.chain.evm [--state FILE] [--port N]`: a local anvil with Basement deployed,
    kept until Ctrl-C (state saved to FILE on exit and reloaded next time)."""
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(prog="python -m signalling.chain.evm", description=main.__doc__)
    parser.add_argument("--state", default="var/anvil/state.json", help="anvil state file (kept across runs)")
    parser.add_argument("--port", type=int, default=8545)
    args = parser.parse_args(argv)
    state = Path(args.state)
    state.parent.mkdir(parents=True, exist_ok=True)
    anvil = Anvil(port=args.port, state_path=state)
    anvil.start()
    try:
        deployment = asyncio.run(deploy_on_anvil(anvil))
        print(json.dumps({"url": anvil.url, **deployment.to_json()}, indent=2))
        for k, v in settings_env(anvil.url, deployment).items():
            print(f"export {k}={v}")
        while anvil.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        anvil.close()


if __name__ == "__main__":
    main()
