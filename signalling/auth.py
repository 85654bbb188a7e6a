"""Identity and admission: Sign-In with Ethereum (EIP-4361), session tokens and room grants.

`AuthService` is framework-free; `auth_routes()` wraps it in thin aiohttp handlers. Every failure
is an `AuthError` whose message says exactly what failed, so clients (and tests) can tell a
replayed nonce from an expired message from a wrong domain.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
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

from signalling.gating import CANNOT_VERIFY, GateEvaluator, RoomRegistry

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
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.I)
_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:\S+")
_DOMAIN = re.compile(r"[A-Za-z0-9.\-\[\]:@%_~!$&'()*+,;=]+")
_OPTIONAL = ("Expiration Time", "Not Before", "Request ID", "Resources")


def _parse_time(value: str, name: str) -> datetime:
    if not _DATETIME.fullmatch(value):
        raise AuthError(f"malformed SIWE message: {name} {value!r} is not an RFC 3339 date-time")
    try:
        dt = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise AuthError(f"malformed SIWE message: {name} {value!r} is not a valid date-time") from None
    return dt


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
                while i < len(lines):
                    if not lines[i].startswith("- ") or not _URI.fullmatch(lines[i][2:]):
                        raise AuthError(f"malformed SIWE message: resource {lines[i][:40]!r} is not '- <uri>'")
                    resources.append(lines[i][2:])
                    i += 1
                break
            if not line.startswith(f"{key}: "):
                raise AuthError(f"malformed SIWE message: '{key}:' must be followed by a space and a value")
            fields[key] = line[len(key) + 2:]
            i += 1
        uri = fields["URI"]
        if not _URI.fullmatch(uri):
            raise AuthError(f"malformed SIWE message: URI {uri!r} is not an absolute URI")
        if fields["Version"] != "1":
            raise AuthError(f"malformed SIWE message: unsupported version {fields['Version']!r}")
        if not re.fullmatch(r"[1-9][0-9]{0,19}", fields["Chain ID"]):
            raise AuthError(f"malformed SIWE message: chain id {fields['Chain ID']!r} is not a positive integer")
        if not _NONCE.fullmatch(fields["Nonce"]):
            raise AuthError("malformed SIWE message: nonce must be at least 8 alphanumeric characters")
        for k in ("Issued At", "Expiration Time", "Not Before"):
            if k in fields:
                _parse_time(fields[k], k.lower())
        return cls(domain=domain, address=address, uri=uri, chain_id=int(fields["Chain ID"]),
                   nonce=fields["Nonce"], issued_at=fields["Issued At"], statement=statement,
                   version=fields["Version"], expiration_time=fields.get("Expiration Time"),
                   not_before=fields.get("Not Before"), request_id=fields.get("Request ID"),
                   resources=tuple(resources), scheme=m.group("scheme"))


# ---------------------------------------------------------------------------------------------
# nonces


class NonceState(Enum):
    OK = "ok"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


class NonceStore(Protocol):
    """Server-issued single-use nonces. `consume` must be atomic (one winner per nonce); a Redis
    version can use SET NX for `put` and a Lua script or GETDEL+marker for `consume`."""

    async def put(self, nonce: str, expires_at: float) -> None: ...
    async def peek(self, nonce: str, now: float) -> NonceState: ...
    async def consume(self, nonce: str, now: float) -> NonceState: ...


class MemoryNonceStore:
    def __init__(self, max_outstanding: int = 100_000) -> None:
        self._nonces: dict[str, tuple[float, bool]] = {}  # nonce -> (expires_at, used)
        self._max = max_outstanding

    async def put(self, nonce: str, expires_at: float) -> None:
        if len(self._nonces) >= self._max:
            self._evict(time.time())
        self._nonces[nonce] = (expires_at, False)

    def _evict(self, now: float) -> None:
        for k in [k for k, (exp, _) in self._nonces.items() if exp <= now]:
            del self._nonces[k]
        # Still full (nonce flood): drop the oldest half rather than grow without bound.
        while len(self._nonces) >= self._max:
            for k in list(self._nonces)[: self._max // 2 or 1]:
                del self._nonces[k]

    async def peek(self, nonce: str, now: float) -> NonceState:
        entry = self._nonces.get(nonce)
        if entry is None:
            return NonceState.UNKNOWN
        if entry[1]:
            return NonceState.USED
        return NonceState.EXPIRED if entry[0] <= now else NonceState.OK

    async def consume(self, nonce: str, now: float) -> NonceState:
        state = await self.peek(nonce, now)
        if state is NonceState.OK:
            # Kept (marked used) until expiry so a replay is reported as a replay, not "unknown".
            self._nonces[nonce] = (self._nonces[nonce][0], True)
        return state


_NONCE_ERRORS = {
    NonceState.UNKNOWN: "unknown nonce (request one from /auth/nonce)",
    NonceState.USED: "nonce already used",
    NonceState.EXPIRED: "nonce expired",
}


# ---------------------------------------------------------------------------------------------
# compact signed tokens (grants, sessions)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Signer:
    """HMAC-SHA256 over canonical JSON: `base64url(json).base64url(mac)`. Each token type gets a
    subkey derived from the secret, so a session token can never verify as a grant."""

    def __init__(self, secret: bytes, purpose: str) -> None:
        self.key = hmac.new(secret, b"basement/" + purpose.encode(), hashlib.sha256).digest()
        self.purpose = purpose

    def sign(self, claims: dict[str, Any]) -> str:
        body = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        return _b64(body) + "." + _b64(hmac.new(self.key, body, hashlib.sha256).digest())

    def unsign(self, token: str) -> dict[str, Any]:
        label = self.purpose
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
            claims = json.loads(body)
        except ValueError:
            raise AuthError(f"malformed {label}") from None
        if not isinstance(claims, dict) or claims.get("typ") != label:
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


class SessionIssuer:
    """Signed proof of a completed SIWE sign-in, so a client signs once and asks for many grants."""

    def __init__(self, secret: bytes | str, ttl_s: int = 86_400, *, clock: Callable[[], float] = time.time) -> None:
        self._signer = _Signer(_secret(secret), "session")
        self.ttl_s = ttl_s
        self._clock = clock

    def issue(self, address: str) -> tuple[str, int]:
        now = int(self._clock())
        exp = now + self.ttl_s
        return self._signer.sign({"typ": "session", "addr": address, "iat": now, "exp": exp}), exp

    def verify(self, token: str) -> str:
        c = self._signer.unsign(token)
        addr, exp = c.get("addr"), c.get("exp")
        if not isinstance(addr, str) or not isinstance(exp, int):
            raise AuthError("malformed session")
        if exp <= self._clock():
            raise AuthError("session expired")
        return addr


# ---------------------------------------------------------------------------------------------
# the service


@dataclass(frozen=True)
class SignIn:
    address: str
    session_token: str
    expires_at: int


@dataclass(frozen=True)
class IssuedGrant:
    token: str
    grant: Grant


@dataclass
class AuthService:
    """SIWE verification, session tokens and gated grant issuance.

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
    sessions: SessionIssuer | None = None
    nonces: NonceStore = field(default_factory=MemoryNonceStore)
    nonce_ttl_s: int = 300
    clock_skew_s: int = 60
    require_auth: bool = False
    clock: Callable[[], float] = time.time
    domain: str = field(init=False)

    def __post_init__(self) -> None:
        self.rebase(self.origin)
        if self.sessions is None:
            # Same secret, different derived subkey: sessions and grants rotate together but a
            # token of one kind never verifies as the other.
            self.sessions = SessionIssuer(self.grants.secret, clock=self.clock)

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

    async def new_nonce(self) -> tuple[str, float]:
        nonce = secrets.token_hex(16)
        expires_at = self.clock() + self.nonce_ttl_s
        await self.nonces.put(nonce, expires_at)
        return nonce, expires_at

    def message_for(self, address: str, nonce: str, *, statement: str | None = "Sign in to Basement",
                    expires_in_s: int | None = 600) -> SiweMessage:
        """The message a client should sign (convenience for clients, tests and the web UI)."""
        now = self.clock()
        return SiweMessage(domain=self.domain, address=to_checksum_address(address), uri=self.origin,
                           chain_id=self.chain_id, nonce=nonce, issued_at=format_time(now), statement=statement,
                           expiration_time=format_time(now + expires_in_s) if expires_in_s else None)

    async def verify_siwe(self, message: str, signature: str) -> str:
        """Check everything about a signed SIWE message and consume its nonce; returns the address."""
        msg = SiweMessage.parse(message)
        if msg.domain.lower() != self.domain.lower():
            raise AuthError(f"domain mismatch: expected {self.domain} got {msg.domain}")
        if msg.scheme and msg.scheme.lower() != self._scheme:
            raise AuthError(f"scheme mismatch: expected {self._scheme} got {msg.scheme}")
        uri = urlsplit(msg.uri)
        if f"{uri.scheme}://{uri.netloc}".lower() != self._origin:
            raise AuthError(f"uri mismatch: expected {self._origin} got {msg.uri}")
        if msg.chain_id != self.chain_id:
            raise AuthError(f"chain id mismatch: expected {self.chain_id} got {msg.chain_id}")
        now = self.clock()
        skew = self.clock_skew_s
        if _parse_time(msg.issued_at, "issued at").timestamp() > now + skew:
            raise AuthError("message issued in the future")
        if msg.expiration_time and _parse_time(msg.expiration_time, "expiration time").timestamp() <= now - skew:
            raise AuthError("message expired")
        if msg.not_before and _parse_time(msg.not_before, "not before").timestamp() > now + skew:
            raise AuthError("message not yet valid")
        # Cheap nonce check before any RPC (EIP-1271); the atomic consume comes last so a
        # message that fails later can be fixed and re-sent with the same nonce.
        state = await self.nonces.peek(msg.nonce, now)
        if state is not NonceState.OK:
            raise AuthError(_NONCE_ERRORS[state])
        await self._check_signature(message, msg.address, signature)
        state = await self.nonces.consume(msg.nonce, now)
        if state is not NonceState.OK:
            raise AuthError(_NONCE_ERRORS[state])
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
            from signalling.contracts import decode_revert

            if decode_revert(exc) is not None:
                return False
            log.warning("isValidSignature(%s) failed: %r", address, exc)
            raise AuthError("cannot verify contract wallet signature right now") from exc
        return bytes(result) == EIP1271_MAGIC

    async def sign_in(self, message: str, signature: str) -> SignIn:
        address = await self.verify_siwe(message, signature)
        assert self.sessions is not None
        token, exp = self.sessions.issue(address)
        return SignIn(address, token, exp)

    def verify_session(self, token: str) -> str:
        assert self.sessions is not None
        return self.sessions.verify(token)

    # --- grants -------------------------------------------------------------------------------

    async def request_grant(self, room: str, *, session_token: str | None = None,
                            siwe: tuple[str, str] | None = None, can_publish: bool = True) -> IssuedGrant:
        """Identify the caller (session token, SIWE proof, or guest), run the room's gate, issue."""
        if session_token:
            identity = self.verify_session(session_token)
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


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise AuthError(f"malformed JSON body: {exc}", 400) from None
    if not isinstance(body, dict):
        raise AuthError("malformed JSON body: expected an object", 400)
    return body


def auth_routes(service: AuthService) -> list[web.RouteDef]:
    """`GET /auth/nonce`, `POST /auth/siwe`, `POST /auth/grant` (add with `app.add_routes(...)`)."""

    async def nonce(_: web.Request) -> web.Response:
        value, expires_at = await service.new_nonce()
        return web.json_response({"nonce": value, "expiresAt": format_time(expires_at), "domain": service.domain,
                                  "uri": service.origin, "chainId": service.chain_id})

    async def siwe(request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            message, signature = body.get("message"), body.get("signature")
            if not isinstance(message, str) or not isinstance(signature, str):
                raise AuthError("body needs 'message' and 'signature' strings", 400)
            result = await service.sign_in(message, signature)
        except AuthError as exc:
            return _error(exc.status, exc.reason)
        return web.json_response({"address": result.address, "sessionToken": result.session_token,
                                  "expiresAt": format_time(result.expires_at)})

    async def grant(request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            room = body.get("room")
            if not isinstance(room, str) or not room:
                raise AuthError("body needs a 'room' string", 400)
            token = body.get("sessionToken")
            header = request.headers.get("Authorization", "")
            if not token and header.startswith("Bearer "):
                token = header[len("Bearer "):]
            proof = None
            if isinstance(body.get("message"), str) and isinstance(body.get("signature"), str):
                proof = (body["message"], body["signature"])
            issued = await service.request_grant(room, session_token=token or None, siwe=proof)
        except AuthError as exc:
            return _error(exc.status, exc.reason)
        g = issued.grant
        return web.json_response({"grant": issued.token, "identity": g.identity, "room": g.room,
                                  "canPublish": g.can_publish, "canSubscribe": g.can_subscribe,
                                  "expiresAt": format_time(g.expires_at)})

    return [web.get("/auth/nonce", nonce), web.post("/auth/siwe", siwe), web.post("/auth/grant", grant)]
