"""The load generator measures what it claims: a tiny livestream against Basement and against Janus.

Packets counted at the subscribers must match what the SFU itself reports having sent (Basement's
`basement_packets_out` on /metrics, Janus's per-handle Admin API counters), every probe must pass
its CRC, and the CPU/latency figures must be present. Janus runs only in a loopback-only network
namespace (as `make test` provides).
"""

from __future__ import annotations

import shutil
import zlib

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from bench.loadgen import media, wire
from bench.loadgen.peers import InStream, LightSubscriber, configure_native_receive, kinds_by_pt, munge_simulcast
from bench.loadgen.scenario import RunConfig, run_once
from bench.loadgen.targets import BasementTarget, JanusTarget, proc_children, proc_cpu_seconds
from sfu import rtp, transport
from sfu.transport import RecvSlot, configure_ice


@pytest.fixture(scope="module")
def layers():
    # a short single layer keeps the one-time encode to a second or two (cached on disk afterwards)
    return media.load_layers(seconds=1.0, keyint_s=1.0, rids=("h",))


def _target(name: str):
    if name == "janus":
        assert shutil.which("janus"), "janus is not installed: `make test` installs it (system-deps)"
        return JanusTarget()
    return BasementTarget()


@pytest.mark.parametrize("reader", ["native", "python"])
@pytest.mark.parametrize("name", ["basement", "janus"])
async def test_livestream_counts_match_the_sfu(name, reader, layers):
    # reader: the generator's subscribers count in C on their own sockets (what `basement bench`
    # does), or in Python on the event loop's (the fallback without the extension)
    configure_ice(["127.0.0.1"])
    if reader == "native":
        assert configure_native_receive()
    target = _target(name)
    cfg = RunConfig(scenario="livestream", subscribers=2, duration=2.0, warmup=0.5, probe_every=4,
                    setup_timeout=30, wire_latency=True)
    try:
        await target.start()
        r = await run_once(target, cfg, layers)
    finally:
        transport.configure_receive(None)
        await target.stop()
    assert target.proc.poll() is not None, "the SFU child process must be gone"
    if reader == "native":  # all but each stream's first packet (and only probes decrypted)
        assert r["packets_counted_natively"] >= r["packets_received"] - 10, r
    else:
        assert r["packets_counted_natively"] == 0, r

    received, reported = r["packets_received_total"], r["sfu_reported_forwarded_total"]
    assert received > 0
    assert reported is not None and reported > 0
    # read with the publishers stopped and the network drained: only real loss may separate them,
    # and retransmissions (Janus counts a NACKed packet once, its subscriber may receive it twice)
    assert abs(received - reported) <= max(5, 0.02 * reported), (received, reported)
    # every subscriber gets every packet the publisher sent (audio + video) within the loss tolerance
    assert received >= 0.95 * r["packets_published"] * cfg.subscribers - 20, r
    assert r["loss_pct"] is not None and r["loss_pct"] < 5
    # both streams (audio, video) of every subscriber arrived in the window
    assert (r["streams"], r["stalled_streams"]) == (2 * cfg.subscribers, 0), r
    assert r["cpu_us_per_packet"] is not None and r["cpu_us_per_packet"] > 0
    assert r["sfu_cpu_s"] > 0
    assert r["probes"] > 0 and r["crc_errors"] == 0, r
    # every probe counted in the window is timed, and only those (a retransmitted probe is both again)
    assert r["latency_samples"] == r["probes"], r
    assert 0 <= r["latency_ms_p50"] <= r["latency_ms_p99"]
    # the wire capture matched (nearly) every probe copy the subscribers decrypted to the publisher's send
    assert r["capture_kernel_drops"] == 0
    wire_figures = {k: v for k, v in r.items() if k.startswith(("added_", "capture_", "probes", "seq_", "late"))}
    assert r["added_latency_samples"] >= 0.95 * r["probes"] - 5, wire_figures
    assert r["added_latency_unmatched"] <= 0.05 * r["added_latency_samples"] + 5, wire_figures
    assert 0 < r["added_latency_first_copy_us_p50"] <= r["added_latency_us_p50"] <= r["added_latency_us_p99"]
    # and the SFU adds less than the whole path the subscribers time (which includes both generator loops)
    assert r["added_latency_us_p50"] < 1000 * r["latency_ms_p50"], r
    assert r["join_ms_p50"] is not None and r["join_ms_p50"] > 0


async def test_rooms_spread_over_media_workers_and_their_cpu_is_counted(layers):
    """`basement bench --rooms 2 --workers 2`: each room on its own worker process, both forwarding
    its room's media, and the SFU CPU is the server's and its workers' together."""
    configure_ice(["127.0.0.1"])
    assert configure_native_receive()
    target = BasementTarget(workers=2)
    cfg = RunConfig(scenario="livestream", subscribers=2, duration=2.0, warmup=0.5, probe_every=4,
                    setup_timeout=30, rooms=2)
    try:
        await target.start()
        target_children = len(proc_children(target.pid))
        r = await run_once(target, cfg, layers)
        parent_cpu = proc_cpu_seconds(target.pid)
        total_cpu = target.cpu_seconds()
    finally:
        transport.configure_receive(None)
        await target.stop()
    assert target_children == 2
    assert (r["rooms"], r["workers"], r["publishers"], r["subscribers"]) == (2, 2, 2, 4), r
    assert (r["streams"], r["stalled_streams"], r["crc_errors"]) == (8, 0, 0), r
    assert r["loss_pct"] is not None and r["loss_pct"] < 5
    received, reported = r["packets_received_total"], r["sfu_reported_forwarded_total"]
    assert abs(received - reported) <= max(5, 0.02 * reported), (received, reported)
    # one room per worker: each forwarded about half of what the subscribers received
    by_worker = r["sfu_forwarded_by_worker"]
    assert sorted(by_worker) == ["0", "1"], r
    assert all(0.3 * reported <= n <= 0.7 * reported for n in by_worker.values()), (by_worker, reported)
    # the media runs in the workers: the CPU measured includes theirs
    assert total_cpu > parent_cpu


async def test_probe_detects_a_corrupted_payload():
    payload = media.vp8_descriptor(True, 1234, 7) + bytes(range(200))
    pkt = media.build_rtp(96, 10, 1000, 0x1234, True, b"", payload, probe_counter=1, crc_from=5)
    sub = LightSubscriber("x")
    sub.kind_by_pt[96] = "video"
    sub.streams[0x1234] = s = InStream(0x1234, "video")
    sub._check_probe(s, pkt)
    assert (s.probes, s.crc_errors) == (1, 0)
    # an SFU may rewrite the VP8 PictureID (the CRC skips the descriptor), but not the frame data
    bad = bytearray(pkt)
    view = rtp.parse(pkt)
    bad[view.payload_start + 2] ^= 0x55  # PictureID: allowed
    sub._check_probe(s, bytes(bad))
    assert s.crc_errors == 0
    bad[view.payload_start + 20] ^= 0x01  # frame data: must be caught
    sub._check_probe(s, bytes(bad))
    assert (s.probes, s.crc_errors) == (3, 1)
    assert zlib.crc32(payload[5:]) == media.read_probe(pkt)[1]


async def test_sequence_accounting_sees_gaps_and_loss():
    sub = LightSubscriber("x")
    sub.kind_by_pt[111] = "audio"
    for seq in [65534, 65535, 0, 2, 3, 1]:  # wraps, loses 1 then gets it late
        sub._on_rtp(media.build_rtp(111, seq, 0, 42, False, b"", b"\x78abc"), 0.0)
    s = sub.streams[42]
    assert s.expected == 6 and s.received == 6 and s.lost == 0
    assert s.gaps == 1 and s.duplicates_or_late == 1


def test_simulcast_offer_munging():
    sdp = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ssrc:1 cname:x\r\n"
           "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:1\r\na=ssrc-group:FID 2 3\r\na=ssrc:2 cname:x\r\n"
           "a=ssrc:3 cname:x\r\n")
    out = munge_simulcast(sdp, ("q", "h", "f"))
    audio, video = out.split("m=video")
    assert "a=ssrc:1 cname:x" in audio
    assert "a=ssrc" not in video
    assert "a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f" in video
    assert f"a=extmap:10 {rtp.URI_RID}" in video


async def test_send_floor_sends_protected_datagrams_to_every_receiver():
    from bench.loadgen import floor

    f = await floor.measure(receivers=3, pps=50, duration=1.0)
    # ~50 ticks of one packet per receiver, every one of them counted where it was sent
    assert 120 <= f["sent"] <= 160
    assert f["received"] == f["sent"]
    # the native egress protected them: AEAD_AES_128_GCM adds a 16-byte tag
    assert f["datagram_bytes"] == floor.PACKET_BYTES + 16, f["send"]
    assert f["us_per_packet"] > 0


async def test_the_latency_floor_is_timed_on_the_wire():
    """A bare reflector forwards each probe once: every one is matched, none twice, none to the wrong input."""
    r = await wire.measure_floor(None, packets=50, interval=0.002)
    assert (r["added_latency_samples"], r["added_latency_unmatched"], r["added_latency_inputs"]) == (50, 0, 50), r
    assert r["capture_kernel_drops"] == 0
    assert 0 < r["added_latency_us_p50"] <= r["added_latency_us_p99"] <= r["added_latency_us_max"]


async def test_an_rtx_stream_is_neither_nacked_nor_a_stall():
    """The SFU's retransmissions arrive on the m-line's RTX payload type and SSRC: quiet whenever
    nothing is lost. They must not count as a stream that stopped, and their own gaps (lost
    retransmissions) are not NACKed: only media numbers are."""
    slot = RecvSlot(mid="1", kind="video", ext_ids={}, rtcp_ssrc=1, codecs={
        96: RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
        97: RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97)})
    assert kinds_by_pt(slot) == {96: "video", 97: "rtx"}
    sub = LightSubscriber("x")
    sub.kind_by_pt.update(kinds_by_pt(slot))
    vp8 = media.vp8_descriptor(True, 1, 0) + b"\x00" * 20
    for seq in (1, 2, 5):  # media: 3 and 4 lost
        sub._on_rtp(media.build_rtp(96, seq, 0, 0xAA, False, b"", vp8), 0.0)
    for seq in (10, 13):  # retransmissions: two of them lost on the way
        sub._on_rtp(media.build_rtp(97, seq, 0, 0xBB, False, b"", b"\x00\x03" + vp8), 0.0)
    assert sub.stream_counts() == {0xAA: 3}
    assert {ssrc: sorted(m) for ssrc, m in sub._missing.items() if m} == {0xAA: [3, 4]}
    assert sub.streams[0xBB].kind == "rtx" and sub.streams[0xBB].received == 2
