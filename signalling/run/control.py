"""The control plane, assembled from Settings: chain, sign-in, grants, gates, sessions, chain writer.

`basement serve` uses it with the embedded chain by default; `basement signal` uses the same
object against an RPC chain. It never touches media: it decides who may join and records what
happened.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from web3 import AsyncWeb3

from signalling.access.admin import admin_app
from signalling.access.auth import AuthService, auth_routes
from signalling.access.errors import AuthError
from signalling.access.gating import Gate, GateEvaluator, MemoryRoomRegistry, Rechecker, RoomConfig
from signalling.access.grants import GrantIssuer
from signalling.access.siwe import MemoryNonceStore, StoreFull
from signalling.access.throttle import RateLimiter
from signalling.config import Settings
from signalling.protocol.messages import ProtocolError
from signalling.protocol.rooms import Admission, admit_everyone
from signalling.redact import redact_logs
from signalling.sessions import writer as chainwriter
from signalling.sessions.outbox import outbox_for_settings
from signalling.sessions.tracker import RecordingPolicy, SessionTracker

log = logging.getLogger("basement.control")

DEMO_GATED_ROOM = "demo-gated"


@dataclass
class ControlPlane:
    settings: Settings
    w3: AsyncWeb3
    chain_id: int
    auth: AuthService
    registry: Any
    evaluator: GateEvaluator | None
    tracker: SessionTracker | None = None
    writer: Any = None
    rechecker: Rechecker | None = None
    embedded: Any = None  # EmbeddedChain when chain=embedded
    info: dict[str, Any] = field(default_factory=dict)  # public chain facts for the web client
    outbox: Any = None
    _rechecks: set[asyncio.Future] = field(default_factory=set)

    async def admit(self, room: str, grant: str | None) -> Admission:
        """Join-time check: a valid, unused grant for this room that satisfies the room's gate as it
        is NOW (it may have been set after the grant was issued), or an open room (guest)."""
        config = await self.registry.get(room)
        max_p = config.max_participants if config and config.max_participants else 0
        p2p = config.p2p if config is not None and config.p2p is not None else self.settings.p2p
        e2ee = config.e2ee if config is not None and config.e2ee is not None else "optional"
        seats = self.settings.max_seats_per_identity
        if grant:
            try:
                g = self.auth.grants.verify(grant, room)
            except AuthError as e:
                raise ProtocolError("unauthorized", f"grant refused: {e.reason}") from None
            if config is not None and config.gate is not None:
                await self._check_gate(room, config.gate, g.identity)
            try:
                first = await self.auth.nonces.spend(f"grant:{g.jti}", g.expires_at)
            except StoreFull:
                raise ProtocolError("unauthorized", "grant refused: too many joins in flight on this server; "
                                                    "try again shortly") from None
            if not first:
                raise ProtocolError("unauthorized", "grant refused: grant already used (a grant admits one join; "
                                                    "ask POST /auth/grant for another)")
            return Admission(g.identity, g.can_publish, g.can_subscribe, max_participants=max_p, max_seats=seats,
                             p2p=p2p, e2ee=e2ee)
        if (config is not None and config.gate is not None) or self.settings.require_auth:
            why = "is token-gated" if config is not None and config.gate is not None else "requires sign-in"
            raise ProtocolError(
                "unauthorized",
                f"room {room!r} {why}: sign in with your wallet (GET /auth/nonce, POST /auth/siwe) "
                "and send the grant from POST /auth/grant in 'join'",
            )
        guest = await admit_everyone(room, None)
        guest.max_participants = max_p
        guest.p2p = p2p
        guest.e2ee = e2ee
        return guest

    async def _check_gate(self, room: str, gate: Gate, identity: str) -> None:
        if not identity.startswith("0x"):
            raise ProtocolError("unauthorized", f"grant refused: room {room!r} is token-gated now and this is a "
                                                "guest grant: sign in with your wallet and ask for a new grant")
        if self.evaluator is None:
            raise ProtocolError("unauthorized", "grant refused: cannot verify holdings right now")
        # the cache is warm from issuing the grant, so this is usually no chain call at all
        result = await self.evaluator.evaluate(gate, identity)
        if not result.allowed:
            raise ProtocolError("unauthorized", f"grant refused: {result.reason}")

    async def recheck_soon(self, room: str) -> None:
        """A room's config changed: re-check who is inside now rather than at the next round (in the
        background, so the admin request does not wait on the chain)."""
        if self.rechecker is not None:
            task = asyncio.ensure_future(self.rechecker.check_once())
            self._rechecks.add(task)
            task.add_done_callback(self._rechecks.discard)

    async def stop(self) -> None:
        for task in list(self._rechecks):
            task.cancel()
        if self.rechecker is not None:
            await self.rechecker.stop()
        if self.tracker is not None:
            await self.tracker.close_all()
        if self.writer is not None:
            # give the writer a moment to put what the sessions just closed on chain
            await asyncio.sleep(0)
            await self.writer.stop()
        if self.outbox is not None:
            await self.outbox.close()


def session_tracker(settings: Settings, outbox: Any, registry: Any) -> SessionTracker:
    """The SessionTracker the recording settings ask for; `registry` tells which rooms are gated."""
    policy = RecordingPolicy(settings.record_sessions, settings.record_min_duration_s,
                             settings.record_min_participants)

    async def gated(room: str) -> bool:
        cfg = await registry.get(room)
        return cfg is not None and cfg.gate is not None

    return SessionTracker(outbox, grace_s=settings.session_grace_s, policy=policy, is_gated=gated)


async def build_control_plane(settings: Settings, sessions: bool = True, *, registry: Any = None,
                              nonces: Any = None, track: bool = True) -> ControlPlane:
    """`registry` and `nonces` default to process memory; cluster replicas pass shared ones.

    `sessions`: record finished sessions on-chain (the outbox and the chain writer); `track`: also
    run the SessionTracker here. Cluster replicas run only the writer: the media nodes, which see
    every participant of their rooms, track the sessions and put them in the shared outbox."""
    registry = registry if registry is not None else MemoryRoomRegistry()
    # before anything can log an RPC URL, a key or a Redis password
    redact_logs(urls=[settings.rpc_url, settings.redis_url],
                secrets=[settings.grant_secret, settings.admin_key, settings.writer_key, settings.turn_secret,
                         settings.ipfs_pin_token])
    if settings.chain == "embedded":
        from signalling.chain.evm import DEMO_PASS_PRICE, EmbeddedChain

        chain = EmbeddedChain(writer_key=settings.writer_key)
        dep = await chain.start()
        w3, chain_id = chain.w3, dep.chain_id
        multicall, session_log, writer_key = dep.multicall, dep.session_log, chain.writer.key.hex()
        await registry.seed(RoomConfig(DEMO_GATED_ROOM, Gate.from_json({
            "standard": "erc721", "chainId": chain_id, "contract": dep.membership_pass,
            "label": "Basement demo membership pass",
        })))
        info = {"chainId": chain_id, "embedded": True, "demoGatedRoom": DEMO_GATED_ROOM,
                "membershipPass": dep.membership_pass, "passPrice": str(DEMO_PASS_PRICE),
                "demoWallet": dep.demo_wallet}
    else:
        chain = None
        w3 = chainwriter.http_w3(settings.rpc_url)
        chain_id = settings.chain_id or await w3.eth.chain_id
        multicall, session_log = settings.multicall_address, settings.session_log_address
        writer_key = settings.writer_key
        info = {"chainId": chain_id, "embedded": False}

    evaluator = GateEvaluator(w3, multicall, chain_id, cache_ttl_s=settings.gate_cache_ttl_s) if multicall else None
    grants = GrantIssuer(settings.grant_secret, settings.grant_ttl_s)
    auth = AuthService(origin=settings.base_url, chain_id=chain_id, grants=grants, registry=registry,
                       evaluator=evaluator, w3=w3, require_auth=settings.require_auth,
                       nonces=nonces if nonces is not None else MemoryNonceStore(),
                       signin_ttl_s=settings.signin_ttl_s, nonces_per_client=settings.auth_nonces_per_address,
                       limiter=RateLimiter(settings.auth_rate_per_min) if settings.auth_rate_per_min else None)
    cp = ControlPlane(settings, w3, chain_id, auth, registry, evaluator, embedded=chain, info=info)

    if sessions and session_log and writer_key:
        outbox = outbox_for_settings(settings)
        cp.outbox = outbox
        if track:
            cp.tracker = session_tracker(settings, outbox, registry)
        config = chainwriter.WriterConfig(confirmations=settings.writer_confirmations,
                                          batch_size=settings.writer_batch_size,
                                          batch_wait_s=settings.writer_batch_wait_s,
                                          max_fee_cap_wei=int(settings.writer_max_fee_gwei * 10**9))
        cp.writer = chainwriter.from_settings(settings, w3=w3, outbox=outbox, config=config,
                                              key=writer_key, session_log=session_log)
        await cp.writer.start()
    elif sessions:
        log.warning("no SessionLog address or writer key: session summaries will not be recorded")
    return cp


def mount(cp: ControlPlane, app: web.Application, rooms: Any) -> None:
    """Serve the control plane next to a signalling app: sign-in and grants, the admin API when a
    key is configured, and the holdings re-check of the participants in `rooms`."""
    app.add_routes(auth_routes(cp.auth))
    if cp.settings.admin_key:
        app.add_subapp("/admin", admin_app(cp.registry, cp.settings.admin_key, chain_ids=[cp.chain_id],
                                           on_change=cp.recheck_soon))
    start_rechecker(cp, rooms)


def start_rechecker(cp: ControlPlane, rooms: Any) -> None:
    """Remove participants whose wallet no longer satisfies their room's gate."""
    if cp.evaluator is None:
        return

    async def present() -> list[tuple[str, str]]:
        # guests too: a gate set on a live room must remove the guests who came in while it was open
        return [(p.room, p.identity) for p in rooms.participants.values()]

    async def revoked(room: str, address: str, result: Any) -> None:
        for p in list(rooms.participants.values()):
            if p.room == room and p.identity == address:
                await rooms.remove(p.id, f"no longer qualifies for this room: {result.reason}")

    cp.rechecker = Rechecker(cp.evaluator, cp.registry, present, revoked, interval_s=cp.settings.gate_recheck_s)
    cp.rechecker.start()
