"""Contract artifacts (compiled by contracts/compile.js) and small helpers around them.

Artifacts are committed JSON, so nothing here needs node or solc at runtime. The helpers work on
any AsyncWeb3 (in-process eth-tester or a JSON-RPC node such as anvil), which is why reverts are
normalised here: the two backends report the same custom error in different shapes.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector
from web3 import AsyncWeb3
from web3.contract import AsyncContract

ARTIFACTS_DIR = Path(
    os.environ.get("BASEMENT_ARTIFACTS_DIR", Path(__file__).resolve().parents[2] / "contracts" / "artifacts")
)

# Every contract compile.js builds; revert decoding searches all of their ABIs.
CONTRACT_NAMES = ("SessionLog", "Multicall3", "AccessToken", "MembershipPass", "Badges", "OwnedWallet")

_ERROR_STRING = function_signature_to_4byte_selector("Error(string)")
_PANIC = function_signature_to_4byte_selector("Panic(uint256)")


class ArtifactError(RuntimeError):
    """An artifact is missing or unreadable (run `make contracts`)."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str


@functools.cache
def load_artifact(name: str) -> Artifact:
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot load contract artifact {path}: {exc}") from exc
    return Artifact(name=data["contractName"], abi=data["abi"], bytecode=data["bytecode"],
                    deployed_bytecode=data["deployedBytecode"])


def abi(name: str) -> list[dict[str, Any]]:
    return load_artifact(name).abi


def contract_at(w3: AsyncWeb3, name: str, address: str) -> AsyncContract:
    return w3.eth.contract(address=AsyncWeb3.to_checksum_address(address), abi=abi(name))


Sender = str | LocalAccount


async def send(w3: AsyncWeb3, fn: Any, sender: Sender, *, value: int = 0) -> Any:
    """Send a contract function call and wait for a successful receipt.

    `sender` is an address the node holds unlocked (eth-tester and anvil dev accounts) or a local
    account whose key signs here (production writers; never sent to the node).
    """
    if isinstance(sender, LocalAccount):
        tx = await fn.build_transaction({"from": sender.address, "value": value,
                                         "nonce": await w3.eth.get_transaction_count(sender.address, "pending")})
        signed = sender.sign_transaction(tx)
        tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    else:
        tx_hash = await fn.transact({"from": sender, "value": value})
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {tx_hash.hex()} failed")
    return receipt


async def deploy(w3: AsyncWeb3, name: str, *args: Any, sender: Sender) -> AsyncContract:
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt = await send(w3, factory.constructor(*args), sender)
    return w3.eth.contract(address=receipt["contractAddress"], abi=art.abi)


async def transfer_eth(w3: AsyncWeb3, sender: str, to: str, wei: int) -> None:
    tx_hash = await w3.eth.send_transaction({"from": sender, "to": to, "value": wei})
    await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)


# ---------------------------------------------------------------------------------------------
# Revert normalisation


@dataclass(frozen=True)
class Revert:
    """A decoded revert: `name` is the custom error name ("DuplicateSession"), "Error" for
    require/revert strings, "Panic" for panics, or "" when the revert carried no data."""

    name: str
    args: tuple[Any, ...] = ()
    data: bytes = b""


@functools.cache
def _error_table() -> dict[bytes, tuple[str, list[str]]]:
    table: dict[bytes, tuple[str, list[str]]] = {}
    for name in CONTRACT_NAMES:
        try:
            entries = load_artifact(name).abi
        except ArtifactError:
            continue
        for entry in entries:
            if entry.get("type") != "error":
                continue
            types = [_abi_type(i) for i in entry.get("inputs", [])]
            sig = f"{entry['name']}({','.join(types)})"
            table[function_signature_to_4byte_selector(sig)] = (entry["name"], types)
    return table


def _abi_type(inp: dict[str, Any]) -> str:
    t = inp["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in inp["components"]) + ")" + t[len("tuple"):]
    return t


def decode_revert_data(data: bytes) -> Revert:
    if len(data) < 4:
        return Revert("", (), data)
    selector, body = data[:4], data[4:]
    try:
        if selector == _ERROR_STRING:
            return Revert("Error", tuple(abi_decode(["string"], body)), data)
        if selector == _PANIC:
            return Revert("Panic", tuple(abi_decode(["uint256"], body)), data)
        known = _error_table().get(selector)
        if known:
            return Revert(known[0], tuple(abi_decode(known[1], body)), data)
    except Exception:  # noqa: BLE001 - malformed revert payloads still get a selector-level answer
        pass
    return Revert("0x" + selector.hex(), (), data)


_TESTER_BYTES = re.compile(r"execution reverted: (b'.*'|b\".*\")\s*$", re.S)


def revert_bytes(exc: BaseException) -> bytes | None:
    # web3 on a JSON-RPC node: ContractCustomError/ContractLogicError/ContractPanicError with
    # `.data` as a 0x-hex string (sometimes wrapped in a dict).
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    # eth-tester: TransactionFailed("execution reverted: b'\\x00\\xe5x9...'"), the raw revert data
    # as a repr'd bytes literal; reason strings come as plain text instead.
    text = str(exc.args[0]) if exc.args else str(exc)
    m = _TESTER_BYTES.search(text)
    if m:
        try:
            value = ast.literal_eval(m.group(1))
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, bytes) else None
    return None


def decode_revert(exc: BaseException) -> Revert | None:
    """Turn a revert raised by either backend into a `Revert`; None if `exc` is not a revert."""
    from eth_tester.exceptions import TransactionFailed
    from web3.exceptions import ContractLogicError

    if not isinstance(exc, TransactionFailed | ContractLogicError):
        return None
    raw = revert_bytes(exc)
    if raw is not None:
        return decode_revert_data(raw)
    text = str(exc.args[0]) if exc.args else ""
    prefix = "execution reverted: "
    if text.startswith(prefix):
        return Revert("Error", (text[len(prefix):],))
    return Revert("")


def revert_name(exc: BaseException) -> str | None:
    """Custom error name of a revert ("DuplicateSession", "NotWriter", ...), None if not a revert."""
    rev = decode_revert(exc)
    return None if rev is None else rev.name
