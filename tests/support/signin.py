"""Sign in over HTTP the way a client does: nonce, an EIP-4361 message signed by the account, session token."""

from __future__ import annotations

from datetime import UTC

import aiohttp
from eth_account.messages import encode_defunct


async def sign_in(http: aiohttp.ClientSession, url: str, acct) -> str:
    async with http.get(f"{url}/auth/nonce") as r:
        n = await r.json()
    from signalling.access.auth import SiweMessage  # the message format clients build (EIP-4361)

    msg = SiweMessage(domain=n["domain"], address=acct.address, uri=n["uri"], version="1",
                      chain_id=n["chainId"], nonce=n["nonce"], issued_at=now(),
                      statement="Sign in to Basement").to_text()
    sig = acct.sign_message(encode_defunct(text=msg)).signature.hex()
    async with http.post(f"{url}/auth/siwe", json={"message": msg, "signature": "0x" + sig.removeprefix("0x")}) as r:
        body = await r.json()
        assert r.status == 200, body
        return body["sessionToken"]


def now() -> str:
    from datetime import datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

