"""SIWE (EIP-4361) verification, grants, and the /auth HTTP endpoints."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Callable

import pytest
from eth_account import Account

from signalling.access.errors import AuthError
from signalling.access.grants import GrantIssuer
from signalling.access.siwe import SiweMessage, format_time
from tests.support.signin import ORIGIN, make_service, sign, signed


def test_message_roundtrip_and_abnf_layout() -> None:
    msg = SiweMessage(domain="basement.example:8443", address=Account.create().address, uri=ORIGIN + "/",
                      chain_id=1, nonce="abcdef12345", issued_at="2026-11-22T10:00:00.000Z",
                      statement="Sign in", expiration_time="2026-11-22T10:10:00Z", not_before="2026-11-22T09:59:00Z",
                      request_id="r-1", resources=("ipfs://bafy", "https://x.example/a"))
    text = msg.to_text()
    assert SiweMessage.parse(text) == msg
    bare = dataclasses.replace(msg, statement=None, expiration_time=None, not_before=None, request_id=None,
                               resources=())
    # No statement: the ABNF keeps both empty lines around the (absent) statement.
    assert "\n\n\nURI: " in bare.to_text()
    assert SiweMessage.parse(bare.to_text()) == bare


MIXED_CASE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # EIP-55 checksummed


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda t: t.replace(" wants you to sign in", " would like you to sign in"), "line 1"),
    (lambda t: t.replace(t.split("\n")[1], t.split("\n")[1].lower()), "address is not EIP-55 checksummed"),
    (lambda t: t.replace("URI: https://", "URI: //"), "is not an absolute URI"),
    (lambda t: t.replace("Version: 1", "Version: 2"), "unsupported version '2'"),
    (lambda t: t.replace("Chain ID: 31337", "Chain ID: 0x7a69"), "chain id '0x7a69' is not a positive integer"),
    (lambda t: t.replace("Nonce: ", "Nonce: x!"), "nonce must be at least 8 alphanumeric"),
    (lambda t: t.replace("Issued At: 20", "Issued At: yesterday 20"), "issued at"),
    (lambda t: t.replace("\nNonce: ", "\nNoNCE: "), "missing 'Nonce:' line"),
    (lambda t: t + "\nHello: there", "unexpected line"),
    (lambda t: t.replace("\n", "\r\n"), "line endings must be LF"),
])
def test_parser_names_the_bad_field(mutate: Callable[[str], str], reason: str) -> None:
    # a fixed address with upper-case letters: lower-casing a random one changes nothing once in
    # ~4,000 (all its checksum letters lower case), and the test then failed on a valid message
    text = make_service().message_for(MIXED_CASE, "abcdefgh1234").to_text()
    with pytest.raises(AuthError) as info:
        SiweMessage.parse(mutate(text))
    assert str(info.value).startswith("malformed SIWE message: ")
    assert reason in str(info.value)


async def test_sign_in_then_replay_is_rejected() -> None:
    service, alice = make_service(), Account.create()
    text, sig = await signed(service, alice)
    result = await service.sign_in(text, sig)
    assert result.address == alice.address
    assert service.verify_signin_token(result.signin_token) == alice.address
    with pytest.raises(AuthError, match="^nonce already used$"):
        await service.sign_in(text, sig)


async def test_expired_message() -> None:
    service, alice = make_service(), Account.create()
    past = time.time() - 3600
    text, sig = await signed(service, alice, issued_at=format_time(past), expiration_time=format_time(past + 60))
    with pytest.raises(AuthError, match="^message expired$"):
        await service.verify_siwe(text, sig)


async def test_not_yet_valid_message() -> None:
    service, alice = make_service(), Account.create()
    text, sig = await signed(service, alice, not_before=format_time(time.time() + 3600))
    with pytest.raises(AuthError, match="^message not yet valid$"):
        await service.verify_siwe(text, sig)


async def test_domain_mismatch() -> None:
    service, alice = make_service(), Account.create()
    text, sig = await signed(service, alice, domain="evil.example")
    with pytest.raises(AuthError, match=r"^domain mismatch: expected basement\.example:8443 got evil\.example$"):
        await service.verify_siwe(text, sig)


async def test_uri_mismatch() -> None:
    service, alice = make_service(), Account.create()
    text, sig = await signed(service, alice, uri="https://evil.example/login")
    with pytest.raises(AuthError, match="^uri mismatch"):
        await service.verify_siwe(text, sig)
    text, sig = await signed(service, alice, scheme="http")
    with pytest.raises(AuthError, match="^scheme mismatch: expected https got http$"):
        await service.verify_siwe(text, sig)


async def test_chain_id_mismatch() -> None:
    service, alice = make_service(), Account.create()
    text, sig = await signed(service, alice, chain_id=1)
    with pytest.raises(AuthError, match="^chain id mismatch: expected 31337 got 1$"):
        await service.verify_siwe(text, sig)


async def test_signature_by_someone_else() -> None:
    service, alice, mallory = make_service(), Account.create(), Account.create()
    text, _ = await signed(service, alice)
    with pytest.raises(AuthError, match="^signature does not match address$"):
        await service.verify_siwe(text, sign(mallory, text))
    # the failed attempt burnt the nonce (each nonce buys one signature check): sign in afresh
    with pytest.raises(AuthError, match="^nonce already used$"):
        await service.verify_siwe(text, sign(alice, text))
    text, sig = await signed(service, alice)
    assert await service.verify_siwe(text, sig) == alice.address


async def test_unknown_nonce() -> None:
    service, alice = make_service(), Account.create()
    text = service.message_for(alice.address, "neverissued123").to_text()
    with pytest.raises(AuthError, match="^unknown nonce"):
        await service.verify_siwe(text, sign(alice, text))


def test_grant_roundtrip() -> None:
    issuer = GrantIssuer(b"secret", 300)
    g = issuer.verify(issuer.issue("lobby", "0xAb", can_publish=False), "lobby")
    assert (g.room, g.identity, g.can_publish, g.can_subscribe) == ("lobby", "0xAb", False, True)
    assert g.expires_at - g.issued_at == 300 and len(g.jti) >= 16


def test_forged_grant() -> None:
    issuer = GrantIssuer(b"secret", 300)
    token = GrantIssuer(b"another secret", 300).issue("lobby", "guest-1")
    with pytest.raises(AuthError, match="^grant signature invalid$"):
        issuer.verify(token, "lobby")
    body, mac = issuer.issue("lobby", "guest-1").split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["pub"] = True
    claims["room"] = "vip"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + "." + mac
    with pytest.raises(AuthError, match="^grant signature invalid$"):
        issuer.verify(forged, "vip")
    with pytest.raises(AuthError, match="^malformed grant$"):
        issuer.verify("not-a-grant", "lobby")


def test_grant_for_another_room() -> None:
    issuer = GrantIssuer(b"secret", 300)
    with pytest.raises(AuthError, match="^grant is for another room$"):
        issuer.verify(issuer.issue("lobby", "guest-1"), "vip")


def test_grant_expired() -> None:
    now = [1_000_000.0]
    issuer = GrantIssuer(b"secret", 60, clock=lambda: now[0])
    token = issuer.issue("lobby", "guest-1")
    now[0] += 61
    with pytest.raises(AuthError, match="^grant expired$"):
        issuer.verify(token, "lobby")


def test_signin_token_is_not_a_grant() -> None:
    service = make_service()
    token, _ = service.signins.issue(Account.create().address)
    with pytest.raises(AuthError, match="^grant signature invalid$"):
        service.grants.verify(token, "lobby")


def test_empty_secret_is_random_per_issuer() -> None:
    a, b = GrantIssuer(b"", 60), GrantIssuer("", 60)
    with pytest.raises(AuthError, match="signature invalid"):
        b.verify(a.issue("lobby", "guest-1"), "lobby")
