"""Identity and admission: the service that signs users in and issues room grants, and its HTTP routes.

`AuthService` is framework-free; `auth_routes()` wraps it in thin aiohttp handlers. The parts live
beside it: `siwe` (EIP-4361 messages, nonces), `grants` (signed grants and sign-in tokens) and
`errors` (`AuthError`, whose message says exactly what failed).
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct
from eth_utils import to_checksum_address
from web3 import AsyncWeb3

from signalling.access.errors import AccessDenied, AuthError
from signalling.access.gating import (
    CANNOT_VERIFY,
    GateError,
    GateEvaluator,
    RoomRegistry,
    describe,
    validate_room_name,
)
from signalling.access.grants import GrantIssuer, IssuedGrant, SignIn, SignInIssuer
from signalling.access.siwe import (
    MemoryNonceStore,
    NonceQuota,
    NonceState,
    NonceStore,
    SiweMessage,
    StoreFull,
    format_time,
    parse_time,
)
from signalling.access.throttle import RateLimiter, request_client
from signalling.httpjson import BodyError, read_object

log = logging.getLogger(__name__)

EIP1271_MAGIC = bytes.fromhex("1626ba7e")
_IS_VALID_SIGNATURE = [{
    "type": "function", "name": "isValidSignature", "stateMutability": "view",
    "inputs": [{"name": "hash", "type": "bytes32"}, {"name": "signature", "type": "bytes"}],
    "outputs": [{"name": "", "type": "bytes4"}],
}]


_NONCE_ERRORS = {
    NonceState.UNKNOWN: "unknown nonce (request one from /auth/nonce)",
    NonceState.USED: "nonce already used",
    NonceState.EXPIRED: "nonce expired",
}


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
        if parse_time(msg.issued_at, "issued at").timestamp() > now + skew:
            raise AuthError("message issued in the future")
        if msg.expiration_time and parse_time(msg.expiration_time, "expiration time").timestamp() <= now - skew:
            raise AuthError("message expired")
        if msg.not_before and parse_time(msg.not_before, "not before").timestamp() > now + skew:
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
    """`GET /auth/nonce`, `POST /auth/siwe`, `POST /auth/grant`, `GET /api/rooms/{room}` (add with
    `app.add_routes(...)`).

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

    async def room(request: web.Request) -> web.Response:
        """What a room asks of a participant, before any signature: open, or gated and by what."""
        if (refused := throttled(request)) is not None:
            return refused
        name = request.match_info["room"]
        try:
            validate_room_name(name)
        except GateError as e:
            return _error(400, str(e))
        cfg = await service.registry.get(name)
        gate = cfg.gate if cfg is not None else None
        return web.json_response({
            "room": name,
            "gated": gate is not None,
            # what to show a person: the whole requirement in words, and each condition on its own
            "requirement": describe(gate.root) if gate is not None else None,
            "conditions": [c.describe() for c in gate.conditions()] if gate is not None else [],
            "gate": gate.to_json() if gate is not None else None,
            "maxParticipants": cfg.max_participants if cfg is not None else None,
            # whether media must be end-to-end encrypted (docs/e2ee.md): a page without keys signs in first
            "e2ee": (cfg.e2ee if cfg is not None else None) or "optional",
        })

    return [web.get("/auth/nonce", nonce), web.post("/auth/siwe", siwe), web.post("/auth/grant", grant),
            web.get("/api/rooms/{room}", room)]
