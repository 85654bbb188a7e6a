"""Compact signed tokens: room grants and sign-in tokens.

Both are HMAC-SHA256 over canonical JSON (`_Signer`), each kind under its own subkey of one secret,
so a token of one kind never verifies as the other.
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
from dataclasses import dataclass
from typing import Any

from signalling import safejson
from signalling.access.errors import AuthError

log = logging.getLogger(__name__)


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
# what the service hands back


@dataclass(frozen=True)
class SignIn:
    address: str
    signin_token: str
    expires_at: int


@dataclass(frozen=True)
class IssuedGrant:
    token: str
    grant: Grant
