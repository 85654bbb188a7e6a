"""Issue 14, replayed as packets through Ingress, DownTrack and LayerSelector (both data paths):

1. RTX and padding are not a layer's media rate. Firefox probes its lowest simulcast layer with
   ~1 Mbit/s of RTX copies of packets already sent (100-144 packets/s, no NACK asked for them); read
   as the layer's rate, a 150 kbit/s layer looked like 1 Mbit/s and low subscribers were paused.
2. A downlink estimate that the subscriber's receiver reports contradict (no loss, every packet we
   send arriving) does not take its video away: aiortc's estimator reports a few kbit/s on an idle
   loopback. Loss in the reports, or a subscriber whose highest sequence number stops advancing,
   still lets the estimate act.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiortc import rtp as artp

from sfu import rtp
from sfu.downtrack import DELIVERY_WINDOW_S, LOSS_HOLD_S
from sfu.layers import DELIVERED_SHARE, LOSS_FREE, LayerSelector, delivered_floor
from sfu.metrics import STATS, media_registry
from tests.support import packets as P
from tests.unit.sfu import rig
from tests.unit.sfu.rig import OUT_SSRC

Q, H, F = 0x0000A001, 0x0000A002, 0x0000A003
Q_RTX = 0x0000B001
MEDIA, RTX = 0x11111111, 0x22222222
SECONDS = 8
FPS = 30
STEP = 0.5  # the LayerSelector's interval


def vp8(ssrc: int, seq: int, frame: int, size: int, key: bool = False, ext: bytes = b"") -> bytes:
    """One single-packet VP8 frame of exactly `size` bytes (header + payload)."""
    head = P.vp8_payload(keyframe=key, picture_id=frame & 0x7FFF, tl0picidx=frame & 0xFF, tid=0, body=b"")
    packet = P.rtp(96, seq, frame * 3000, ssrc, head, marker=True, ext=ext)
    return packet + b"\xaa" * (size - len(packet))


class Replay:
    """A publisher's simulcast stream, one subscriber and the selector, on a simulated clock."""

    def __init__(self, rids: list[str] | None, remb: int, request: str | None = None) -> None:
        ssrcs = None if rids else [(MEDIA, "media"), (RTX, "rtx")]
        self.ingress, self.rec, self.pub = rig.publish("VP8", rids=rids, ssrcs=ssrcs)
        self.dt, self.sub = rig.subscribe(self.rec)
        self.dt.request_layer = request
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.selector = LayerSelector(lambda pid, msg: self.events.append((pid, msg)))
        self.selector.tracks = lambda: [self.rec]
        self.selector.on_estimate("PA_sub", [self.dt], remb)
        self.dt.set_target(self.selector.initial_layer(self.rec, self.dt))
        self.now = 10.0
        self.next_report = self.now + 1.0
        self.frame = 0
        self.seq: dict[int, int] = {}

    def media(self, ssrc: int, size: int, rid: bytes = b"", key: bool | None = None) -> bytes:
        """One frame of `ssrc`; a key frame at the first frame, or when `key` says."""
        seq = self.seq.get(ssrc, 100)
        self.seq[ssrc] = seq + 1
        ext = P.one_byte_ext([(4, b"0"), (10, rid)]) if rid and seq == 100 else b""
        packet = vp8(ssrc, seq, self.frame, size, key=self.frame == 0 if key is None else key, ext=ext)
        self.ingress.on_rtp(packet, self.now)
        return packet

    def tick(self) -> None:
        """1/FPS of simulated time passes; every STEP the selector evaluates, as its loop does."""
        before = self.now
        self.now += 1 / FPS
        self.frame += 1
        if int(self.now / STEP) != int(before / STEP):
            self.selector.evaluate(self.now)

    def report(self, fraction_lost: int, highest: int | None = None) -> None:
        """A receiver report from the subscriber, as Peer hands it on: by default everything we sent
        has arrived (its highest sequence number is the last one we sent)."""
        if highest is None:
            highest = rtp.parse(self.sub.rtp[-1]).seq if self.sub.rtp else 0
        rr = P.rtcp_rr(0xABC, [P.report_block(OUT_SSRC, fraction_lost, 0, highest, 0)])
        (packet,) = artp.RtcpPacket.parse(rr)
        self.dt.on_report(packet.reports[0], self.now)

    def paused(self) -> list[dict[str, Any]]:
        return [m for _, m in self.events if m["type"] == "paused" and m["paused"]]


def metric(name: str, kind: str) -> float:
    value = media_registry(STATS).get_sample_value(name, {"kind": kind})
    assert value is not None
    return value


# --- 1. RTX and padding are not media ------------------------------------------------------------


def test_unsolicited_rtx_and_padding_probes_do_not_count_as_the_layers_rate():
    r = Replay(["q", "h", "f"], remb=300_000, request="low")
    q = r.rec.layers["q"]
    before = {k: metric(f"basement_nonmedia_{u}_received_total", k)
              for k in ("rtx_copy", "padding", "rtx_repair") for u in ("bytes",)}
    sent_q: list[bytes] = []
    probe_bytes = padding_bytes = 0
    rtx_seq = 5000
    for i in range(SECONDS * FPS):
        # media: q 150 kbit/s, h 500 kbit/s, f 1.5 Mbit/s (one packet per frame each, 30 fps)
        sent_q.append(r.media(Q, 625, b"q"))
        r.media(H, 2083, b"h")
        r.media(F, 2083 * 3, b"f")
        # Firefox's probes on q: RTX copies of recent q packets, padded, 4 per frame (~840 kbit/s),
        # and padding-only RTX packets (~190 kbit/s); no NACK asked for any of them
        for k in range(4 if i else 0):  # (the first q packet carries MID/RID: no copies of it)
            original = sent_q[max(1, len(sent_q) - 1 - k)]
            copy = P.rtx(original, 97, rtx_seq, Q_RTX)
            if rtx_seq == 5000:  # the first RTX packet names its layer (repaired-RID)
                copy = P.rtp(97, rtx_seq, rtp.parse(original).ts, Q_RTX, copy[12:],
                             ext=P.one_byte_ext([(4, b"0"), (11, b"q")]))
            padded = bytes([copy[0] | 0x20]) + copy[1:] + bytes(254) + b"\xff"  # 255 bytes of padding
            r.ingress.on_rtp(padded, r.now)
            probe_bytes += len(padded)
            rtx_seq += 1
        for _ in range(3 if i else 0):
            pad = P.rtp(97, rtx_seq, 0, Q_RTX, b"", padding=255)
            r.ingress.on_rtp(pad, r.now)
            padding_bytes += len(pad)
            rtx_seq += 1
        r.tick()

    assert (probe_bytes + padding_bytes) * 8 / SECONDS > 1_000_000  # as Firefox does
    assert q.rtx_ssrc == Q_RTX
    assert q.bitrate == pytest.approx(150_000, rel=0.05)  # the media alone, not ~1.15 Mbit/s
    # the low subscriber (300 kbit/s estimate) gets q, whole: not paused, not thinned
    assert r.paused() == [] and not r.dt.paused
    assert r.dt.current is q and r.dt.max_tid is None
    # the copies were not forwarded: the subscriber got each q packet once, in order
    seqs = [rtp.parse(p).seq for p in r.sub.rtp]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and len(seqs) == len(sent_q)
    assert q.rx.received == len(sent_q) and q.rx.packets_lost == 0
    # counted apart, by kind
    assert metric("basement_nonmedia_bytes_received_total", "rtx_copy") - before["rtx_copy"] == probe_bytes
    assert metric("basement_nonmedia_bytes_received_total", "padding") - before["padding"] == padding_bytes
    assert metric("basement_nonmedia_bytes_received_total", "rtx_repair") == before["rtx_repair"]


def test_a_retransmission_we_asked_for_is_forwarded_but_not_counted_as_media():
    r = Replay(None, remb=10_000_000)
    layer = r.rec.layers[""]
    r.media(MEDIA, 500)
    r.tick()
    lost_seq = r.seq[MEDIA]
    r.seq[MEDIA] += 1  # this one is lost on the way
    lost = vp8(MEDIA, lost_seq, r.frame, 500)
    r.tick()
    r.media(MEDIA, 500)
    assert layer.rx.missing() == [lost_seq]
    media_bytes, repairs = layer.bytes, metric("basement_nonmedia_packets_received_total", "rtx_repair")
    r.ingress.on_rtp(P.rtx(lost, 97, 1, RTX), r.now)
    assert layer.rx.missing() == [] and layer.bytes == media_bytes
    assert metric("basement_nonmedia_packets_received_total", "rtx_repair") == repairs + 1
    assert [rtp.parse(p).seq for p in r.sub.rtp] == [1000, 1002, 1001]  # the repair went on, late


# --- 2. an estimate the receiver reports contradict -----------------------------------------------


def aiortc_like(remb: int = 20_000) -> Replay:
    """A single-layer 300 kbit/s VP8 track (what an aiortc publisher sends) and a subscriber whose
    receive-side estimator reports `remb`."""
    return Replay(None, remb=remb)


def run(r: Replay, seconds: float, fraction_lost: int = 0, stalled: bool = False) -> None:
    """Media at 300 kbit/s, a receiver report every second (everything arrived, unless `stalled`:
    then its highest sequence number stays where it was)."""
    stuck = rtp.parse(r.sub.rtp[-1]).seq if stalled and r.sub.rtp else None
    for _ in range(round(seconds * FPS)):
        r.media(MEDIA, 1250)
        r.tick()
        if r.now >= r.next_report - 1e-6:
            r.next_report += 1.0
            r.report(fraction_lost, stuck)


def test_an_estimate_below_what_arrives_intact_neither_pauses_nor_thins():
    r = aiortc_like(remb=20_000)
    layer = r.rec.layers[""]
    run(r, 4)  # the first delivery measurement needs DELIVERY_WINDOW_S of reports
    assert r.dt.delivered_share == 1.0
    assert r.dt.delivered_bps == pytest.approx(300_000, rel=0.05)
    thinned = []
    for _ in range(40):  # 20 s, the estimate never moving off 20 kbit/s
        run(r, STEP)
        thinned.append(r.dt.max_tid)
    assert r.paused() == [] and not r.dt.paused and r.dt.current is layer
    assert thinned == [None] * 40
    assert LayerSelector.estimate(r.dt, r.now) == pytest.approx(layer.bitrate, rel=0.05)


def test_loss_in_the_reports_lets_the_low_estimate_pause():
    r = aiortc_like(remb=20_000)
    run(r, 4)
    assert not r.dt.paused
    run(r, 2, fraction_lost=26)  # 10 % lost: congestion, and the estimate is far below the layer
    assert r.dt.paused and [m["reason"] for m in r.paused()] == ["bandwidth"]


def test_one_lossy_report_withdraws_the_floor_for_the_loss_hold_then_it_returns():
    r = aiortc_like(remb=20_000)
    run(r, 4)
    floor = LayerSelector.estimate(r.dt, r.now)
    assert floor is not None and floor > 250_000
    r.report(26)  # one report with 10 % loss
    assert LayerSelector.estimate(r.dt, r.now) == 20_000
    r.media(MEDIA, 1250)
    r.report(0)  # a clean one right after: not clean yet
    assert LayerSelector.estimate(r.dt, r.now + LOSS_HOLD_S / 2) == 20_000
    assert LayerSelector.estimate(r.dt, r.now + LOSS_HOLD_S + 0.1) == floor


def test_a_subscriber_that_stops_receiving_gets_no_floor():
    # with nothing arriving nothing counts as lost: the reports say 0 % while the highest sequence
    # number stands still. The estimate applies again: the track is thinned (no loss: not paused)
    r = aiortc_like(remb=20_000)
    run(r, 4.5)
    assert r.dt.max_tid is None
    run(r, DELIVERY_WINDOW_S + 4, stalled=True)
    assert r.dt.delivered_share < DELIVERED_SHARE
    assert LayerSelector.estimate(r.dt, r.now) == 20_000
    assert r.dt.max_tid == 0 and not r.dt.paused


def test_the_floor_is_what_arrives_never_more_than_the_current_layer():
    # a pure function of the receiver reports' evidence
    assert delivered_floor(300_000, 1.0, 1.0, 0.0, 500_000) == 300_000
    assert delivered_floor(900_000, 1.0, 1.0, 0.0, 500_000) == 500_000  # never a reason to go up
    assert delivered_floor(300_000, 1.0, 1.0, LOSS_FREE + 0.01, 500_000) == 0  # loss: no floor
    assert delivered_floor(300_000, 1.0, 1.0, None, 500_000) == 0  # no recent report
    assert delivered_floor(300_000, DELIVERED_SHARE - 0.01, 1.0, 0.0, 500_000) == 0  # falling behind
    assert delivered_floor(300_000, 1.0, None, 0.0, 500_000) == 0  # never measured
    assert delivered_floor(300_000, 1.0, 60.0, 0.0, 500_000) == 0  # measured long ago
