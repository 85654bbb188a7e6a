"""Token gates for rooms: conditions, evaluation over one Multicall3 call, caching, re-checks, and
the registry of room configurations.

A gate is a tree: {"all": [...]}, {"any": [...]} or a leaf condition such as
{"standard": "erc721", "chainId": 31337, "contract": "0x…", "tokenId": "7"}. Evaluation fails
closed: if holdings cannot be read, the answer is "deny", never an exception.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, Protocol

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, is_hex_address, to_checksum_address
from web3 import AsyncWeb3

from signalling.protocol.messages import ROOM_RE

log = logging.getLogger(__name__)

CANNOT_VERIFY = "cannot verify holdings right now"
GUEST_IN_GATED_ROOM = "the room is token-gated now; sign in with a wallet that qualifies"
MAX_DEPTH = 4
MAX_LEAVES = 16
MAX_CHAIN_ID = 2**53 - 1  # EIP-155 ids are kept below this so JavaScript wallets can hold them exactly


class GateError(ValueError):
    """A gate or room config is invalid; the message is safe to return as a 400."""


# ---------------------------------------------------------------------------------------------
# conditions


def _checksummed(value: Any, where: str) -> str:
    if not isinstance(value, str) or not is_hex_address(value):
        raise GateError(f"{where}: {value!r} is not an address")
    expected = to_checksum_address(value)
    if value != expected:
        raise GateError(f"{where}: bad checksum for {value} (expected {expected})")
    return value


def _uint(value: Any, where: str, *, positive: bool) -> int:
    # Integers may come as JSON numbers or decimal strings (JS clients lose precision past 2^53).
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise GateError(f"{where}: expected an integer or a decimal string, got {value!r}")
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,78}", value):
        raise GateError(f"{where}: {value!r} is not a non-negative integer")
    n = int(value)
    if n < 0 or n >= 2**256:
        raise GateError(f"{where}: {value!r} is out of range")
    if positive and n == 0:
        raise GateError(f"{where}: must be positive")
    return n


def _amount(value: Any, where: str) -> Decimal:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,60}(\.[0-9]{1,36})?", value):
        raise GateError(f"{where}: {value!r} is not a decimal string like \"10\" or \"0.5\"")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise GateError(f"{where}: {value!r} is not a decimal number") from None
    if d <= 0:
        raise GateError(f"{where}: must be positive")
    return d


@dataclass(frozen=True)
class Condition:
    """A leaf: one holding requirement on one contract of one chain."""

    standard: str  # "erc20" | "erc721" | "erc1155"
    chain_id: int
    contract: str
    token_id: int | None = None  # erc721 (None = any token) and erc1155
    min_balance: str | None = None  # erc20, in token units (decimal string)
    min_amount: int | None = None  # erc1155
    label: str | None = None  # optional human name, e.g. "Basement Pass"

    _FIELDS = {
        "erc20": ({"standard", "chainId", "contract", "minBalance"}, {"label"}),
        "erc721": ({"standard", "chainId", "contract"}, {"tokenId", "label"}),
        "erc1155": ({"standard", "chainId", "contract", "tokenId"}, {"minAmount", "label"}),
    }

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "gate") -> Condition:
        std = obj.get("standard")
        if not isinstance(std, str) or std not in cls._FIELDS:
            raise GateError(f"{where}.standard: unknown standard {std!r} (expected erc20, erc721 or erc1155)")
        required, optional = cls._FIELDS[std]
        missing = sorted(required - obj.keys())
        if missing:
            raise GateError(f"{where}: {std} condition needs {', '.join(missing)}")
        unknown = sorted(obj.keys() - required - optional)
        if unknown:
            raise GateError(f"{where}: unknown field(s) {', '.join(unknown)} in {std} condition")
        chain_id = _uint(obj["chainId"], f"{where}.chainId", positive=True)
        if chain_id > MAX_CHAIN_ID:
            raise GateError(f"{where}.chainId: {chain_id} is above the largest chain id ({MAX_CHAIN_ID})")
        contract = _checksummed(obj["contract"], f"{where}.contract")
        label = obj.get("label")
        if label is not None and (not isinstance(label, str) or not 0 < len(label) <= 64):
            raise GateError(f"{where}.label: must be a string of 1-64 characters")
        if label is not None and not label.isprintable():
            # labels end up in every refusal message a client sees
            raise GateError(f"{where}.label: {label!r} contains control or invisible characters")
        if std == "erc20":
            amount = _amount(obj["minBalance"], f"{where}.minBalance")
            return cls(std, chain_id, contract, min_balance=_plain(amount), label=label)
        if std == "erc721":
            token_id = _uint(obj["tokenId"], f"{where}.tokenId", positive=False) if "tokenId" in obj else None
            return cls(std, chain_id, contract, token_id=token_id, label=label)
        token_id = _uint(obj["tokenId"], f"{where}.tokenId", positive=False)
        min_amount = _uint(obj.get("minAmount", 1), f"{where}.minAmount", positive=True)
        return cls(std, chain_id, contract, token_id=token_id, min_amount=min_amount, label=label)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"standard": self.standard, "chainId": self.chain_id, "contract": self.contract}
        if self.standard == "erc20":
            out["minBalance"] = self.min_balance
        elif self.standard == "erc721":
            if self.token_id is not None:
                out["tokenId"] = str(self.token_id)
        else:
            out["tokenId"] = str(self.token_id)
            out["minAmount"] = str(self.min_amount)
        if self.label:
            out["label"] = self.label
        return out

    def describe(self) -> str:
        where = f"on chain {self.chain_id}"
        if self.standard == "erc20":
            return f"hold at least {self.min_balance} {self.label or 'tokens'} (ERC-20 {self.contract} {where})"
        if self.standard == "erc721":
            if self.token_id is None:
                return f"hold a {self.label or 'token'} (ERC-721 {self.contract} {where})"
            return f"own {self.label or 'token'} #{self.token_id} (ERC-721 {self.contract} {where})"
        return (f"hold at least {self.min_amount} of {self.label or 'token'} id {self.token_id} "
                f"(ERC-1155 {self.contract} {where})")


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f")


@dataclass(frozen=True)
class All:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    children: tuple[Node, ...]


Node = Condition | All | Any_


def _parse_node(obj: Any, where: str, depth: int) -> Node:
    if not isinstance(obj, dict):
        raise GateError(f"{where}: expected an object, got {type(obj).__name__}")
    combinators = [k for k in ("all", "any") if k in obj]
    if combinators:
        if len(obj) != 1:
            raise GateError(f"{where}: an {combinators[0]!r} node must have no other fields, "
                            f"found {', '.join(sorted(k for k in obj if k != combinators[0]))}")
        if depth >= MAX_DEPTH:
            raise GateError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        key = combinators[0]
        items = obj[key]
        if not isinstance(items, list) or not items:
            raise GateError(f"{where}.{key}: must be a non-empty list of conditions")
        if len(items) > MAX_LEAVES:
            raise GateError(f"{where}.{key}: {len(items)} entries, at most {MAX_LEAVES} allowed")
        kids = tuple(_parse_node(c, f"{where}.{key}[{i}]", depth + 1) for i, c in enumerate(items))
        return All(kids) if key == "all" else Any_(kids)
    if "standard" not in obj:
        raise GateError(f"{where}: expected 'all', 'any' or a condition with 'standard'")
    return Condition.from_json(obj, where)


def _node_json(node: Node) -> dict[str, Any]:
    if isinstance(node, Condition):
        return node.to_json()
    key = "all" if isinstance(node, All) else "any"
    return {key: [_node_json(c) for c in node.children]}


def describe(node: Node, top: bool = True) -> str:
    """The gate in words, for a person deciding whether to sign in: "hold X and (own Y or hold Z)"."""
    if isinstance(node, Condition):
        return node.describe()
    joiner = " and " if isinstance(node, All) else " or "
    text = joiner.join(describe(c, top=False) for c in node.children)
    return text if top or len(node.children) == 1 else f"({text})"


def _leaves(node: Node) -> Iterable[Condition]:
    if isinstance(node, Condition):
        yield node
    else:
        for c in node.children:
            yield from _leaves(c)


@dataclass(frozen=True)
class Gate:
    root: Node

    @classmethod
    def from_json(cls, obj: Any) -> Gate:
        gate = cls(_parse_node(obj, "gate", 0))
        n = len(gate.conditions())
        if n > MAX_LEAVES:
            raise GateError(f"gate: {n} conditions, at most {MAX_LEAVES} allowed")
        return gate

    def to_json(self) -> dict[str, Any]:
        return _node_json(self.root)

    def conditions(self) -> list[Condition]:
        """Distinct leaves in first-seen order."""
        return list(dict.fromkeys(_leaves(self.root)))


# ---------------------------------------------------------------------------------------------
# evaluation


@dataclass(frozen=True)
class GateResult:
    allowed: bool
    unmet: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        if self.allowed:
            return ""
        if self.unmet == [CANNOT_VERIFY]:
            return CANNOT_VERIFY
        return "unmet condition: " + "; ".join(self.unmet)


@dataclass(frozen=True)
class _Outcome:
    met: bool
    detail: str = ""  # why a sub-call could not answer, when it could not


def _sel(sig: str) -> bytes:
    return function_signature_to_4byte_selector(sig)


_BALANCE_OF = _sel("balanceOf(address)")
_OWNER_OF = _sel("ownerOf(uint256)")
_BALANCE_OF_1155 = _sel("balanceOf(address,uint256)")
_DECIMALS = _sel("decimals()")
_AGGREGATE3 = _sel("aggregate3((address,bool,bytes)[])")


class GateEvaluator:
    """Evaluates gates for one chain through Multicall3.

    All uncached leaves of a gate (plus any ERC-20 `decimals()` not yet known) go into ONE
    `aggregate3` eth_call with allowFailure=true, so a reverting token only fails its own
    condition. Results are cached per (address, condition) for `cache_ttl_s`.
    """

    def __init__(self, w3: AsyncWeb3, multicall_address: str, chain_id: int, *, cache_ttl_s: float = 30.0,
                 timeout_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.w3 = w3
        # Same provider, no middleware: web3's validation middleware would add an eth_chainId
        # round trip to every eth_call, and the gate check is meant to be exactly one request.
        self._rpc = AsyncWeb3(w3.provider, middleware=[])
        self.multicall = to_checksum_address(multicall_address)
        self.chain_id = chain_id
        self.cache_ttl_s = cache_ttl_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._cache: dict[tuple[str, Condition], tuple[float, _Outcome]] = {}
        self._decimals: dict[str, int] = {}  # token decimals never change, so no expiry

    def invalidate(self, address: str | None = None) -> None:
        if address is None:
            self._cache.clear()
        else:
            for key in [k for k in self._cache if k[0] == address]:
                del self._cache[key]

    async def evaluate(self, gate: Gate | None, address: str, *, use_cache: bool = True) -> GateResult:
        """Never raises: an unreadable chain yields allowed=False with CANNOT_VERIFY."""
        if gate is None:
            return GateResult(True)
        try:
            address = to_checksum_address(address)
        except (ValueError, TypeError):
            return GateResult(False, ["identity is not an Ethereum address"])
        now = self._clock()
        outcomes: dict[Condition, _Outcome] = {}
        todo: list[Condition] = []
        for cond in gate.conditions():
            if cond.chain_id != self.chain_id:
                outcomes[cond] = _Outcome(False, f"chain {cond.chain_id} is not served here")
                continue
            hit = self._cache.get((address, cond)) if use_cache else None
            if hit and hit[0] > now:
                outcomes[cond] = hit[1]
            else:
                todo.append(cond)
        if todo:
            try:
                fresh = await asyncio.wait_for(self._query(address, todo), self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - fail closed on anything the RPC path throws
                log.warning("gate check for %s failed: %r", address, exc)
                return GateResult(False, [CANNOT_VERIFY])
            expires = self._clock() + self.cache_ttl_s
            for cond, outcome in fresh.items():
                self._cache[(address, cond)] = (expires, outcome)
                outcomes[cond] = outcome
            self._prune(now)
        met, unmet = _combine(gate.root, outcomes)
        return GateResult(met, [] if met else unmet)

    def _prune(self, now: float) -> None:
        if len(self._cache) > 50_000:
            for key in [k for k, (exp, _) in self._cache.items() if exp <= now]:
                del self._cache[key]

    async def _query(self, address: str, conds: list[Condition]) -> dict[Condition, _Outcome]:
        calls: list[tuple[str, bool, bytes]] = []
        decimals_idx: dict[str, int] = {}
        for cond in conds:
            if cond.standard == "erc20" and cond.contract not in self._decimals and cond.contract not in decimals_idx:
                decimals_idx[cond.contract] = len(calls)
                calls.append((cond.contract, True, _DECIMALS))
        first_leaf = len(calls)
        for cond in conds:
            calls.append((cond.contract, True, _leaf_calldata(cond, address)))
        data = _AGGREGATE3 + abi_encode(["(address,bool,bytes)[]"], [calls])
        raw = await self._rpc.eth.call({"to": self.multicall, "data": "0x" + data.hex()}, "latest")
        (results,) = abi_decode(["(bool,bytes)[]"], bytes(raw))
        if len(results) != len(calls):
            raise RuntimeError(f"multicall returned {len(results)} results for {len(calls)} calls")
        decimals_err: dict[str, str] = {}
        for token, i in decimals_idx.items():
            ok, ret = results[i]
            value = _word(ok, ret)
            if value is None or value > 77:
                decimals_err[token] = "decimals() failed"
            else:
                self._decimals[token] = value
        out: dict[Condition, _Outcome] = {}
        for cond, (ok, ret) in zip(conds, results[first_leaf:], strict=True):
            out[cond] = self._judge(cond, address, ok, ret, decimals_err.get(cond.contract))
        return out

    def _judge(self, cond: Condition, address: str, ok: bool, ret: bytes, err: str | None) -> _Outcome:
        if err:
            return _Outcome(False, err)
        value = _word(ok, ret)
        if value is None:
            fn = "ownerOf" if cond.standard == "erc721" and cond.token_id is not None else "balanceOf"
            return _Outcome(False, f"{fn} call failed")
        if cond.standard == "erc20":
            need = (Decimal(cond.min_balance or "0") * (Decimal(10) ** self._decimals[cond.contract]))
            return _Outcome(value >= int(need.to_integral_value(rounding=ROUND_CEILING)))
        if cond.standard == "erc721":
            if cond.token_id is not None:
                return _Outcome(value == int(address, 16))
            return _Outcome(value > 0)
        return _Outcome(value >= (cond.min_amount or 1))


def _leaf_calldata(cond: Condition, address: str) -> bytes:
    if cond.standard == "erc20" or (cond.standard == "erc721" and cond.token_id is None):
        return _BALANCE_OF + abi_encode(["address"], [address])
    if cond.standard == "erc721":
        return _OWNER_OF + abi_encode(["uint256"], [cond.token_id])
    return _BALANCE_OF_1155 + abi_encode(["address", "uint256"], [address, cond.token_id])


def _word(ok: bool, ret: bytes) -> int | None:
    # A call to an address without code "succeeds" with no data: that is a failure too.
    if not ok or len(ret) < 32:
        return None
    return int.from_bytes(ret[:32], "big")


def _combine(node: Node, outcomes: dict[Condition, _Outcome]) -> tuple[bool, list[str]]:
    if isinstance(node, Condition):
        o = outcomes[node]
        if o.met:
            return True, []
        return False, [node.describe() + (f" [{o.detail}]" if o.detail else "")]
    results = [_combine(c, outcomes) for c in node.children]
    if isinstance(node, All):
        unmet = [u for met, us in results if not met for u in us]
        return not unmet, unmet
    if any(met for met, _ in results):
        return True, []
    alternatives = [" and ".join(us) for _, us in results]
    return False, ["one of: " + " OR ".join(alternatives)]


# ---------------------------------------------------------------------------------------------
# periodic re-check

PresentFn = Callable[[], Awaitable[Iterable[tuple[str, str]]]]
RevokedFn = Callable[[str, str, GateResult], Awaitable[None]]


class Rechecker:
    """Re-evaluates present participants against their room's gate every `interval_s` seconds,
    bypassing the cache, and calls `on_revoked(room, address, result)` for each who no longer
    qualifies.

    A participant is only removed on a definite "no": when holdings cannot be read (RPC outage),
    everyone stays, since kicking a whole call over a node hiccup is worse than a late removal.
    Guests (non-address identities) in a room that has a gate now are a definite "no".
    """

    def __init__(self, evaluator: GateEvaluator, registry: RoomRegistry, present: PresentFn,
                 on_revoked: RevokedFn, interval_s: float = 60.0) -> None:
        self.evaluator = evaluator
        self.registry = registry
        self.present = present
        self.on_revoked = on_revoked
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> list[tuple[str, str, GateResult]]:
        revoked: list[tuple[str, str, GateResult]] = []
        gates: dict[str, Gate | None] = {}
        for room, address in dict.fromkeys(await self.present()):
            if room not in gates:
                cfg = await self.registry.get(room)
                gates[room] = cfg.gate if cfg else None
            gate = gates[room]
            if gate is None:
                continue  # open rooms keep everyone
            if not is_hex_address(address):
                # a guest who came in while the room was open: a gate now applies, and a guest holds nothing
                result = GateResult(False, [GUEST_IN_GATED_ROOM])
            else:
                result = await self.evaluator.evaluate(gate, address, use_cache=False)
                if result.allowed or result.unmet == [CANNOT_VERIFY]:
                    continue
            revoked.append((room, address, result))
            try:
                await self.on_revoked(room, address, result)
            except Exception:
                log.exception("re-check callback failed for %s in %s", address, room)
        return revoked

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check_once()
            except Exception:
                log.exception("gate re-check round failed")

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="gate-recheck")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


# ---------------------------------------------------------------------------------------------
# room registry

_ROOM_NAME = ROOM_RE  # one definition of a room name, shared with the client protocol


def validate_room_name(name: str) -> str:
    if not isinstance(name, str) or not _ROOM_NAME.fullmatch(name):
        raise GateError(f"room name {name!r}: use 1-64 letters, digits, '_', '.', '-' (starting alphanumeric)")
    return name


E2EE_MODES = ("required", "optional", "off")


@dataclass(frozen=True)
class RoomConfig:
    name: str
    gate: Gate | None = None
    max_participants: int | None = None
    p2p: bool | None = None  # two participants go peer to peer; None: the server's `p2p` setting
    # end-to-end encryption of media (docs/e2ee.md): required (unencrypted tracks are refused),
    # optional (each track says whether it is), off (encrypted tracks are refused); None: optional
    e2ee: str | None = None

    @classmethod
    def from_json(cls, name: str, obj: Any, *, chain_ids: Iterable[int] | None = None) -> RoomConfig:
        """Validate an admin PUT body: {gate?: tree|null, max_participants?: int|null, p2p?: bool|null,
        e2ee?: "required"|"optional"|"off"|null}."""
        validate_room_name(name)
        if not isinstance(obj, dict):
            raise GateError("room config must be a JSON object")
        unknown = sorted(obj.keys() - {"gate", "max_participants", "p2p", "e2ee"})
        if unknown:
            raise GateError(f"unknown field(s) in room config: {', '.join(unknown)}")
        gate = Gate.from_json(obj["gate"]) if obj.get("gate") is not None else None
        if gate is not None and chain_ids is not None:
            served = set(chain_ids)
            for cond in gate.conditions():
                if cond.chain_id not in served:
                    raise GateError(f"gate: chain {cond.chain_id} is not served here "
                                    f"(served: {', '.join(map(str, sorted(served)))})")
        maxp = obj.get("max_participants")
        if maxp is not None and (isinstance(maxp, bool) or not isinstance(maxp, int) or not 0 < maxp <= 10_000):
            raise GateError("max_participants: must be an integer between 1 and 10000")
        p2p = obj.get("p2p")
        if p2p is not None and not isinstance(p2p, bool):
            raise GateError("p2p: must be true, false or null (the server's setting)")
        e2ee = obj.get("e2ee")
        if e2ee is not None and e2ee not in E2EE_MODES:
            raise GateError(f"e2ee: must be {', '.join(repr(m) for m in E2EE_MODES)} or null (optional)")
        return cls(name, gate, maxp, p2p, e2ee)

    def to_json(self) -> dict[str, Any]:
        body = {"name": self.name, "gate": self.gate.to_json() if self.gate else None,
                "max_participants": self.max_participants}
        if self.p2p is not None:
            # only when set: a replica of the previous release refuses a config with fields it does
            # not know, and during a rolling upgrade it reads what the new ones write
            body["p2p"] = self.p2p
        if self.e2ee is not None:
            body["e2ee"] = self.e2ee
        return body


class RoomRegistry(Protocol):
    """Room configurations; rooms without a config, or with gate=None, are open."""

    async def get(self, name: str) -> RoomConfig | None: ...
    async def put(self, config: RoomConfig) -> None: ...
    async def delete(self, name: str) -> bool: ...
    async def list(self) -> list[RoomConfig]: ...
    async def seed(self, config: RoomConfig) -> None:
        """Add a default room unless an operator has already configured (or changed) it."""


class MemoryRoomRegistry:
    """In-process registry (single node / embedded mode)."""

    def __init__(self, rooms: Iterable[RoomConfig] = ()) -> None:
        self._rooms: dict[str, RoomConfig] = {r.name: r for r in rooms}

    async def get(self, name: str) -> RoomConfig | None:
        return self._rooms.get(name)

    async def put(self, config: RoomConfig) -> None:
        self._rooms[config.name] = config

    async def delete(self, name: str) -> bool:
        return self._rooms.pop(name, None) is not None

    async def list(self) -> list[RoomConfig]:
        return [self._rooms[k] for k in sorted(self._rooms)]

    async def seed(self, config: RoomConfig) -> None:
        self._rooms.setdefault(config.name, config)
