"""Issue #11, access and sessions: each test fails on the code before the fix and passes after.

Real components throughout: `basement serve` as a subprocess, the all-in-one server fixture with
its embedded chain, real SIWE signatures. Clocks are injected where a limit depends on time.
"""

from __future__ import annotations

import io
import logging

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from signalling import config
from signalling.access.auth import AuthService
from signalling.access.errors import AuthError
from signalling.access.gating import MemoryRoomRegistry
from signalling.access.grants import GrantIssuer
from signalling.access.siwe import MemoryNonceStore, SiweMessage, StoreFull
from signalling.access.throttle import RateLimiter, client_key
from signalling.redact import redact_logs, redact_url
from signalling.sessions.summary import build_document, canonical_json, check_document, make_summary


async def test_signin_tokens_are_short_lived():
    assert config.load(env={}).signin_ttl_s <= 3600
    now = [1_700_000_000.0]
    auth = AuthService(origin="http://127.0.0.1:8080", chain_id=1, grants=GrantIssuer(b"k" * 32),
                       registry=MemoryRoomRegistry(), clock=lambda: now[0], signin_ttl_s=900)
    acct = Account.create()
    nonce, _ = await auth.new_nonce("client")
    msg = auth.message_for(acct.address, nonce).to_text()
    signed = await auth.sign_in(msg, "0x" + acct.sign_message(encode_defunct(text=msg)).signature.hex())
    assert signed.expires_at - now[0] == 900
    now[0] += 899
    assert auth.verify_signin_token(signed.signin_token) == acct.address
    now[0] += 2
    with pytest.raises(AuthError, match="^sign-in token expired$"):
        auth.verify_signin_token(signed.signin_token)


def _auth(clock=lambda: 1_700_000_000.0, **kw) -> AuthService:
    return AuthService(origin="http://127.0.0.1:8080", chain_id=1, grants=GrantIssuer(b"k" * 32),
                       registry=MemoryRoomRegistry(), clock=clock, **kw)


def _sig(acct, text: str) -> str:
    return "0x" + acct.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")


async def test_a_failed_verification_burns_the_nonce():
    auth = _auth()
    acct, other = Account.create(), Account.create()
    nonce, _ = await auth.new_nonce("c")
    text = auth.message_for(acct.address, nonce).to_text()
    with pytest.raises(AuthError, match="signature does not match"):
        await auth.verify_siwe(text, _sig(other, text))
    with pytest.raises(AuthError, match="nonce already used"):
        await auth.verify_siwe(text, _sig(acct, text))  # the right signature is too late
    # a check that fails before the signature (wrong chain) burns it as well
    nonce, _ = await auth.new_nonce("c")
    wrong = SiweMessage(domain=auth.domain, address=acct.address, uri=auth.origin, chain_id=5, nonce=nonce,
                        issued_at="2023-11-14T22:13:20Z").to_text()
    with pytest.raises(AuthError, match="chain id mismatch"):
        await auth.verify_siwe(wrong, _sig(acct, wrong))
    right = auth.message_for(acct.address, nonce).to_text()
    with pytest.raises(AuthError, match="nonce already used"):
        await auth.verify_siwe(right, _sig(acct, right))
    assert auth.quota.outstanding("c") == 0


async def test_nonces_are_capped_per_address_and_a_flood_evicts_nobody():
    now = [1_700_000_000.0]
    auth = _auth(clock=lambda: now[0], nonces=MemoryNonceStore(max_outstanding=50, clock=lambda: now[0]),
                 nonces_per_client=3)
    victim, _ = await auth.new_nonce("victim")
    for _ in range(3):
        await auth.new_nonce("flooder")
    with pytest.raises(AuthError) as e:
        await auth.new_nonce("flooder")
    assert e.value.status == 429 and "at most 3 unused nonces" in e.value.reason
    # many addresses up to the server-wide cap: refused, never evicting the victim's nonce
    for i in range(46):
        await auth.new_nonce(f"bot{i}")
    with pytest.raises(AuthError) as e:
        await auth.new_nonce("bot-late")
    assert e.value.status == 503
    acct = Account.create()
    text = auth.message_for(acct.address, victim).to_text()
    assert await auth.verify_siwe(text, _sig(acct, text)) == acct.address
    # expiry frees the flooder's slots
    now[0] += auth.nonce_ttl_s + MemoryNonceStore.LINGER_S + 1
    await auth.new_nonce("flooder")


async def test_memory_nonce_store_refuses_rather_than_evicts():
    store = MemoryNonceStore(max_outstanding=2, clock=lambda: 100.0)
    await store.put("aaaaaaaa", 500.0)
    await store.put("bbbbbbbb", 500.0)
    with pytest.raises(StoreFull):
        await store.put("cccccccc", 500.0)
    assert [(await store.peek(n, 100.0)).value for n in ("aaaaaaaa", "bbbbbbbb")] == ["ok", "ok"]
    # spent grant ids: the first spend wins, a replay is refused, expiry forgets
    assert await store.spend("grant:j1", 200.0) and not await store.spend("grant:j1", 200.0)


def test_rate_limiter_refills_and_counts_ipv6_per_64():
    t = [0.0]
    lim = RateLimiter(60, burst=2, clock=lambda: t[0])
    assert lim.take("a") == 0 and lim.take("a") == 0
    assert lim.take("a") == pytest.approx(1.0)
    assert lim.take("b") == 0  # another client is unaffected
    t[0] += 1.0
    assert lim.take("a") == 0
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1"


ADDR = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
HEAD = f"example.com wants you to sign in with your Ethereum account:\n{ADDR}\n\n"
TAIL = "URI: https://example.com\nVersion: 1\nChain ID: 1\nNonce: abcdef123456\nIssued At: 2024-01-01T00:00:00Z"


@pytest.mark.parametrize("text,reason", [
    (HEAD + "Sign in\n\n" + TAIL + "\nResources:", "'Resources:' must be followed by '- <uri>' lines"),
    (HEAD + "\n" + TAIL.replace("https://example.com", "http://["), "is not a valid URI (Invalid IPv6 URL)"),
    (HEAD + "\n" + TAIL.replace("https://example.com", "http://h:99999"), "is not a valid URI (Port out of range"),
    (HEAD + "\n" + TAIL + "\nResources:\n- http://[", "resource 'http://[' is not a valid URI"),
    (HEAD + "\n" + TAIL.replace("2024", "\u0662\u0660\u0662\u0664"), "is not an RFC 3339 date-time"),
    (HEAD + "\n" + TAIL + "\n", "unexpected line ''"),
    (HEAD + "\n" + TAIL + "\nExpiration Time: 9999-12-31T23:59:59-01:00\nExpiration Time: x", "unexpected line"),
])
def test_tricky_siwe_messages_are_refused_precisely(text, reason):
    with pytest.raises(AuthError) as e:
        SiweMessage.parse(text)
    assert reason in e.value.reason


@pytest.mark.parametrize("text", [
    HEAD + "\n" + TAIL,
    HEAD + "Sign in\n\n" + TAIL + "\nRequest ID: ",
    HEAD + "\u2028 odd statement \u00a0\n\n" + TAIL + "\nResources:\n- ipfs://x\n- https://a/b?c=d#e",
    "https://" + HEAD + "\n" + TAIL + "\nExpiration Time: 2024-01-02t00:00:00z\nNot Before: 2024-01-01T00:00:00+01:00",
    HEAD + "\n" + TAIL.replace("https://example.com", "http://[::1]:8080/p"),
])
def test_siwe_parse_then_to_text_is_exact(text):
    assert SiweMessage.parse(text).to_text() == text


def test_check_document_reports_mixed_type_guest_lists():
    good = build_document(session_id=b"\x01" * 32, room="r", started_at=1, ended_at=2,
                          events=[{"atMs": 1000, "type": "joined", "identity": "guest-a"}], tracks=[], media={})
    summary = make_summary(good)
    for guests, reason in ((["guest-a", 1], "guests[1] must be a string, got int"),
                           ([["x"], "y"], "guests[0] must be a string, got list"),
                           ({"a": 1}, "guests must be a list")):
        doc = canonical_json({**good, "guests": guests})
        problems = check_document(doc, {**summary.fields(), "cid": summary.cid})
        assert f"document is malformed: {reason}" in problems
    problems = check_document(b"[" * 100_000, summary.fields())
    assert "document is malformed: not JSON: nested deeper than 32 levels" in problems


def test_rpc_urls_and_keys_are_redacted_in_logs():
    url = "https://user:hunter22@rpc.example.org/v3/0123456789abcdef0123456789abcdef?apikey=SECRETVALUE"
    assert redact_url(url) == "https://***@rpc.example.org/v3/***?apikey=***"
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    logger = logging.getLogger("hardening.redact")
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        redact_logs(urls=[url], secrets=["0x" + "ab" * 32], logger=logger)
        logger.warning("gate check failed: %r", ConnectionError(f"500 Server Error for url: {url}"))
        logger.warning("path only: /v3/0123456789abcdef0123456789abcdef and key %s", "ab" * 32)
        try:
            raise RuntimeError(f"cannot reach {url}")
        except RuntimeError:
            logger.exception("writer failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    for secret in ("hunter22", "0123456789abcdef0123456789abcdef", "SECRETVALUE", "ab" * 32):
        assert secret not in out
    assert "https://***@rpc.example.org/v3/***?apikey=***" in out and "Traceback" in out


async def test_grant_ids_are_spent_once_across_replicas():
    from signalling.cluster.shared import StoreNonceStore
    from signalling.cluster.store import MemoryStore

    store = MemoryStore()
    replica_a, replica_b = StoreNonceStore(store), StoreNonceStore(store)  # two replicas, one shared store
    assert await replica_a.spend("grant:abc", 10**10)
    assert not await replica_b.spend("grant:abc", 10**10)
    assert await replica_b.spend("grant:def", 10**10)
