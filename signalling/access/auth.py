"""Identity and admission: Sign-In with Ethereum (EIP-4361), sign-in tokens and room grants.

`AuthService` is framework-free; `auth_routes()` wraps it in thin aiohttp handlers. Every failure
is an `AuthError` whose message says exactly what failed, so clients (and tests) can tell a
replayed nonce from an expired message from a wrong domain.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web
from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct
from eth_utils import is_hex_address, to_checksum_address
from web3 import AsyncWeb3

from signalling import safejson
from signalling.access.gating import CANNOT_VERIFY, GateError, GateEvaluator, RoomRegistry, validate_room_name
from signalling.access.throttle import RateLimiter, request_client
from signalling.httpjson import BodyError, read_object

log = logging.getLogger(__name__)

EIP1271_MAGIC = bytes.fromhex("1626ba7e")
_IS_VALID_SIGNATURE = [{
    "type": "function", "name": "isValidSignature", "stateMutability": "view",
    "inputs": [{"name": "hash", "type": "bytes32"}, {"name": "signature", "type": "bytes"}],
    "outputs": [{"name": "", "type": "bytes4"}],
}]


class AuthError(Exception):
    """Authentication or authorisation failed; str(exc) is the precise reason."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class AccessDenied(AuthError):
    """The identity is known but the room's gate said no (HTTP 403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 403)


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


def _parse_time(value: str, name: str) -> datetime:
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
                _parse_time(fields[k], k.lower())
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


_NONCE_ERRORS = {
    NonceState.UNKNOWN: "unknown nonce (request one from /auth/nonce)",
    NonceState.USED: "nonce already used",
    NonceState.EXPIRED: "nonce expired",
}


# ---------------------------------------------------------------------------------------------
# compact signed tokens (grants, sign-in tokens)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Signer:
    """HMAC-SHA256 over canonical JSON: `base64url(json).base64url(mac)`. Each token type gets a
    subkey derived from the secret, so a sign-in token can never verify as a grant.

    `purpose` derives the subkey and is the `typ` claim; `label` names the token in errors."""

    def __init__(self, secret: bytes, purpose: str, label: str | None = None) -> None:
        self.key = hmac.new(secret, b"basement/" + purpose.encode(), hashlib.sha256).digest()
        self.purpose = purpose
        self.label = label or purpose

    def sign(self, claims: dict[str, Any]) -> str:
        body = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        return _b64(body) + "." + _b64(hmac.new(self.key, body, hashlib.sha256).digest())

    def unsign(self, token: str) -> dict[str, Any]:
        label = self.label
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 4096:
            raise AuthError(f"malformed {label}")
        body_b64, mac_b64 = token.split(".")
        try:
            body, mac = _unb64(body_b64), _unb64(mac_b64)
        except ValueError:
            raise AuthError(f"malformed {label}") from None
        if not hmac.compare_digest(mac, hmac.new(self.key, body, hashlib.sha256).digest()):
            raise AuthError(f"{label} signature invalid")
        try:
            # authentic (the MAC matched) but still decoded with limits: a leaked key must not
            # turn into a way to crash the process
            claims = safejson.loads(body, max_bytes=4096, max_depth=4)
        except safejson.JsonError:
            raise AuthError(f"malformed {label}") from None
        if not isinstance(claims, dict) or claims.get("typ") != self.purpose:
            raise AuthError(f"malformed {label}")
        return claims


def _secret(secret: bytes | str) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        # No default secret on purpose: a random key is safe (tokens die with the process) and
        # only works on one node, which is the honest limit of an unconfigured deployment.
        log.warning("no grant secret configured: using a random per-process key (single node only)")
        return secrets.token_bytes(32)
    return secret


@dataclass(frozen=True)
class Grant:
    room: str
    identity: str  # checksummed address or "guest-…"
    can_publish: bool
    can_subscribe: bool
    issued_at: int
    expires_at: int
    jti: str


class GrantIssuer:
    """Signed, short-lived permission to join one room (what the SFU admits on)."""

    def __init__(self, secret: bytes | str, ttl_s: int = 300, *, clock: Callable[[], float] = time.time) -> None:
        self.secret = _secret(secret)
        self._signer = _Signer(self.secret, "grant")
        self.ttl_s = ttl_s
        self._clock = clock

    def issue(self, room: str, identity: str, *, can_publish: bool = True, can_subscribe: bool = True,
              ttl_s: int | None = None) -> str:
        now = int(self._clock())
        claims = {"typ": "grant", "room": room, "id": identity, "pub": bool(can_publish),
                  "sub": bool(can_subscribe), "iat": now, "exp": now + (ttl_s or self.ttl_s),
                  "jti": secrets.token_urlsafe(12)}
        return self._signer.sign(claims)

    def verify(self, token: str, room: str) -> Grant:
        c = self._signer.unsign(token)
        try:
            grant = Grant(room=c["room"], identity=c["id"], can_publish=c["pub"], can_subscribe=c["sub"],
                          issued_at=c["iat"], expires_at=c["exp"], jti=c["jti"])
        except KeyError:
            raise AuthError("malformed grant") from None
        if not isinstance(grant.expires_at, int) or not isinstance(grant.room, str):
            raise AuthError("malformed grant")
        if grant.expires_at <= self._clock():
            raise AuthError("grant expired")
        if grant.room != room:
            raise AuthError("grant is for another room")
        return grant


# The sign-in token's key-derivation label and `typ` claim. Frozen: it predates the name "sign-in
# token", and changing it would invalidate every token in flight and, during a rolling upgrade,
# make old and new replicas reject each other's tokens.
SIGNIN_TOKEN_PURPOSE = "session"


class SignInIssuer:
    """Sign-in tokens: signed proof of a completed SIWE sign-in, so a client signs once and asks
    for many grants.

    Short-lived (minutes): it cannot be revoked, and whoever holds it can ask for grants."""

    def __init__(self, secret: bytes | str, ttl_s: int = 900, *, clock: Callable[[], float] = time.time) -> None:
        self._signer = _Signer(_secret(secret), SIGNIN_TOKEN_PURPOSE, "sign-in token")
        self.ttl_s = ttl_s
        self._clock = clock

    def issue(self, address: str) -> tuple[str, int]:
        now = int(self._clock())
        exp = now + self.ttl_s
        return self._signer.sign({"typ": SIGNIN_TOKEN_PURPOSE, "addr": address, "iat": now, "exp": exp}), exp

    def verify(self, token: str) -> str:
        c = self._signer.unsign(token)
        addr, exp = c.get("addr"), c.get("exp")
        if not isinstance(addr, str) or not isinstance(exp, int):
            raise AuthError("malformed sign-in token")
        if exp <= self._clock():
            raise AuthError("sign-in token expired")
        return addr


# ---------------------------------------------------------------------------------------------
# the service


@dataclass(frozen=True)
class SignIn:
    address: str
    signin_token: str
    expires_at: int


@dataclass(frozen=True)
class IssuedGrant:
    token: str
    grant: Grant


@dataclass
class AuthService:
    """SIWE verification, sign-in tokens and gated grant issuance.

    `origin` is the public base URL (Settings.base_url): its host[:port] is the SIWE domain and
    its scheme://host[:port] the origin every message URI must share. `w3` is only used for
    EIP-1271 contract-wallet signatures; without it only EOAs can sign in.
    """

    origin: str
    chain_id: int
    grants: GrantIssuer
    registry: RoomRegistry
    evaluator: GateEvaluator | None = None
    w3: AsyncWeb3 | None = None
    signins: SignInIssuer | None = None
    nonces: NonceStore = field(default_factory=MemoryNonceStore)
    nonce_ttl_s: int = 300
    clock_skew_s: int = 60
    require_auth: bool = False
    clock: Callable[[], float] = time.time
    signin_ttl_s: int = 900
    nonces_per_client: int = 5  # 0 = no per-address cap
    limiter: RateLimiter | None = None  # per client address, over every /auth/* request
    domain: str = field(init=False)
    quota: NonceQuota = field(init=False)

    def __post_init__(self) -> None:
        self.rebase(self.origin)
        if self.signins is None:
            # Same secret, different derived subkey: sign-in tokens and grants rotate together but
            # a token of one kind never verifies as the other.
            self.signins = SignInIssuer(self.grants.secret, self.signin_ttl_s, clock=self.clock)
        self.quota = NonceQuota(self.nonces_per_client, clock=self.clock)

    def rebase(self, origin: str) -> None:
        """Set the public origin (the SIWE domain), e.g. once the real port of port 0 is known."""
        self.origin = origin
        parts = urlsplit(self.origin)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"origin {self.origin!r} must be an absolute URL like https://example.org")
        self.domain = parts.netloc
        self._scheme = parts.scheme.lower()
        self._origin = f"{parts.scheme}://{parts.netloc}".lower()

    # --- SIWE ---------------------------------------------------------------------------------

    async def new_nonce(self, client: str = "") -> tuple[str, float]:
        """A fresh nonce for `client` (its address key); AuthError 429/503 past the caps."""
        nonce = secrets.token_hex(16)
        expires_at = self.clock() + self.nonce_ttl_s
        self.quota.take(client, nonce, expires_at)
        try:
            await self.nonces.put(nonce, expires_at)
        except StoreFull:
            self.quota.release(nonce)
            raise AuthError("too many sign-ins in progress on this server; try again shortly", 503) from None
        except BaseException:
            self.quota.release(nonce)
            raise
        return nonce, expires_at

    def message_for(self, address: str, nonce: str, *, statement: str | None = "Sign in to Basement",
                    expires_in_s: int | None = 600) -> SiweMessage:
        """The message a client should sign (convenience for clients, tests and the web UI)."""
        now = self.clock()
        return SiweMessage(domain=self.domain, address=to_checksum_address(address), uri=self.origin,
                           chain_id=self.chain_id, nonce=nonce, issued_at=format_time(now), statement=statement,
                           expiration_time=format_time(now + expires_in_s) if expires_in_s else None)

    async def verify_siwe(self, message: str, signature: str) -> str:
        """Check everything about a signed SIWE message and consume its nonce; returns the address.

        The nonce is consumed first, so it is burnt by any failure after it: each nonce buys at
        most one signature check (an EIP-1271 one costs chain calls), and a message that fails must
        be rebuilt around a new nonce.
        """
        msg = SiweMessage.parse(message)
        now = self.clock()
        state = await self.nonces.consume(msg.nonce, now)
        if state is not NonceState.OK:
            raise AuthError(_NONCE_ERRORS[state])
        self.quota.release(msg.nonce)
        if msg.domain.lower() != self.domain.lower():
            raise AuthError(f"domain mismatch: expected {self.domain} got {msg.domain}")
        if msg.scheme and msg.scheme.lower() != self._scheme:
            raise AuthError(f"scheme mismatch: expected {self._scheme} got {msg.scheme}")
        uri = urlsplit(msg.uri)
        if f"{uri.scheme}://{uri.netloc}".lower() != self._origin:
            raise AuthError(f"uri mismatch: expected {self._origin} got {msg.uri}")
        if msg.chain_id != self.chain_id:
            raise AuthError(f"chain id mismatch: expected {self.chain_id} got {msg.chain_id}")
        skew = self.clock_skew_s
        if _parse_time(msg.issued_at, "issued at").timestamp() > now + skew:
            raise AuthError("message issued in the future")
        if msg.expiration_time and _parse_time(msg.expiration_time, "expiration time").timestamp() <= now - skew:
            raise AuthError("message expired")
        if msg.not_before and _parse_time(msg.not_before, "not before").timestamp() > now + skew:
            raise AuthError("message not yet valid")
        await self._check_signature(message, msg.address, signature)
        return msg.address

    async def _check_signature(self, message: str, address: str, signature: str) -> None:
        if not isinstance(signature, str) or not re.fullmatch(r"(0x)?([0-9a-fA-F]{2})+", signature):
            raise AuthError("malformed signature: expected 0x-prefixed hex")
        sig = bytes.fromhex(signature.removeprefix("0x"))
        signable = encode_defunct(text=message)
        if len(sig) == 65:
            try:
                if Account.recover_message(signable, signature=sig) == address:
                    return
            except Exception:  # noqa: BLE001 - an unrecoverable signature may still be a 1271 one
                pass
        if self.w3 is not None and await self._is_contract(address):
            digest = defunct_hash_message(text=message)
            if await self._eip1271_valid(address, digest, sig):
                return
        raise AuthError("signature does not match address")

    async def _is_contract(self, address: str) -> bool:
        assert self.w3 is not None
        try:
            return len(await self.w3.eth.get_code(address)) > 0
        except Exception as exc:  # noqa: BLE001
            log.warning("eth_getCode(%s) failed: %r", address, exc)
            raise AuthError("cannot verify contract wallet signature right now") from exc

    async def _eip1271_valid(self, address: str, digest: bytes, sig: bytes) -> bool:
        assert self.w3 is not None
        wallet = self.w3.eth.contract(address=address, abi=_IS_VALID_SIGNATURE)
        try:
            result = await wallet.functions.isValidSignature(digest, sig).call()
        except Exception as exc:  # noqa: BLE001 - a reverting wallet simply rejects the signature
            from signalling.chain.contracts import decode_revert

            if decode_revert(exc) is not None:
                return False
            log.warning("isValidSignature(%s) failed: %r", address, exc)
            raise AuthError("cannot verify contract wallet signature right now") from exc
        return bytes(result) == EIP1271_MAGIC

    async def sign_in(self, message: str, signature: str) -> SignIn:
        address = await self.verify_siwe(message, signature)
        assert self.signins is not None
        token, exp = self.signins.issue(address)
        return SignIn(address, token, exp)

    def verify_signin_token(self, token: str) -> str:
        assert self.signins is not None
        return self.signins.verify(token)

    # --- grants -------------------------------------------------------------------------------

    async def request_grant(self, room: str, *, signin_token: str | None = None,
                            siwe: tuple[str, str] | None = None, can_publish: bool = True) -> IssuedGrant:
        """Identify the caller (sign-in token, SIWE proof, or guest), run the room's gate, issue."""
        try:
            validate_room_name(room)
        except GateError as exc:
            raise AuthError(str(exc), 400) from None
        if signin_token:
            identity = self.verify_signin_token(signin_token)
        elif siwe:
            identity = await self.verify_siwe(*siwe)
        else:
            identity = ""
        cfg = await self.registry.get(room)
        gate = cfg.gate if cfg else None
        if not identity:
            if gate is not None or self.require_auth:
                raise AuthError("sign in with Ethereum first")
            identity = "guest-" + secrets.token_hex(8)
        if gate is not None:
            if self.evaluator is None:
                raise AccessDenied(CANNOT_VERIFY)
            result = await self.evaluator.evaluate(gate, identity)
            if not result.allowed:
                raise AccessDenied(result.reason)
        token = self.grants.issue(room, identity, can_publish=can_publish)
        return IssuedGrant(token, self.grants.verify(token, room))


# ---------------------------------------------------------------------------------------------
# HTTP


MAX_BODY = 16 * 1024  # a SIWE message plus signature is well under 2 KiB


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        return await read_object(request, max_bytes=MAX_BODY)
    except BodyError as exc:
        raise AuthError(exc.reason, exc.status) from None


# The request field was "sessionToken" until the token was named the sign-in token: still accepted
# (and answered by /auth/siwe) for one release, for clients written against the old docs/protocol.md.
DEPRECATED_SIGNIN_TOKEN_FIELD = "sessionToken"
_deprecated_field_logged = False


def _signin_token_field(body: dict[str, Any]) -> str | None:
    """The sign-in token of a /auth/grant body: `signInToken`, else the deprecated `sessionToken`."""
    global _deprecated_field_logged
    for name in ("signInToken", DEPRECATED_SIGNIN_TOKEN_FIELD):
        token = body.get(name)
        if token is not None and not isinstance(token, str):
            raise AuthError(f"'{name}' must be a string", 400)
        if token:
            if name == DEPRECATED_SIGNIN_TOKEN_FIELD and not _deprecated_field_logged:
                _deprecated_field_logged = True
                log.warning("a client sent the deprecated /auth/grant field 'sessionToken' "
                            "(renamed 'signInToken'; the old name goes away in the next release)")
            return token
    return None


def auth_routes(service: AuthService) -> list[web.RouteDef]:
    """`GET /auth/nonce`, `POST /auth/siwe`, `POST /auth/grant` (add with `app.add_routes(...)`).

    Every request first spends a token of its client address's bucket (`service.limiter`)."""

    def throttled(request: web.Request) -> web.Response | None:
        if service.limiter is None:
            return None
        wait = service.limiter.take(request_client(request))
        if not wait:
            return None
        per_min = round(service.limiter.rate * 60)
        retry = max(1, math.ceil(wait))
        return _error(429, f"too many sign-in requests from your address: at most {per_min} per minute; "
                           f"retry in {retry} s", {"Retry-After": str(retry)})

    async def nonce(request: web.Request) -> web.Response:
        if (refused := throttled(request)) is not None:
            return refused
        try:
            value, expires_at = await service.new_nonce(request_client(request))
        except AuthError as exc:
            return _error(exc.status, exc.reason, {"Retry-After": "60"} if exc.status in (429, 503) else None)
        return web.json_response({"nonce": value, "expiresAt": format_time(expires_at), "domain": service.domain,
                                  "uri": service.origin, "chainId": service.chain_id})

    async def siwe(request: web.Request) -> web.Response:
        if (refused := throttled(request)) is not None:
            return refused
        try:
            body = await _json_body(request)
            message, signature = body.get("message"), body.get("signature")
            if not isinstance(message, str) or not isinstance(signature, str):
                raise AuthError("body needs 'message' and 'signature' strings", 400)
            result = await service.sign_in(message, signature)
        except AuthError as exc:
            return _error(exc.status, exc.reason)
        # "sessionToken" repeats "signInToken" for old clients: deprecated, removed in the next release
        return web.json_response({"address": result.address, "signInToken": result.signin_token,
                                  "sessionToken": result.signin_token,
                                  "expiresAt": format_time(result.expires_at)})

    async def grant(request: web.Request) -> web.Response:
        if (refused := throttled(request)) is not None:
            return refused
        try:
            body = await _json_body(request)
            room = body.get("room")
            if not isinstance(room, str) or not room:
                raise AuthError("body needs a 'room' string", 400)
            token = _signin_token_field(body)
            header = request.headers.get("Authorization", "")
            if not token and header.startswith("Bearer "):
                token = header[len("Bearer "):]
            proof = None
            if isinstance(body.get("message"), str) and isinstance(body.get("signature"), str):
                proof = (body["message"], body["signature"])
            issued = await service.request_grant(room, signin_token=token or None, siwe=proof)
        except AuthError as exc:
            return _error(exc.status, exc.reason)
        g = issued.grant
        return web.json_response({"grant": issued.token, "identity": g.identity, "room": g.room,
                                  "canPublish": g.can_publish, "canSubscribe": g.can_subscribe,
                                  "expiresAt": format_time(g.expires_at)})

    return [web.get("/auth/nonce", nonce), web.post("/auth/siwe", siwe), web.post("/auth/grant", grant)]
