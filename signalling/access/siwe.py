"""Sign-In with Ethereum (EIP-4361): the message format and the single-use nonces it carries.

`SiweMessage` parses strictly (a text its fields do not reproduce byte for byte is refused) and
builds the exact text a wallet signs; `NonceStore` is where server-issued nonces live until used,
and `NonceQuota` bounds how many one client address may hold.
"""

from __future__ import annotations

import heapq
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Protocol
from urllib.parse import urlsplit

from eth_utils import is_hex_address, to_checksum_address

from signalling.access.errors import AuthError

# ---------------------------------------------------------------------------------------------
# EIP-4361 messages

_HEADER = re.compile(r"^(?:(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://)?(?P<domain>[^\s/?#]+) wants you to sign in "
                     r"with your Ethereum account:$")
_NONCE = re.compile(r"[A-Za-z0-9]{8,}")
# ASCII: `\d` would also take other scripts' digits, which datetime then refuses or misreads
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.I | re.A)
_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:\S+")
_DOMAIN = re.compile(r"[A-Za-z0-9.\-\[\]:@%_~!$&'()*+,;=]+")
_OPTIONAL = ("Expiration Time", "Not Before", "Request ID", "Resources")


def parse_time(value: str, name: str) -> datetime:
    if not _DATETIME.fullmatch(value):
        raise AuthError(f"malformed SIWE message: {name} {value!r} is not an RFC 3339 date-time")
    try:
        dt = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        dt.timestamp()  # years 1 and 9999 with an offset parse, but overflow here
    except (ValueError, OverflowError):
        raise AuthError(f"malformed SIWE message: {name} {value!r} is not a valid date-time") from None
    return dt


def _absolute_uri(value: str, what: str) -> str:
    # The grammar check alone lets through text that urlsplit refuses (`http://[`); the verifier
    # splits the URI later, so refuse here with the precise reason instead of failing there.
    if not _URI.fullmatch(value):
        raise AuthError(f"malformed SIWE message: {what} {value!r} is not an absolute URI")
    try:
        urlsplit(value).port  # noqa: B018 - .port validates the port number too
    except ValueError as exc:
        raise AuthError(f"malformed SIWE message: {what} {value!r} is not a valid URI ({exc})") from None
    return value


def format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class SiweMessage:
    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: str
    statement: str | None = None
    version: str = "1"
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()
    scheme: str | None = None

    def to_text(self) -> str:
        """The exact EIP-4361 text a wallet signs."""
        prefix = f"{self.scheme}://" if self.scheme else ""
        lines = [f"{prefix}{self.domain} wants you to sign in with your Ethereum account:", self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines += ["", f"URI: {self.uri}", f"Version: {self.version}", f"Chain ID: {self.chain_id}",
                  f"Nonce: {self.nonce}", f"Issued At: {self.issued_at}"]
        if self.expiration_time:
            lines.append(f"Expiration Time: {self.expiration_time}")
        if self.not_before:
            lines.append(f"Not Before: {self.not_before}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {r}" for r in self.resources]
        return "\n".join(lines)

    @classmethod
    def parse(cls, text: str) -> SiweMessage:
        """Strict EIP-4361 parser; raises AuthError("malformed SIWE message: ...") naming the field."""
        if not isinstance(text, str) or not text:
            raise AuthError("malformed SIWE message: empty")
        if "\r" in text:
            raise AuthError("malformed SIWE message: line endings must be LF")
        try:
            text.encode("utf-8")  # the signed bytes are the UTF-8 text (EIP-191): a lone surrogate has none
        except UnicodeEncodeError as e:
            raise AuthError(f"malformed SIWE message: not valid Unicode at char {e.start}") from None
        lines = text.split("\n")
        m = _HEADER.match(lines[0])
        if not m:
            raise AuthError("malformed SIWE message: line 1 must be '<domain> wants you to sign in with your "
                            "Ethereum account:'")
        domain = m.group("domain")
        if not _DOMAIN.fullmatch(domain):
            raise AuthError(f"malformed SIWE message: domain {domain!r} is not a valid authority")
        if len(lines) < 2 or not is_hex_address(lines[1]):
            raise AuthError("malformed SIWE message: line 2 must be an Ethereum address")
        address = lines[1]
        if to_checksum_address(address) != address:
            raise AuthError("malformed SIWE message: address is not EIP-55 checksummed")
        if len(lines) < 4 or lines[2] != "":
            raise AuthError("malformed SIWE message: expected an empty line after the address")
        i = 3
        statement = None
        if lines[i] != "":
            statement = lines[i]
            i += 1
        if i >= len(lines) or lines[i] != "":
            raise AuthError("malformed SIWE message: expected an empty line after the statement")
        i += 1
        fields: dict[str, str] = {}
        for name in ("URI", "Version", "Chain ID", "Nonce", "Issued At"):
            if i >= len(lines) or not lines[i].startswith(f"{name}: "):
                raise AuthError(f"malformed SIWE message: missing '{name}:' line")
            fields[name] = lines[i][len(name) + 2:]
            i += 1
        resources: list[str] = []
        order = list(_OPTIONAL)
        while i < len(lines):
            line = lines[i]
            key = next((k for k in order if line.startswith(f"{k}:")), None)
            if key is None:
                raise AuthError(f"malformed SIWE message: unexpected line {line[:40]!r}")
            order = order[order.index(key) + 1:]  # fields must come in the EIP's order, once each
            if key == "Resources":
                if line != "Resources:":
                    raise AuthError("malformed SIWE message: 'Resources:' must be alone on its line")
                i += 1
                if i >= len(lines):
                    # allowed by the grammar, but to_text() could not reproduce it: the signed text
                    # and the text we re-create must be the same bytes
                    raise AuthError("malformed SIWE message: 'Resources:' must be followed by '- <uri>' lines")
                while i < len(lines):
                    if not lines[i].startswith("- ") or not _URI.fullmatch(lines[i][2:]):
                        raise AuthError(f"malformed SIWE message: resource {lines[i][:40]!r} is not '- <uri>'")
                    resources.append(_absolute_uri(lines[i][2:], "resource"))
                    i += 1
                break
            if not line.startswith(f"{key}: "):
                raise AuthError(f"malformed SIWE message: '{key}:' must be followed by a space and a value")
            fields[key] = line[len(key) + 2:]
            i += 1
        uri = _absolute_uri(fields["URI"], "URI")
        if fields["Version"] != "1":
            raise AuthError(f"malformed SIWE message: unsupported version {fields['Version']!r}")
        if not re.fullmatch(r"[1-9][0-9]{0,19}", fields["Chain ID"]):
            raise AuthError(f"malformed SIWE message: chain id {fields['Chain ID']!r} is not a positive integer")
        if not _NONCE.fullmatch(fields["Nonce"]):
            raise AuthError("malformed SIWE message: nonce must be at least 8 alphanumeric characters")
        for k in ("Issued At", "Expiration Time", "Not Before"):
            if k in fields:
                parse_time(fields[k], k.lower())
        msg = cls(domain=domain, address=address, uri=uri, chain_id=int(fields["Chain ID"]),
                  nonce=fields["Nonce"], issued_at=fields["Issued At"], statement=statement,
                  version=fields["Version"], expiration_time=fields.get("Expiration Time"),
                  not_before=fields.get("Not Before"), request_id=fields.get("Request ID"),
                  resources=tuple(resources), scheme=m.group("scheme"))
        # What was signed must be exactly what the fields say: a text the fields do not reproduce
        # could mean one thing to the wallet's display and another to us.
        if msg.to_text() != text:
            raise AuthError("malformed SIWE message: not in EIP-4361 form (re-serialising it changes the text)")
        return msg


# ---------------------------------------------------------------------------------------------
# nonces


class NonceState(Enum):
    OK = "ok"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


class NonceStore(Protocol):
    """Server-issued single-use nonces. `consume` must be atomic (one winner per nonce); a Redis
    version can use SET NX for `put` and a Lua script or GETDEL+marker for `consume`.

    `spend` is the same idea for keys the store never issued (a grant's jti): True for the first
    caller only, remembered until `expires_at`."""

    async def put(self, nonce: str, expires_at: float) -> None: ...
    async def peek(self, nonce: str, now: float) -> NonceState: ...
    async def consume(self, nonce: str, now: float) -> NonceState: ...
    async def spend(self, key: str, expires_at: float) -> bool: ...


class StoreFull(Exception):
    """The in-memory store holds as many live entries as it may; nothing was evicted."""


MAX_OUTSTANDING_NONCES = 100_000


class _Expiring:
    """A dict whose entries vanish at their expiry; a heap makes pruning O(log n) per entry."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: dict[str, tuple[float, bool]] = {}  # key -> (expires_at, used)
        self._heap: list[tuple[float, str]] = []

    def prune(self, now: float, linger_s: float = 0.0) -> None:
        while self._heap and self._heap[0][0] + linger_s <= now:
            exp, key = heapq.heappop(self._heap)
            entry = self.items.get(key)
            if entry is not None and entry[0] == exp:
                del self.items[key]

    def add(self, key: str, expires_at: float, now: float, linger_s: float = 0.0) -> None:
        if len(self.items) >= self.cap:
            self.prune(now, linger_s)
            if len(self.items) >= self.cap:
                # Refuse rather than evict: evicting would let a flood of requests cancel other
                # users' sign-ins in progress (and forget spent grants, making them reusable).
                raise StoreFull(f"more than {self.cap} entries outstanding")
        self.items[key] = (expires_at, False)
        heapq.heappush(self._heap, (expires_at, key))


class MemoryNonceStore:
    """Nonces and spent grant ids of one process. Bounded: entries leave at expiry (used nonces
    linger a minute so a late replay reads "used"/"expired", not "unknown"); at the cap new entries
    are refused (`StoreFull`), never anyone else's evicted."""

    LINGER_S = 60.0

    def __init__(self, max_outstanding: int = MAX_OUTSTANDING_NONCES,
                 clock: Callable[[], float] = time.time) -> None:
        self._nonces = _Expiring(max_outstanding)
        self._spent = _Expiring(max_outstanding)
        self._clock = clock

    async def put(self, nonce: str, expires_at: float) -> None:
        self._nonces.add(nonce, expires_at, self._clock(), self.LINGER_S)

    async def peek(self, nonce: str, now: float) -> NonceState:
        entry = self._nonces.items.get(nonce)
        if entry is None:
            return NonceState.UNKNOWN
        if entry[1]:
            return NonceState.USED
        return NonceState.EXPIRED if entry[0] <= now else NonceState.OK

    async def consume(self, nonce: str, now: float) -> NonceState:
        state = await self.peek(nonce, now)
        if state is NonceState.OK:
            # Kept (marked used) until expiry so a replay is reported as a replay, not "unknown".
            self._nonces.items[nonce] = (self._nonces.items[nonce][0], True)
        return state

    async def spend(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        self._spent.prune(now)
        if key in self._spent.items:
            return False
        self._spent.add(key, expires_at, now)
        return True


class NonceQuota:
    """Outstanding (issued, not yet used or expired) sign-in nonces per client address.

    Bounds what one address can hold, so a flood from one client is refused for that client
    alone; `total` bounds them all (the store then refuses new ones rather than evict).
    """

    def __init__(self, per_client: int, total: int = MAX_OUTSTANDING_NONCES,
                 clock: Callable[[], float] = time.time) -> None:
        self.per_client = per_client
        self.total = total
        self._clock = clock
        self._by_client: dict[str, dict[str, float]] = {}
        self._owner: dict[str, str] = {}
        self._heap: list[tuple[float, str]] = []

    def _prune(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, nonce = heapq.heappop(self._heap)
            self.release(nonce)

    def take(self, client: str, nonce: str, expires_at: float) -> None:
        now = self._clock()
        self._prune(now)
        mine = self._by_client.get(client, {})
        if self.per_client and len(mine) >= self.per_client:
            wait = max(1, math.ceil(min(mine.values()) - now))
            raise AuthError(f"too many sign-ins in progress from your address: at most {self.per_client} "
                            f"unused nonces (each expires after use or in {wait} s)", 429)
        if len(self._owner) >= self.total:
            raise AuthError("too many sign-ins in progress on this server; try again shortly", 503)
        self._by_client.setdefault(client, {})[nonce] = expires_at
        self._owner[nonce] = client
        heapq.heappush(self._heap, (expires_at, nonce))

    def release(self, nonce: str) -> None:
        client = self._owner.pop(nonce, None)
        if client is None:
            return
        mine = self._by_client.get(client)
        if mine is not None:
            mine.pop(nonce, None)
            if not mine:
                del self._by_client[client]

    def outstanding(self, client: str) -> int:
        self._prune(self._clock())
        return len(self._by_client.get(client, {}))
