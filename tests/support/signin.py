"""Signing in, for tests: over HTTP the way a client does (nonce, an EIP-4361 message signed by the
account, sign-in token), and an in-process AuthService with helpers to sign its messages."""

from __future__ import annotations

import dataclasses
from datetime import UTC

import aiohttp
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from signalling.access.auth import AuthService
from signalling.access.gating import MemoryRoomRegistry
from signalling.access.grants import GrantIssuer

ORIGIN = "https://basement.example:8443"
CHAIN_ID = 31337


def make_service(**kw: object) -> AuthService:
    """An AuthService for ORIGIN on CHAIN_ID with a fixed grant key; `kw` overrides any argument."""
    args: dict = {"origin": ORIGIN, "chain_id": CHAIN_ID, "grants": GrantIssuer(b"k" * 32, 300),
                  "registry": MemoryRoomRegistry()}
    args.update(kw)
    return AuthService(**args)


def sign(account: LocalAccount, text: str) -> str:
    return "0x" + account.sign_message(encode_defunct(text=text)).signature.hex()


async def signed(service: AuthService, account: LocalAccount, **changes: object) -> tuple[str, str]:
    """A fresh sign-in message from `service` for `account` (fields replaced by `changes`), and its signature."""
    nonce, _ = await service.new_nonce()
    msg = dataclasses.replace(service.message_for(account.address, nonce), **changes)
    text = msg.to_text()
    return text, sign(account, text)


async def sign_in(http: aiohttp.ClientSession, url: str, acct) -> str:
    async with http.get(f"{url}/auth/nonce") as r:
        n = await r.json()
    from signalling.access.siwe import SiweMessage  # the message format clients build (EIP-4361)

    msg = SiweMessage(domain=n["domain"], address=acct.address, uri=n["uri"], version="1",
                      chain_id=n["chainId"], nonce=n["nonce"], issued_at=now(),
                      statement="Sign in to Basement").to_text()
    sig = acct.sign_message(encode_defunct(text=msg)).signature.hex()
    async with http.post(f"{url}/auth/siwe", json={"message": msg, "signature": "0x" + sig.removeprefix("0x")}) as r:
        body = await r.json()
        assert r.status == 200, body
        return body["signInToken"]


def now() -> str:
    from datetime import datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



async def wallet_grant(http: aiohttp.ClientSession, url: str, room: str, acct) -> str:
    """A grant to join `room` as `acct`'s address: signed in over HTTP, then POST /auth/grant."""
    token = await sign_in(http, url, acct)
    async with http.post(f"{url}/auth/grant", json={"room": room, "signInToken": token}) as r:
        body = await r.json()
        assert r.status == 200, body
        return body["grant"]
