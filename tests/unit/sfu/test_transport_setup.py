"""What a PeerTransport costs to set up: one DTLS certificate per process, and a send-only m-line
carries none of aiortc's receive machinery."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aioice
from aiortc import RTCPeerConnection, rtcrtpreceiver
from aiortc.rate import RemoteBitrateEstimator

from sfu import transport as tr
from sfu.transport import PeerTransport
from tests.support.ice_pair import ice_pair


async def test_a_slot_gets_no_receive_estimator_and_aiortc_keeps_its_own():
    transport = PeerTransport(on_rtp=None, on_rtcp=None)
    try:
        slots = [transport.add_slot("video", "video/VP8"), transport.add_slot("audio", "audio/opus")]
        # aiortc would build a RemoteBitrateEstimator (~1,000 objects) per video receiver, on every
        # subscription of every join; the slot's receiver never runs, so it has none
        for slot in slots:
            assert slot.transceiver.receiver._RTCRtpReceiver__remote_bitrate_estimator is None
        # every other aiortc receiver (clients' own, bots in the same process) still gets one
        receiver = rtcrtpreceiver.RTCRtpReceiver("video", slots[0].transceiver.receiver.transport)
        assert isinstance(receiver._RTCRtpReceiver__remote_bitrate_estimator, RemoteBitrateEstimator)
    finally:
        await transport.close()


async def test_the_receivers_of_an_applied_offer_get_no_estimator_either():
    client = PeerTransport(on_rtp=None, on_rtcp=None)
    sfu = PeerTransport(on_rtp=None, on_rtcp=None)
    try:
        client.pc.addTransceiver("video", direction="sendonly")
        client.pc.addTransceiver("audio", direction="sendonly")
        await sfu.apply_offer(await client.create_offer())
        receivers = [t.receiver for t in sfu.pc.getTransceivers()]
        assert len(receivers) == 2
        assert all(r._RTCRtpReceiver__remote_bitrate_estimator is None for r in receivers)
        await sfu.accept_applied_offer()  # and they never run
    finally:
        await client.close()
        await sfu.close()


def _certificate(pc: RTCPeerConnection):
    return pc._RTCPeerConnection__certificates[0]


async def test_connections_share_one_certificate_renewed_daily(monkeypatch):
    monkeypatch.setattr(tr._SharedCertificate, "_current", None)
    a, b = PeerTransport(), PeerTransport()
    own = RTCPeerConnection()  # aiortc used directly (clients, tests) still makes its own
    try:
        assert _certificate(a.pc) is _certificate(b.pc)
        assert _certificate(own) is not _certificate(a.pc)
        fingerprint = _certificate(a.pc).getFingerprints()[0].value
        now = tr.time.monotonic()
        monkeypatch.setattr(tr.time, "monotonic", lambda: now + tr._SharedCertificate.LIFETIME_S + 1)
        c = PeerTransport()
        assert _certificate(c.pc).getFingerprints()[0].value != fingerprint
        assert _certificate(a.pc).getFingerprints()[0].value == fingerprint  # a live connection keeps its own
        await c.close()
    finally:
        for t in (a, b):
            await t.close()
        await own.close()


async def test_the_shared_certificate_makes_its_fingerprints_and_openssl_context_once(monkeypatch):
    monkeypatch.setattr(tr._SharedCertificate, "_current", None)
    cert = _certificate(PeerTransport().pc)
    calls = {"digest": 0, "context": 0}
    digest, context = tr.rtcdtlstransport.certificate_digest, tr.rtcdtlstransport.SSL.Context

    def counting_digest(*args):
        calls["digest"] += 1
        return digest(*args)

    def counting_context(*args):
        calls["context"] += 1
        return context(*args)

    monkeypatch.setattr(tr.rtcdtlstransport, "certificate_digest", counting_digest)
    monkeypatch.setattr(tr.rtcdtlstransport.SSL, "Context", counting_context)
    first = cert.getFingerprints()
    first[0].value = "changed by a caller"
    again = cert.getFingerprints()
    assert again[0].value != "changed by a caller" and len(again) == len(first) >= 1
    assert calls["digest"] == len(first)  # once per algorithm, not once per connection
    gcm = [tr.rtcdtlstransport.SRTP_AEAD_AES_128_GCM, tr.rtcdtlstransport.SRTP_AES128_CM_SHA1_80]
    cm = [tr.rtcdtlstransport.SRTP_AES128_CM_SHA1_80]
    assert cert._create_ssl_context(gcm) is cert._create_ssl_context(gcm)
    assert cert._create_ssl_context(cm) is not cert._create_ssl_context(gcm)  # per SRTP profile set
    assert calls["context"] == 2


async def test_gathering_asks_no_stun_server(monkeypatch):
    """aiortc's default configuration sends a DNS query for stun.l.google.com and a STUN request to
    Google from every peer connection; the SFU gathers its configured addresses only (public IPs are
    advertised from `ice_public_ip`), so it contacts nobody but its clients."""
    looked_up: list[str] = []

    def lookup(name: str) -> str:
        looked_up.append(name)
        raise OSError("no name lookups in this test")  # so no STUN request leaves either

    monkeypatch.setattr(tr.aioice.ice.socket, "gethostbyname", lookup)
    transport = PeerTransport(on_rtp=None, on_rtcp=None)
    try:
        transport.add_slot("audio", "audio/opus")
        offer = await transport.create_offer()
        candidates = [line for line in offer.splitlines() if line.startswith("a=candidate:")]
        assert candidates and all(" typ host" in line for line in candidates)
        assert looked_up == []
    finally:
        await transport.close()


async def test_ice_connect_returns_when_its_checks_are_done_not_at_the_next_pacing_tick(monkeypatch):
    """aioice starts a check, sleeps 20 ms (RFC 8445's Ta) and only then sees that the check list is
    done: every connection, on both sides, reached DTLS 10-20 ms after ICE had succeeded. The pacing
    sleep ends when the check list is done; here it would last an hour, so nothing else can end
    connect()."""
    tr._install()
    pacing_sleeps: list[float] = []
    paced = tr._check_pacing_sleep

    async def hour_long(delay: float, result: Any = None) -> Any:
        if tr._pacing.get() is not None:
            pacing_sleeps.append(delay)
            delay = 3600.0
        return await paced(delay, result)

    monkeypatch.setattr(tr._AsyncioWithPortRange, "sleep", staticmethod(hour_long))
    a, b = await ice_pair()
    try:
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 60)  # a hang guard only
        assert pacing_sleeps == [0.02, 0.02]  # each side paced its one check, and was woken
        assert a._nominated and b._nominated
    finally:
        await a.close()
        await b.close()


async def test_a_pacing_sleep_lasts_its_full_time_while_checks_remain():
    """Early wake-up is for a finished check list only: checks still start no faster than Ta."""

    class Pending:
        _check_list_done = False
        _check_list_state: asyncio.Queue[int] = asyncio.Queue()

    loop = asyncio.get_running_loop()
    tr._pacing.set(Pending())
    start = loop.time()
    assert await tr._check_pacing_sleep(0.05, "r") == "r"
    assert loop.time() - start >= 0.05
    assert tr._pacing.get() is None  # one sleep per check started
    # the outcome that ends a sleep early is still there for connect() to read
    done = Pending()
    done._check_list_state = asyncio.Queue()
    tr._pacing.set(done)
    loop.call_soon(done._check_list_state.put_nowait, aioice.ice.ICE_COMPLETED)
    await tr._check_pacing_sleep(3600)
    assert done._check_list_state.get_nowait() == aioice.ice.ICE_COMPLETED
    # a failed check list waits the sleep out: the controlling side's checks may still nominate a
    # peer-reflexive pair in that time (aiortc starts DTLS even after a failed connect())
    failed = Pending()
    failed._check_list_state = asyncio.Queue()
    tr._pacing.set(failed)
    loop.call_soon(failed._check_list_state.put_nowait, aioice.ice.ICE_FAILED)
    start = loop.time()
    await tr._check_pacing_sleep(0.05)
    assert loop.time() - start >= 0.05
    assert failed._check_list_state.get_nowait() == aioice.ice.ICE_FAILED



async def _run_again(a: Any, b: Any) -> None:
    """ICE again on two restarted agents: each learns the other's candidates and new credentials
    (what the offer and answer carry), then both connect."""
    for this, other in ((a, b), (b, a)):
        for candidate in other.local_candidates:
            await this.add_remote_candidate(candidate)
        await this.add_remote_candidate(None)
        this.remote_username, this.remote_password = other.local_username, other.local_password
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)


async def test_an_ice_restart_gives_new_credentials_and_a_new_pair_while_sends_use_the_old_one():
    """restart_ice_credentials on both agents of a connected pair: new credentials, an empty check
    list, data carried by the previous pair meanwhile (RFC 8445 §9), then connect() again nominates
    a pair that the nomination callback hears of (not completing early on the previous one), and
    data flows on it both ways."""
    tr._install()
    a, b = await ice_pair()
    try:
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
        old_pair = a._nominated[1]
        old = {c: (c.local_username, c.local_password) for c in (a, b)}
        nominated: list[Any] = []
        a._basement_on_nominated = nominated.append
        for c in (a, b):
            tr.restart_ice_credentials(c)
            assert (c.local_username, c.local_password) != old[c] and not c._check_list
        # between the restart and a new nomination the previous pair carries on, both ways
        assert a._nominated[1] is old_pair
        await a.send(b"during the restart")
        assert await asyncio.wait_for(b.recv(), 5) == b"during the restart"
        await b.send(b"back, during the restart")
        assert await asyncio.wait_for(a.recv(), 5) == b"back, during the restart"
        # a check signed with the old password is refused now
        assert not b._valid_username(f"{old[b][0]}:{a.local_username}")
        await _run_again(a, b)
        assert nominated == [a._nominated[1]] and nominated[0] is not old_pair
        assert not a._basement_previous and not b._basement_previous
        await a.send(b"after")
        assert await asyncio.wait_for(b.recv(), 5) == b"after"
        await b.send(b"and back")
        assert await asyncio.wait_for(a.recv(), 5) == b"and back"
    finally:
        await a.close()
        await b.close()


async def test_a_restart_that_finds_no_path_in_time_closes_the_connection(monkeypatch):
    """Until a restart nominates a pair, the previous one is used without consent checks: one that
    finds nothing in RESTART_TIMEOUT_S is closed, as when consent expires; one that does is not."""
    tr._install()
    monkeypatch.setattr(tr, "RESTART_TIMEOUT_S", 0.3)
    a, b = await ice_pair()
    try:
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
        tr.restart_ice_credentials(a)  # the peer never answers the restart
        tr.restart_ice_credentials(b)
        b._basement_previous = {}  # (as if b's restart had found a pair)
        await asyncio.sleep(0.6)
        assert a._closed and not b._closed
    finally:
        await a.close()
        await b.close()



class _Restarting:
    """What PeerTransport._restart_local reads of its transport: the ICE transport's state and
    aioice connection, and the tasks running aiortc's connect step."""

    def __init__(self, connection: Any, state: str) -> None:
        self.ice = type("Ice", (), {"state": state, "_connection": connection})()
        self.ended = False
        self._restart_pending = False
        self._connecting: set[asyncio.Task[None]] = set()
        self.ice_restarts = 0

    def _ice_transport(self) -> Any:
        return self.ice

    def _nominated_again(self, pair: Any) -> None:
        pass

    def _stop_superseded_run(self, ice: Any) -> None:
        PeerTransport._stop_superseded_run(self, ice)  # type: ignore[arg-type]


async def test_a_restart_may_supersede_one_still_checking():
    """A client restarts again before the server's previous restart found a pair (its path kept
    changing, or the machine is loaded). The server restarts from its checking state (refusing
    would leave it on credentials the client no longer uses: no media ever again), stops the
    superseded connect(), and the newest credentials nominate a pair; the previous pair carries
    data until then. A first ICE run still checking is not restarted."""
    tr._install()
    a, b = await ice_pair()
    try:
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
        old_pair = a._nominated[1]
        server = _Restarting(a, "completed")
        assert PeerTransport._restart_local(server)
        tr.restart_ice_credentials(b)
        # a runs its first restart with b's new credentials, but b has restarted again meanwhile
        stale = (b.local_username, b.local_password)
        tr.restart_ice_credentials(b)
        for candidate in b.local_candidates:
            await a.add_remote_candidate(candidate)
        a.remote_username, a.remote_password = stale
        server._restart_pending = False  # (as _restart_remote does on the peer's answer)
        first = asyncio.ensure_future(a.connect())
        server._connecting.add(first)
        server.ice.state = "checking"
        # aiortc's start event of that run: a connect step started meanwhile (for our own restart
        # offer) waits on it
        started = server.ice._RTCIceTransport__start = asyncio.Event()
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.sleep(0.1)
        assert not first.done()  # b refuses checks signed for credentials it dropped
        before = a.local_username
        assert PeerTransport._restart_local(server)
        assert a.local_username != before and server.ice_restarts == 2
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert first.cancelled()
        await asyncio.wait_for(waiting, 5)  # released, not left to hang a close() forever
        assert a._nominated[1] is old_pair
        await a.send(b"between the restarts")
        assert await asyncio.wait_for(b.recv(), 5) == b"between the restarts"
        await _run_again(a, b)
        assert a._nominated[1] is not old_pair and not a._basement_previous
        await b.send(b"on the newest pair")
        assert await asyncio.wait_for(a.recv(), 5) == b"on the newest pair"
    finally:
        await a.close()
        await b.close()
    # a connection still checking on its first run has nothing to restart
    c, d = await ice_pair()
    try:
        assert not PeerTransport._restart_local(_Restarting(c, "checking"))
    finally:
        await c.close()
        await d.close()


def test_the_codec_copy_aiortc_negotiates_with_equals_a_deep_copy():
    """aiortc's find_common_codecs copies every codec of every description applied; the direct copy
    that replaces its deepcopy gives equal, independent objects, and the same common codecs."""
    import copy

    from aiortc import codecs as artc_codecs
    from aiortc import rtcpeerconnection as artc_pc
    from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

    local = artc_codecs.CODECS["video"] + artc_codecs.CODECS["audio"]
    h264 = [c for c in local if c.mimeType == "video/H264"]
    assert h264 and all(c.parameters for c in h264) and any(c.rtcpFeedback for c in local)
    for codec in local:
        copied = tr._copy_codec(codec)
        assert copied == copy.deepcopy(codec) and copied is not codec
        copied.parameters["x"] = 1
        copied.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))
        assert "x" not in codec.parameters and codec.rtcpFeedback != copied.rtcpFeedback
    assert tr._copy_codec([1, [2]]) == [1, [2]]  # anything else: copy.deepcopy
    remote = [RTCRtpCodecParameters(mimeType=c.mimeType, clockRate=c.clockRate, channels=c.channels,
                                    payloadType=(c.payloadType or 0) + 1, rtcpFeedback=c.rtcpFeedback[:1],
                                    parameters=dict(c.parameters)) for c in local]
    remote = [c for c in remote if c.mimeType.lower() != "video/rtx"]
    ours = artc_pc.find_common_codecs(local, remote)
    saved = artc_pc.copy
    assert saved.deepcopy is tr._copy_codec
    artc_pc.copy = copy
    try:
        theirs = artc_pc.find_common_codecs(local, remote)
    finally:
        artc_pc.copy = saved
    assert ours == theirs and len(ours) >= 5
