"""Prober: padding that tests whether a subscriber's downlink carries more before a layer goes up.

A send-side estimate (sfu.estimator) only grows from what is acknowledged, and the SFU sends a
subscriber only the layers it forwards: without more traffic the estimate could never show that a
higher layer fits. Switching up to find out (what the selector does for a receive-side REMB) costs
a freeze when the answer is no: a 1.5 Mbit/s layer on a 600 kbit/s link is seconds of loss. So, as
libwebrtc's ProbeController and LiveKit's StreamAllocator do, the SFU first sends padding on top of
the media, up to the rate the next layer needs, for a short while. If the path carries it without a
queue building or loss, the estimator's floor (what arrives is at least the estimate) lifts the
estimate to the probed rate and the layer fits; if not, the overuse that the probe causes sets the
estimate from what did arrive (0.85 of it), which is the link's rate, and the layer stays.

Padding goes on a video m-line's RTX stream (padding-only RTX packets, as libwebrtc sends them),
numbered in that stream's sequence (`DownTrack.rtx_seq`, shared with NACK answers) and paced in
5 ms ticks, so a probe is a rate, not a burst. Every padding packet carries a transport-wide number
(the transport stamps it); receivers drop padding after counting it. Padding never counts as a
layer's media rate: that is measured at the publisher's ingress.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import Any

from sfu.metrics import STATS

TICK_S = 0.005
PADDING = 255  # padding bytes per packet: the most one RTP padding count can say
PACKET = 12 + PADDING


def padding_packet(rtx_pt: int, seq: int, timestamp: int, ssrc: int) -> bytes:
    """A padding-only RTP packet (P set, no payload): PADDING bytes whose last one says how many."""
    return struct.pack("!BBHII", 0xA0, rtx_pt & 0x7F, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + bytes(
        PADDING - 1) + bytes((PADDING,))


class Prober:
    """One subscriber transport's probes: at most one at a time."""

    def __init__(self, send_rtp: Callable[[bytes], bool]) -> None:
        self.send_rtp = send_rtp
        self.task: asyncio.Task[None] | None = None
        self.probes = 0
        self.packets = 0
        self.bytes = 0
        self.goal_bps = 0.0  # the rate of padding the probe running (or the last one) adds
        self.ended_at = 0.0

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self, downtrack: Any, padding_bps: float, seconds: float) -> bool:
        """Add `padding_bps` of padding on `downtrack`'s RTX stream for `seconds`. False when a probe
        is running already or the DownTrack has no RTX negotiated."""
        slot = downtrack.slot
        if self.running or slot is None or not slot.rtx_pt or not slot.rtx_ssrc or padding_bps <= 0:
            return False
        self.probes += 1
        self.goal_bps = padding_bps
        self.task = asyncio.ensure_future(self._run(downtrack, padding_bps, seconds))
        return True

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self, downtrack: Any, padding_bps: float, seconds: float) -> None:
        slot = downtrack.slot
        start = last = time.monotonic()
        owed = 0.0  # bytes of padding due and not sent yet
        try:
            while last - start < seconds:
                await asyncio.sleep(TICK_S)
                now = time.monotonic()
                owed += padding_bps / 8 * (now - last)
                last = now
                while owed >= PACKET:
                    downtrack.rtx_seq = (downtrack.rtx_seq + 1) & 0xFFFF
                    if not self.send_rtp(padding_packet(slot.rtx_pt, downtrack.rtx_seq, downtrack.last_ts,
                                                        slot.rtx_ssrc)):
                        return  # the path is not up: nothing to learn
                    owed -= PACKET
                    self.packets += 1
                    self.bytes += PACKET
                    STATS.probe_packets += 1
                    STATS.probe_bytes += PACKET
        finally:
            self.ended_at = time.monotonic()
