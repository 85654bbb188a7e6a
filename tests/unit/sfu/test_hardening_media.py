"""Issue #11, media send side: candidate screening, NACK amplification, malformed RTCP, churn leaks,
and the active-speaker loop. Sans-IO where the behaviour allows it; real aiortc peers otherwise."""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import types

import pytest
from aiortc import rtp as artp
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sfu import datapath, rtp
from sfu.candidates import CandidatePolicy, scope
from sfu.downtrack import CACHE_SIZE, RTX_UNKNOWN_RTT, DownTrack
from sfu.ingress import Ingress
from sfu.metrics import STATS
from sfu.peer import Peer
from sfu.router import Router
from sfu.speaker import ActiveSpeaker
from sfu.track import PublishedTrack
from sfu.transport import IceConfig, SendSlot
from signalling import config


def test_auto_rule_allows_only_scopes_the_server_itself_is_on():
    on_loopback = CandidatePolicy.make(["auto"], 32, ["127.0.0.1"])
    assert on_loopback.refusal("127.0.0.1") is None
    assert on_loopback.refusal("::1") is None
    assert on_loopback.refusal("93.184.216.34") is None  # public: always
    for host, words in [("10.0.0.1", "private"), ("192.168.1.1", "private"), ("100.64.0.1", "private"),
                        ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("fd00::1", "private"),
                        ("224.0.0.251", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
                        ("255.255.255.255", "reserved"), ("::ffff:10.0.0.1", "private"), ("example.org", "not an IP")]:
        reason = on_loopback.refusal(host)
        assert reason is not None and words in reason, (host, reason)

    on_private = CandidatePolicy.make(["auto"], 32, ["10.1.2.3"])
    assert on_private.refusal("192.168.7.7") is None
    assert on_private.refusal("127.0.0.1") is not None  # not on loopback: its own services stay unreachable
    assert on_private.refusal("169.254.169.254") is not None  # cloud metadata

    on_public = CandidatePolicy.make(["auto"], 32, ["93.184.216.34"])
    assert [on_public.refusal(h) is None for h in ("8.8.8.8", "10.0.0.1", "127.0.0.1", "169.254.1.1")] == [
        True, False, False, False]

    explicit = CandidatePolicy.make(["10.0.0.0/8", "2001:db8::/32"], 32, ["93.184.216.34"])
    assert explicit.refusal("10.9.9.9") is None and explicit.refusal("2001:db8::5") is None
    assert "outside the allowed" in explicit.refusal("8.8.8.8")
    assert "multicast" in CandidatePolicy.make(["0.0.0.0/0"], 32, []).refusal("239.1.1.1")  # never
    on_wildcard = CandidatePolicy.make(["auto"], 32, ["0.0.0.0"])  # bound to every interface
    assert on_wildcard.refusal("127.0.0.1") is None and on_wildcard.refusal("10.0.0.1") is None
    assert on_wildcard.refusal("0.0.0.0") is not None
    auto_plus = CandidatePolicy.make(["auto", "10.0.0.0/8"], 32, ["93.184.216.34"])
    assert auto_plus.refusal("10.1.1.1") is None and auto_plus.refusal("8.8.8.8") is None
    assert auto_plus.refusal("192.168.0.1") is not None
    assert scope(__import__("ipaddress").ip_address("::ffff:127.0.0.1")) == "loopback"


def test_candidate_settings_are_validated_and_named():
    assert config.load(env={}).ice_allowed_ranges == ["auto"]
    assert config.load(env={}).ice_max_remote_candidates == 32
    with pytest.raises(config.ConfigError, match="ice_allowed_ranges"):
        config.load(env={"BASEMENT_ICE_ALLOWED_RANGES": "auto,10.0.0.0/33"})
    with pytest.raises(config.ConfigError, match="ice_max_remote_candidates"):
        config.load(env={"BASEMENT_ICE_MAX_REMOTE_CANDIDATES": "0"})
    with pytest.raises(ValueError, match="neither 'auto' nor"):
        IceConfig.make(["127.0.0.1"], allowed_ranges=["nowhere"])


PACKET = 1200


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def send_rtp(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def send_rtcp(self, packets) -> bool:
        return True


def _audio_downtrack(rtx_budget: float = 0.5, rtx_pt: int = 0) -> tuple[DownTrack, FakeTransport, object]:
    codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    ingress = Ingress("PA_pub")
    ingress.extensions["0"] = {}
    rec = PublishedTrack("TR_pub_0", "PA_pub", "audio", "0", codec, ingress)
    layer = rec.layer("")
    transport = FakeTransport()
    slot = SendSlot(transceiver=None, kind="audio", ssrc=0x2222, rtx_ssrc=0x3333, mid="0", pt=111,
                    rtx_pt=rtx_pt, ext_ids={}, active=True)
    dt = datapath.downtrack_class()(rec, "PA_sub", transport, slot, rtx_budget=rtx_budget)
    dt.set_target(layer)
    return dt, transport, layer


def _forward(dt: DownTrack, layer, seqs: range, start: float, step: float) -> float:
    now = start
    for seq in seqs:
        data = rtp.HEADER.pack(0x80, 111, seq & 0xFFFF, seq * 960, 0x1111) + bytes(PACKET - 12)
        dt.forward(data, rtp.parse(data), layer, False, None, now)
        now += step
    return now


def _out_seqs(dt: DownTrack, n: int) -> list[int]:
    return [(dt.last_seq - i) & 0xFFFF for i in range(n)][::-1]


def test_one_nack_for_the_whole_cache_then_repeats_stay_bounded():
    dt, transport, layer = _audio_downtrack(rtx_budget=0.5)
    # 1024 packets forwarded over 20.48 s (50 pps, 60 kB/s): the cache holds them all
    now = _forward(dt, layer, range(1000, 1000 + CACHE_SIZE), 0.0, 0.02)
    forwarded = len(transport.sent)
    assert forwarded == CACHE_SIZE
    transport.sent.clear()
    before = (STATS.retransmissions, STATS.rtx_suppressed_interval, STATS.rtx_suppressed_budget,
              STATS.rtx_suppressed_stale)

    # one 256-byte NACK naming every cached packet: one run of losses that began 20 s ago, stale
    # (downtrack.RTX_MAX_AGE_S): nothing of it is resent
    dt.on_nack(_out_seqs(dt, CACHE_SIZE), now)
    assert transport.sent == [] and STATS.rtx_suppressed_stale - before[3] == CACHE_SIZE
    # the last 0.9 s of it, which could be repaired but not within the budget (half of what was
    # forwarded per window, 60 kB/s averaged over the run -> 25 packets): a run goes whole or not at
    # all, so none of it
    dt.on_nack(_out_seqs(dt, 45), now)
    assert transport.sent == [] and STATS.rtx_suppressed_budget - before[2] == 45
    # the last 0.4 s (20 packets) fits: all of it is resent
    lost = _out_seqs(dt, 20)
    dt.on_nack(lost, now)
    first = len(transport.sent)
    assert first == 20 <= 0.5 * 60_000 / PACKET + 1
    for _ in range(10):  # the same NACK again and again, within the RTT: nothing more
        dt.on_nack(lost, now)
    assert len(transport.sent) == first
    # a second later (new window, no new media forwarded): still bounded (and by then stale)
    dt.on_nack(lost, now + 1.0)
    assert len(transport.sent) <= 2 * first
    total = len(transport.sent)
    assert STATS.retransmissions - before[0] == total
    assert STATS.rtx_suppressed_interval - before[1] >= 10 * first
    assert dt.rtx_suppressed == CACHE_SIZE + 45 + 12 * len(lost) - total
    assert dt.stats()["retransmissions_suppressed"] == dt.rtx_suppressed


def test_a_lost_retransmission_is_resent_after_one_rtt_not_before():
    dt, transport, layer = _audio_downtrack(rtx_pt=112)
    now = _forward(dt, layer, range(5000, 5200), 0.0, 0.02)
    transport.sent.clear()
    seq = _out_seqs(dt, 10)[0]
    dt.on_nack([seq, seq], now)  # duplicates in one NACK count once
    assert len(transport.sent) == 1
    rtx = rtp.parse(transport.sent[0])
    assert rtx.pt == 112 and rtx.ssrc == 0x3333  # as RTX when negotiated
    dt.on_nack([seq], now + RTX_UNKNOWN_RTT / 2)
    assert len(transport.sent) == 1  # sooner than an RTT: the first resend may still be on its way
    now += RTX_UNKNOWN_RTT + 1e-6
    dt.on_nack([seq], now)
    assert len(transport.sent) == 2
    dt.rtt = 0.005  # measured from RRs; the floor (20 ms) applies
    dt.on_nack([seq], now + 0.019)
    assert len(transport.sent) == 2
    dt.on_nack([seq], now + 0.020 + 1e-6)
    assert len(transport.sent) == 3


def test_retransmissions_track_the_forwarded_rate_over_time():
    dt, transport, layer = _audio_downtrack(rtx_budget=0.1)
    now = _forward(dt, layer, range(0, CACHE_SIZE), 0.0, 0.02)
    resent = forwarded = 0
    for second in range(30):  # an attacker NACKs the last 0.08 s every 100 ms while media keeps flowing
        for k in range(10):  # (older packets, runs that start with them, or runs over the budget: never)
            n0 = len(transport.sent)
            dt.on_nack(_out_seqs(dt, 4), now + k * 0.1)
            resent += len(transport.sent) - n0
        n0 = len(transport.sent)
        now = _forward(dt, layer, range(CACHE_SIZE + 50 * second, CACHE_SIZE + 50 * (second + 1)), now, 0.02)
        forwarded += len(transport.sent) - n0
    # at most the budget on the previous window plus the current one: 2 x 10 %
    assert 0 < resent <= 0.2 * forwarded + 2 * CACHE_SIZE * 0.1 * 0.05, (resent, forwarded)


def test_retransmit_budget_is_a_setting():
    assert config.load(env={}).retransmit_budget == 0.5
    with pytest.raises(config.ConfigError, match="retransmit_budget"):
        config.load(env={"BASEMENT_RETRANSMIT_BUDGET": "-1"})


def _remb(bitrate: int, ssrcs: list[int]) -> bytes:
    return bytes(artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                                     fci=artp.pack_remb_fci(bitrate, ssrcs)))


def _truncate_fci(packet: bytes, keep: int) -> bytes:
    """Cut the FCI to `keep` bytes but keep the RTCP length field consistent (a well-framed lie)."""
    body = packet[:12 + keep]
    body += bytes(-len(body) % 4)
    return body[:2] + struct.pack("!H", len(body) // 4 - 1) + body[4:]


async def test_malformed_rtcp_of_every_type_is_a_counted_drop():
    router = Router("rtcp", lambda msg: None, speaker_interval=60)
    peer = Peer("PA_sub", "sub", router, lambda msg: None)
    router.peers[peer.id] = peer
    transport = peer._ensure_subscriber()
    dtls = types.SimpleNamespace()
    transport._hook(dtls)  # the very hook aiortc calls with decrypted SRTCP
    remb = _remb(300_000, [0x1234, 0x5678])
    rr = bytes(artp.RtcpRrPacket(ssrc=1, reports=[artp.RtcpReceiverInfo(
        ssrc=0x99, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0, lsr=0, dlsr=0)]))
    sr = bytes(artp.RtcpSrPacket(ssrc=1, sender_info=artp.RtcpSenderInfo(
        ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4)))
    nack = bytes(artp.RtcpRtpfbPacket(fmt=artp.RTCP_RTPFB_NACK, ssrc=1, media_ssrc=0x99, lost=[1, 2, 40]))
    pli = bytes(artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_PLI, ssrc=1, media_ssrc=0x99))
    bad = {
        "truncated REMB": _truncate_fci(remb, 9),  # 'REMB' + count says 2 SSRCs, none there
        "REMB without its bitrate": _truncate_fci(remb, 4),
        "truncated NACK": nack[:-3],
        "NACK without a media SSRC": struct.pack("!BBHI", 0x81, 205, 1, 1),
        "truncated PLI": pli[:6],
        "PLI without a media SSRC": struct.pack("!BBHI", 0x81, 206, 1, 1),
        "truncated RR": rr[:-5],
        "RR claiming 3 blocks": bytes([0x83]) + rr[1:],
        "truncated SR": sr[:10],
        "SR without sender info": struct.pack("!BBHI", 0x80, 200, 1, 1),
        "BYE claiming 5 sources": struct.pack("!BBHI", 0x85, 203, 1, 1),
        "garbage compound": rr + bytes(range(37)) + nack,
    }
    before_drop = STATS.dropped.get("rtcp_malformed", 0)
    before_internal = STATS.dropped.get("internal_error", 0)
    for name, data in bad.items():
        n = STATS.dropped.get("rtcp_malformed", 0)
        await dtls._handle_rtcp_data(data)
        assert STATS.dropped.get("rtcp_malformed", 0) == n + 1, name
    assert STATS.dropped.get("rtcp_malformed", 0) - before_drop == len(bad)
    assert STATS.dropped.get("internal_error", 0) == before_internal
    assert transport.rtcp_dropped >= len(bad)
    # a bad REMB inside an otherwise good compound drops just itself
    await dtls._handle_rtcp_data(rr + _truncate_fci(remb, 9) + _remb(250_000, [7]))
    assert router.selector.estimates[peer.id] == 250_000
    assert STATS.dropped.get("internal_error", 0) == before_internal
    router.close()
    await peer.close()


async def test_active_speaker_loop_keeps_running_after_a_failing_emit(caplog):
    announced: list[str | None] = []
    failures = {"left": 3}

    def emit(participant: str | None) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("broadcast failed")
        announced.append(participant)

    speaker = ActiveSpeaker(emit, interval=0, hold=1)
    loop = asyncio.get_running_loop()
    before = STATS.task_errors.get("active_speaker", 0)
    STATS._task_error_logged.pop("active_speaker", None)  # another test's failure must not mute this log
    caplog.set_level(logging.ERROR, logger="basement.speaker")
    speaker.start()
    try:
        for who in ("alice", "bob", "carol", "dave"):  # each becomes the loudest in turn
            speaker.loudness.clear()
            for _ in range(20):
                speaker.observe(who, 10, loop.time())
            for _ in range(50):
                await asyncio.sleep(0)
                if speaker.current == who:
                    break
        for _ in range(50):
            await asyncio.sleep(0)
        assert not speaker._task.done()
        assert announced == ["dave"]  # alice, bob and carol failed; the loop went on to dave
        assert STATS.task_errors["active_speaker"] - before == 3
        logged = [r for r in caplog.records if r.name == "basement.speaker"]
        assert len(logged) == 1 and re.search(r"active_speaker failed", logged[0].getMessage())
    finally:
        speaker.stop()


def test_a_publisher_stream_that_starts_over_continues_the_subscribers_numbering():
    # a publisher restarting its stream (new SSRC for the same rid, or a confirmed sequence restart)
    # bumps Layer.epoch; the DownTrack must re-anchor, or the subscriber sees a jump it NACKs across
    dt, transport, layer = _audio_downtrack()
    now = _forward(dt, layer, range(1000, 1010), 0.0, 0.02)
    before = [rtp.parse(p) for p in transport.sent]
    layer.epoch += 1
    _forward(dt, layer, range(40000, 40010), now, 0.02)
    after = [rtp.parse(p) for p in transport.sent[len(before):]]
    seqs = [v.seq for v in before + after]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(20)]  # no jump at the restart
    ts_step = (after[0].ts - before[-1].ts) & 0xFFFFFFFF
    assert 0 < ts_step <= 48000  # timestamps move on by about the wall-clock gap, not the new base
    # without a restart (same epoch) packets from far behind the run's start still are not forwarded
    _forward(dt, layer, range(39990, 39991), now + 1, 0.02)
    assert len(transport.sent) == 20


def test_recent_loss_holds_the_worst_report_and_goes_unknown_without_reports():
    from types import SimpleNamespace

    from sfu.downtrack import LOSS_HOLD_S, REPORT_STALE_S

    dt, _, _ = _audio_downtrack()
    assert dt.recent_loss(10.0) is None  # no receiver report yet: nothing is known

    def report(frac: int, at: float) -> None:
        dt.on_report(SimpleNamespace(fraction_lost=frac, lsr=0, dlsr=0, highest_sequence=0), at)

    report(64, 10.0)  # 25 % lost
    report(0, 10.5)  # one clean report right after does not make the link clean
    assert dt.recent_loss(10.6) == 0.25
    assert dt.recent_loss(10.0 + LOSS_HOLD_S + 0.1) == 0.0  # the lossy report has aged out
    assert dt.recent_loss(10.5 + REPORT_STALE_S + 0.1) is None  # reports stopped: unknown again
