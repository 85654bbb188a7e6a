"""Assembles and runs the all-in-one server: signalling + SFU in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sfu import transport
from sfu.metrics import media_registry
from sfu.node import SfuNode
from signalling.access.turn import TurnCredentials
from signalling.chain.faucet import DevFaucet, mount_faucet
from signalling.chain.rpc import DevChainRpc, RpcCollector, RpcStats, mount_rpc
from signalling.config import Settings
from signalling.httpjson import BodyError, read_object
from signalling.protocol.app import create_app, metrics_app
from signalling.protocol.edge import EdgeCollector
from signalling.protocol.rooms import RoomManager
from signalling.run.control import build_control_plane, mount
from signalling.run.heap import settle_after_startup
from signalling.run.http import start_app
from signalling.run.media import configure_media
from signalling.run.tls import Tls, server_tls
from signalling.run.workers import Workers, start_workers
from signalling.sessions.writer import WriterCollector

CHAIN_INFO_KEY = web.AppKey("chain_info", dict)

log = logging.getLogger("basement.server")


@dataclass
class Server:
    settings: Settings
    node: SfuNode | None  # None with media workers (`media`)
    rooms: RoomManager
    app: web.Application
    runners: list[web.AppRunner] = field(default_factory=list)
    port: int = 0
    metrics_port: int = 0
    control: Any = None
    tls: Tls | None = None
    media: Workers | None = None
    sip: Any = None  # signalling.sip.service.SipService when sip_port is set

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.settings.host}:{self.port}"

    async def stop(self) -> None:
        if self.sip is not None:
            await self.sip.stop()
        if self.media is not None:
            await self.media.stop()
        else:
            self.rooms.close()
            assert self.node is not None
            await self.node.close()
        if self.control is not None:
            await self.control.stop()
        for r in self.runners:
            await r.cleanup()
        if self.settings.ice_udp_port:
            transport.close_udp_port(self.settings.ice_udp_port)
        if self.settings.ice_tcp_port:
            transport.close_tcp_port(self.settings.ice_tcp_port)


async def start_server(settings: Settings) -> Server:
    """Start on the configured ports (0 = pick a free one; the chosen ports are on the Server)."""
    configure_media(settings)
    workers = settings.worker_count > 1
    if not workers:
        ice = transport.IceConfig.make(settings.ice_addresses, settings.public_ip,
                                       settings.rtp_port_min, settings.rtp_port_max,
                                       settings.ice_allowed_ranges, settings.ice_max_remote_candidates,
                                       settings.ice_udp_port, settings.ice_tcp_port)
        transport.open_udp_port(ice)  # single-port mode: a port in use is an error now, not at the first join
        await transport.open_tcp_port(ice)  # the same for ICE-TCP
    tls = server_tls(settings)  # before anything starts: a bad certificate is a ConfigError
    cp = await build_control_plane(settings)

    def on_event(room: str, event: dict[str, Any]) -> None:
        if cp.tracker is not None:
            cp.tracker.on_media_event(room, event)

    node: SfuNode | None = None
    media: Workers | None = None
    if workers:
        try:
            media = await start_workers(settings, cp.admit, cp.tracker, on_event)
        except BaseException:
            await cp.stop()
            raise
        rooms, app = media.replica.rooms, media.replica.app
    else:
        rooms_holder: dict[str, RoomManager] = {}

        def deliver(pid: str, msg: dict[str, Any]) -> None:
            rooms_holder["rooms"].deliver(pid, msg)

        node = SfuNode(deliver, speaker_interval=settings.speaker_interval_ms / 1000, on_event=on_event, ice=ice,
                       rtx_budget=settings.retransmit_budget, presence_batch_above=settings.presence_batch_above,
                       presence_interval=settings.presence_interval_ms / 1000)
        turn = TurnCredentials(settings.turn_urls, settings.turn_secret, settings.turn_credential_ttl_s)
        rooms = RoomManager(node, cp.admit, settings.max_participants_per_room, observer=cp.tracker,
                            resume_grace_s=settings.resume_grace_s, ice_servers=turn.ice_servers,
                            max_detached_per_address=settings.ws_max_per_address,
                            ping=(settings.client_ping_interval_s, settings.client_ping_timeout_s))
        rooms_holder["rooms"] = rooms
        app = create_app(rooms, settings)
    mount(cp, app, rooms)
    app[CHAIN_INFO_KEY] = cp.info
    app.router.add_get("/api/info", chain_info)
    rpc_stats = None
    if cp.embedded is not None:
        app.router.add_post("/api/dev-wallet/sign", dev_wallet_sign)
        if settings.embedded_rpc:
            rpc_stats = mount_dev_chain(app, cp, settings)
    server = Server(settings, node, rooms, app, control=cp, tls=tls, media=media)
    runner, server.port = await start_app(app, settings.host, settings.port, tls.context if tls else None)
    server.runners.append(runner)
    if not settings.public_url and settings.port == 0:
        # wallets compare the SIWE domain with the page's host: give them the port really bound
        cp.auth.rebase(server.url)
    if settings.sip_port:
        server.sip = await start_sip(settings, server, cp)
    if settings.metrics_port:
        registry = media.metrics_registry() if media is not None else media_registry()
        registry.register(EdgeCollector())
        if rpc_stats is not None:
            registry.register(RpcCollector(rpc_stats))
        if cp.writer is not None:
            registry.register(WriterCollector(cp.writer))
        refresh = media.metrics.refresh if media is not None else None
        mrunner, server.metrics_port = await start_app(metrics_app(registry, refresh), settings.metrics_host,
                                                       settings.metrics_port)
        server.runners.append(mrunner)
    return server


async def start_sip(settings: Settings, server: Server, cp: Any) -> Any:
    """The SIP service (docs/sip.md). Its calls join as clients of this server, over loopback: the
    certificate of a TLS server is not checked for that hop (it is this process's own socket)."""
    from signalling.sip.service import SipService  # (PyAV and numpy are loaded only when SIP is on)

    rooms = server.rooms

    async def room_open(room: str) -> bool:
        """Dial-in reaches a room someone is in, or one an admin configured; no other name."""
        return bool(rooms.in_room(room)) or await cp.registry.get(room) is not None

    sip = SipService(server.url, settings.sip_host, settings.sip_port, room_open, settings.sip_max_calls,
                     settings.sip_requests_per_s, ssl=False)
    await sip.start()
    return sip


def mount_dev_chain(app: web.Application, cp: Any, settings: Settings) -> RpcStats:
    """/rpc and the faucet for the embedded chain, so a browser wallet can add it, get ether and buy
    the demo pass. Every transaction through them may change someone's holdings, so the gate cache
    is dropped after each (the embedded chain changes through nothing else but the session writer)."""
    invalidate = cp.evaluator.invalidate if cp.evaluator is not None else None
    stats = RpcStats()
    rpc = DevChainRpc(cp.embedded, gas_cap=settings.embedded_rpc_gas_cap, rate_per_s=settings.embedded_rpc_rate,
                      cpu_share=settings.embedded_rpc_cpu_share, on_transaction=invalidate, stats=stats)
    mount_rpc(app, rpc)
    mount_faucet(app, DevFaucet(cp.embedded, rpc))
    cp.info.update(rpc="/rpc", faucet="/api/dev-wallet/faucet")
    return stats


async def chain_info(request: web.Request) -> web.Response:
    return web.json_response(request.app[CHAIN_INFO_KEY])


async def dev_wallet_sign(request: web.Request) -> web.Response:
    """The built-in dev wallet of the embedded chain: signs a SIWE message with the demo key.

    The key is public and deterministic (signalling/chain/evm.py) and only ever holds demo tokens on an
    in-process chain, so exposing it is what lets a new user try a gated room with no wallet.
    """
    from eth_account import Account
    from eth_account.messages import encode_defunct

    from signalling.chain.evm import DEMO_WALLET_KEY

    try:
        body = await read_object(request, max_bytes=16 * 1024, max_depth=4)
        message = body.get("message")
        if not isinstance(message, str) or len(message) > 4096:
            raise BodyError("message must be a string of at most 4096 characters")
    except BodyError as e:
        return web.json_response({"error": f"bad request: {e.reason}"}, status=e.status)
    acct = Account.from_key(DEMO_WALLET_KEY)
    signed = acct.sign_message(encode_defunct(text=message))
    return web.json_response({"address": acct.address, "signature": "0x" + signed.signature.hex().removeprefix("0x")})


async def serve_forever(settings: Settings) -> None:
    server = await start_server(settings)
    settle_after_startup()
    metrics = (f"metrics on http://{settings.metrics_host}:{server.metrics_port}/metrics" if settings.metrics_port
               else "metrics off")
    print(f"Basement is running: open {server.url}/  ({metrics})", flush=True)
    if server.sip is not None:
        print(f"SIP dial-in: sip:<room>@{settings.sip_host}:{server.sip.port} (UDP)", flush=True)
    if server.tls is not None and server.tls.self_signed:
        print(f"TLS: a self-signed certificate made for this run; before accepting it in the browser, check "
              f"its SHA-256 fingerprint is {server.tls.fingerprint}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
