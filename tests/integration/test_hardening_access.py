"""Issue #11, access and sessions: each test fails on the code before the fix and passes after.

Real components throughout: `basement serve` as a subprocess, the all-in-one server fixture with
its embedded chain, real SIWE signatures. Clocks are injected where a limit depends on time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from eth_account import Account
from eth_account.messages import encode_defunct

from signalling import config
from signalling.access.admin import admin_app
from signalling.access.gating import MemoryRoomRegistry
from signalling.access.siwe import SiweMessage
from signalling.chain.evm import DEMO_WALLET_KEY
from signalling.ports import free_port
from signalling.protocol.client import Client, ServerError
from tests.support import procs
from tests.support.servers import native_only

# access and sessions are signalling, whichever path forwards the media: one run
pytestmark = native_only

ADMIN_KEY = "hardening-admin-key-" + "k" * 16
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
DEEP = b"[" * 200_000


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _sign_in(http: aiohttp.ClientSession, url: str, acct) -> str:
    async with http.get(f"{url}/auth/nonce") as r:
        n = await r.json()
    msg = SiweMessage(domain=n["domain"], address=acct.address, uri=n["uri"], chain_id=n["chainId"],
                      nonce=n["nonce"], issued_at=_now(), statement="Sign in to Basement").to_text()
    sig = "0x" + acct.sign_message(encode_defunct(text=msg)).signature.hex().removeprefix("0x")
    async with http.post(f"{url}/auth/siwe", json={"message": msg, "signature": sig}) as r:
        body = await r.json()
        assert r.status == 200, body
        return body["signInToken"]


async def _grant(http: aiohttp.ClientSession, url: str, room: str, token: str | None = None) -> str:
    body = {"room": room, **({"signInToken": token} if token else {})}
    async with http.post(f"{url}/auth/grant", json=body) as r:
        reply = await r.json()
        assert r.status == 200, reply
        return reply["grant"]


def _pass_gate(srv) -> dict:
    d = srv.control.embedded.deployment
    return {"standard": "erc721", "chainId": srv.control.chain_id, "contract": d.membership_pass, "label": "pass"}


def _post(url: str, data: bytes, headers: dict[str, str] | None = None, method: str = "POST") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_serve_survives_deeply_nested_json_bodies(tmp_path):
    port = free_port()
    env = {**os.environ, "BASEMENT_ADMIN_KEY": ADMIN_KEY, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "signalling.cli", "serve", "--port", str(port),
                             "--metrics-port", "0", "--data-dir", str(tmp_path / "data")],
                            cwd=Path(__file__).resolve().parents[2], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        output = []
        for line in proc.stdout:  # blocks until the server says it is up (or exits)
            output.append(line)
            if "Basement is running" in line:
                break
        assert proc.poll() is None, "".join(output)
        base = f"http://127.0.0.1:{port}"
        for path, headers, method, limit in (("/auth/grant", None, "POST", 16384),
                                             ("/auth/siwe", None, "POST", 16384),
                                             ("/admin/rooms/deep", ADMIN, "PUT", 65536)):
            # the body of the report: refused by size before any parsing
            status, body = _post(base + path, DEEP, headers, method)
            assert (status, body) == (413, {"error": f"body larger than {limit} bytes"}), path
            # as deep as fits under the size limit: refused by depth, before the decoder recurses
            status, body = _post(base + path, b"[" * (limit - 1), headers, method)
            assert (status, body) == (400, {"error": "malformed JSON body: nested deeper than 32 levels"}), path
            assert proc.poll() is None, f"server died on {path}"
            # and it still answers the next request
            with urllib.request.urlopen(base + "/healthz", timeout=10) as r:
                assert json.loads(r.read()) == {"ok": True}
        status, body = _post(base + "/auth/grant", json.dumps({"room": "after"}).encode())
        assert status == 200 and body["room"] == "after"
    finally:
        procs.stop(proc, 30)


async def test_grant_issued_before_a_gate_does_not_join_after_it(make_server):
    srv = await make_server(admin_key=ADMIN_KEY, gate_recheck_s=3600)
    url = srv.url
    poor = Account.create()  # a wallet without the pass
    async with aiohttp.ClientSession() as http:
        guest_grant = await _grant(http, url, "lounge")  # open room: a guest grant
        wallet_grant = await _grant(http, url, "lounge", await _sign_in(http, url, poor))
        async with http.put(f"{url}/admin/rooms/lounge", json={"gate": _pass_gate(srv)}, headers=ADMIN) as r:
            assert r.status == 201, await r.text()
    c = Client(url)
    await c.connect()
    try:
        with pytest.raises(ServerError) as e:
            await c.join("lounge", "guest", grant=guest_grant)
        assert e.value.code == "unauthorized" and "token-gated now" in e.value.message
        with pytest.raises(ServerError) as e:
            await c.join("lounge", "poor", grant=wallet_grant)
        assert e.value.code == "unauthorized" and "unmet condition" in e.value.message and "pass" in e.value.message
        assert srv.rooms.in_room("lounge") == []
    finally:
        await c.close()


async def test_recheck_removes_guests_once_a_room_is_gated(make_server):
    srv = await make_server(admin_key=ADMIN_KEY, gate_recheck_s=3600)
    guest, holder = Client(srv.url), Client(srv.url)
    await guest.connect()
    await holder.connect()
    try:
        await guest.join("studio", "guest")
        async with aiohttp.ClientSession() as http:
            token = await _sign_in(http, srv.url, Account.from_key(DEMO_WALLET_KEY))  # holds the demo pass
            await holder.join("studio", "holder", grant=await _grant(http, srv.url, "studio", token))
            async with http.put(f"{srv.url}/admin/rooms/studio", json={"gate": _pass_gate(srv)},
                                headers=ADMIN) as r:
                assert r.status == 201
        revoked = await srv.control.rechecker.check_once()
        removed = await guest.wait_message("removed")
        assert "token-gated now" in removed["reason"]
        assert [identity for _, identity, _ in revoked] in ([guest.participant["identity"]], [])  # [] if PUT's ran
        assert [p.identity for p in srv.rooms.in_room("studio")] == [Account.from_key(DEMO_WALLET_KEY).address]
    finally:
        await guest.close()
        await holder.close()


async def test_a_grant_admits_one_join(server):
    async with aiohttp.ClientSession() as http:
        grant = await _grant(http, server.url, "once")
    a, b = Client(server.url), Client(server.url)
    await a.connect()
    await b.connect()
    try:
        await a.join("once", "first", grant=grant)
        with pytest.raises(ServerError) as e:
            await b.join("once", "replay", grant=grant)
        assert e.value.code == "unauthorized" and "grant already used" in e.value.message
        assert len(server.rooms.in_room("once")) == 1
    finally:
        await a.close()
        await b.close()


async def test_one_identity_holds_one_seat_the_newest_join_wins(server):
    wallet = Account.create()
    clients = [Client(server.url) for _ in range(3)]
    try:
        async with aiohttp.ClientSession() as http:
            token = await _sign_in(http, server.url, wallet)
            for i, c in enumerate(clients):
                await c.connect()
                await c.join("seats", f"tab {i}", grant=await _grant(http, server.url, "seats", token))
        for c in clients[:2]:
            removed = await c.wait_message("removed")
            assert "replaced" in removed["reason"]
        seated = server.rooms.in_room("seats")
        assert [p.name for p in seated] == ["tab 2"] and seated[0].identity == wallet.address
    finally:
        for c in clients:
            await c.close()


def _sig(acct, text: str) -> str:
    return "0x" + acct.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")


async def test_auth_endpoints_are_rate_limited_per_address(make_server):
    srv = await make_server(auth_rate_per_min=3)
    frozen = 5_000.0
    srv.control.auth.limiter.clock = lambda: frozen  # no refill during the test
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(f"{srv.url}/auth/nonce") as r:
                assert r.status == 200
        async with http.post(f"{srv.url}/auth/grant", json={"room": "x"}) as r:
            body = await r.json()
            assert r.status == 429
            assert r.headers["Retry-After"] == "20"
            assert body["error"] == "too many sign-in requests from your address: at most 3 per minute; retry in 20 s"


ADDR = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


async def test_siwe_uri_that_does_not_split_is_401_not_500(server):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/auth/nonce") as r:
            n = await r.json()
        acct = Account.create()
        msg = SiweMessage(domain=n["domain"], address=acct.address, uri="http://[", chain_id=n["chainId"],
                          nonce=n["nonce"], issued_at=_now()).to_text()
        async with http.post(f"{server.url}/auth/siwe", json={"message": msg, "signature": _sig(acct, msg)}) as r:
            assert r.status == 401
            assert (await r.json())["error"] == ("malformed SIWE message: URI 'http://[' is not a valid URI "
                                                 "(Invalid IPv6 URL)")


def _gate(**changes) -> dict:
    base = {"standard": "erc1155", "chainId": 1, "contract": ADDR, "tokenId": "3"}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


@pytest.mark.parametrize("body,reason", [
    ({"gate": {"standard": []}}, "gate.standard: unknown standard []"),
    ({"gate": {"standard": {}}}, "gate.standard: unknown standard {}"),
    ({"gate": _gate(chainId=2**64)}, "gate.chainId: 18446744073709551616 is above the largest chain id"),
    ({"gate": _gate(chainId="1.5")}, "gate.chainId: '1.5' is not a non-negative integer"),
    ({"gate": _gate(contract=ADDR.lower())}, "gate.contract: bad checksum"),
    ({"gate": _gate(contract="0x12")}, "gate.contract: '0x12' is not an address"),
    ({"gate": _gate(tokenId=-1)}, "gate.tokenId: -1 is out of range"),
    ({"gate": _gate(tokenId=1.5)}, "gate.tokenId: expected an integer or a decimal string, got 1.5"),
    ({"gate": _gate(tokenId=str(2**256))}, "gate.tokenId: '1157"),
    ({"gate": _gate(minAmount=True)}, "gate.minAmount: expected an integer or a decimal string, got True"),
    ({"gate": _gate(label="\u202eevil")}, "gate.label: '\\u202eevil' contains control or invisible characters"),
    ({"gate": {"any": [_gate()] * 17}}, "gate.any: 17 entries, at most 16 allowed"),
    ({"gate": {"all": {}}}, "gate.all: must be a non-empty list of conditions"),
    ({"gate": [1]}, "gate: expected an object, got list"),
    ({"max_participants": "5"}, "max_participants: must be an integer between 1 and 10000"),
    ([], "malformed JSON body: expected an object, got list"),
])
async def test_admin_refuses_bad_room_configs_with_precise_400s(body, reason):
    registry = MemoryRoomRegistry()
    app = web.Application()
    app.add_subapp("/admin", admin_app(registry, ADMIN_KEY, chain_ids=[1]))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        r = await client.put("/admin/rooms/r1", json=body, headers=ADMIN)
        reply = await r.json()
        assert r.status == 400, reply
        assert reason in reply["error"]
        r = await client.put("/admin/rooms/r1", data=b"[" * 60_000, headers=ADMIN)
        assert (r.status, await r.json()) == (400, {"error": "malformed JSON body: nested deeper than 32 levels"})
    assert await registry.list() == []  # nothing was stored


async def test_only_gated_rooms_are_recorded_by_default(server):
    tracker = server.control.tracker
    recorded: list = []
    tracker.on_closed = recorded.append
    demo = Account.from_key(DEMO_WALLET_KEY)
    a, b = Client(server.url), Client(server.url)
    await a.connect()
    await b.connect()
    try:
        await a.join("anon-room", "guest")
        async with aiohttp.ClientSession() as http:
            token = await _sign_in(http, server.url, demo)
            await b.join("demo-gated", "holder", grant=await _grant(http, server.url, "demo-gated", token))
    finally:
        await a.close()
        await b.close()
    await tracker.close_all()
    assert tracker.skipped == 1
    assert [s.document and json.loads(s.document)["room"] for s in recorded] == ["demo-gated"]


async def test_recording_policy_settings(make_server):
    srv = await make_server(record_sessions="all", record_min_participants=2)
    tracker = srv.control.tracker
    recorded: list = []
    tracker.on_closed = recorded.append
    solo, x, y = Client(srv.url), Client(srv.url), Client(srv.url)
    for c in (solo, x, y):
        await c.connect()
    try:
        await solo.join("alone", "solo")
        await x.join("pair", "x")
        await y.join("pair", "y")
    finally:
        for c in (solo, x, y):
            await c.close()
    await tracker.close_all()
    assert [json.loads(s.document)["room"] for s in recorded] == ["pair"] and tracker.skipped == 1
    with pytest.raises(config.ConfigError, match="record_sessions"):
        config.load(env={"BASEMENT_RECORD_SESSIONS": "some"})
