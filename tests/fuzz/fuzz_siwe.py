"""Fuzz sign-in and admission tokens: signalling/access/siwe.py, grants.py and auth.py.

Input: first byte picks the target, the rest is the value as the HTTP/WebSocket layer passes it (str):
  0  a SIWE (EIP-4361) message: `SiweMessage.parse`, then `AuthService.verify_siwe` with its nonce
     issued (so the domain/URI/chain/time checks all run) and a signature that does not match;
  1  a grant / sign-in token: `GrantIssuer.verify`, `SignInIssuer.verify`;
  2  a token body signed with the server's own key: what `verify` does with any claims that pass the
     HMAC (defence in depth: types of claims from another version or a bug in issuing).
Contract: every failure is `AuthError` (the HTTP handlers answer only AuthError; anything else is a
500 with a traceback); a parsed SIWE message reproduces, with `to_text()`, exactly the text it was
parsed from (that text is what the wallet signed).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

from _harness import Finding, instrumented, main

with instrumented():
    from signalling.access.auth import AuthService
    from signalling.access.errors import AuthError
    from signalling.access.gating import MemoryRoomRegistry
    from signalling.access.grants import GrantIssuer, SignInIssuer
    from signalling.access.siwe import SiweMessage

LOOP = asyncio.new_event_loop()
NOW = 1_760_000_000.0  # 2025-10-09T08:53:20Z; the seed messages are issued shortly before
SECRET = b"fuzz-secret-fuzz-secret-fuzz-sec"
ORIGIN = "http://127.0.0.1:8080"


def clock() -> float:
    return NOW


GRANTS = GrantIssuer(SECRET, clock=clock)
SIGNINS = SignInIssuer(SECRET, clock=clock)


def service() -> AuthService:
    return AuthService(origin=ORIGIN, chain_id=31337, grants=GRANTS, registry=MemoryRoomRegistry(),
                       signins=SIGNINS, clock=clock)


def siwe(text: str) -> None:
    try:
        msg = SiweMessage.parse(text)
    except AuthError:
        return
    if msg.to_text() != text:
        raise Finding("SiweMessage.to_text() does not reproduce the parsed text")
    svc = service()
    LOOP.run_until_complete(svc.nonces.put(msg.nonce, NOW + 300))
    try:
        LOOP.run_until_complete(svc.verify_siwe(text, "0x00"))
    except AuthError:
        return
    raise Finding("verify_siwe accepted a message with a wrong signature")


def token(text: str) -> None:
    try:
        GRANTS.verify(text, "fuzz-room")
    except AuthError:
        pass
    try:
        SIGNINS.verify(text)
    except AuthError:
        pass


def signed(body: bytes) -> None:
    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    for signer in (GRANTS._signer, SIGNINS._signer):
        token(b64(body) + "." + b64(hmac.new(signer.key, body, hashlib.sha256).digest()))


def test_one(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == 2:
        signed(rest)
        return
    text = rest.decode("utf-8", "surrogateescape")
    if mode == 0:
        siwe(text)
    else:
        token(text)


if __name__ == "__main__":
    main(test_one)
