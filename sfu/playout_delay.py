"""PlayoutDelay: how long a subscriber's video receiver holds frames, set by the SFU when its link loses packets.

A lost packet is only worth resending (NACK, RTX) if the frame it belongs to is still waiting when the
resent copy arrives, about a round trip later. Chromium's jitter buffer targets the network's jitter
(~10 ms on a clean link) and does not wait for a frame that later frames do not reference (a VP8
frame of the top temporal layer): it skips it. Behind 3 % loss and 80 ms of round trip it decoded
87-89 % of the frames sent, though every lost packet was resent; held for ~130 ms, 97-100 %.

So once a subscriber shows loss that retransmission repairs (NACKs: at least `NACKS` in `WINDOW_S`),
its video carries the playout-delay header extension
(http://www.webrtc.org/experiments/rtp-hdrext/playout-delay) with a minimum of `RTT_FACTOR` round
trips plus `MARGIN_MS` (at most `MAX_MIN_MS`; the round trip is the least of the last `WINDOW_S`,
so a queue that a narrowing link filled for a while does not count), which libwebrtc receivers take as the least delay
they render at. When the NACKs stop for `QUIET_S` the minimum goes back to `FLOOR_MS`: a receiver
keeps the last value it saw (one carrying no element changes nothing), and a minimum of 0 would turn
on libwebrtc's low-latency rendering mode, so the SFU never sends 0. The maximum is libwebrtc's
default, 10 s. A subscriber that never loses anything never gets the element, and one whose client
did not negotiate it (aiortc) never does either. This is LiveKit's `playout_delay`, made adaptive.

The element goes on every packet of the video SSRCs that negotiated it (not on RTX or probes): the
native Egress stamps it (`set_playout_delay`, `delay_ssrc`), the Python path here (`stamp`), before
the transport-wide number, with the same bytes (sfu/native/transport_seq.c `bs_ext_stamp`).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from sfu.metrics import STATS
from sfu.transport_seq import stamp_element

URI_PLAYOUT_DELAY = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"

NACKS = 3  # NACKs within WINDOW_S that show a link losing packets, not one stray loss
WINDOW_S = 10.0
QUIET_S = 30.0  # no NACK this long: back to FLOOR_MS
RTT_FACTOR = 1.5  # the resent copy arrives a round trip after the loss was noticed; a second try, later
MARGIN_MS = 30  # the receiver notices a gap only when the next packet comes, and the SFU answers
UNKNOWN_RTT_S = 0.1  # before the first receiver report with a round trip
FLOOR_MS = 10  # the smallest minimum there is besides 0 (10 ms units)
MAX_MIN_MS = 400  # more would be a delay people notice in a conversation
MAX_MS = 10_000  # libwebrtc's own default maximum
STEP_MS = 20  # smaller changes of the round trip leave the minimum as it is
# the least round trip of each second (receiver reports come about once a second per video SSRC,
# so a subscriber watching ten cameras gives ten a second): 16 of them span more than WINDOW_S
RTT_SAMPLES = 16


def element(min_ms: int, max_ms: int) -> bytes:
    """The extension's 3 bytes: 12 bits of minimum and 12 of maximum, in 10 ms units."""
    lo, hi = min_ms // 10, max_ms // 10
    return bytes((lo >> 4, (lo & 0x0F) << 4 | hi >> 8, hi & 0xFF))


class PlayoutDelay:
    """One subscriber transport's playout delay: the policy (`on_nack`, `on_rtt`) and what is stamped."""

    def __init__(self) -> None:
        self.xid = 0  # the negotiated one-byte id; 0: not negotiated
        self.ssrcs: set[int] = set()  # the video SSRCs whose m-line negotiated it
        self.min_ms: int | None = None  # the minimum stamped now; None: nothing is stamped
        self.changes = 0
        self.egress: Any = None  # the native Egress to keep in step (sfu.transport), or None
        self._element = b""
        self._nacks: deque[float] = deque(maxlen=NACKS)
        self._rtts: deque[tuple[float, float]] = deque(maxlen=RTT_SAMPLES)  # (when, round trip)

    def negotiated(self, xid: int, ssrc: int) -> None:
        """A video m-line's answer carries the extension under `xid`, for media SSRC `ssrc`."""
        self.xid = xid
        self.ssrcs.add(ssrc)
        self.attach(self.egress)

    def attach(self, egress: Any) -> None:
        """Stamp through `egress` (the native send side) from now on, or in `stamp` (None)."""
        self.egress = egress
        if egress is None or not self.xid:
            return
        for ssrc in self.ssrcs:
            egress.delay_ssrc(ssrc)
        if self.min_ms is not None:
            egress.set_playout_delay(self.xid, self.min_ms, MAX_MS)

    def on_nack(self, now: float) -> None:
        self._nacks.append(now)
        self._update(now)

    def on_rtt(self, rtt_s: float, now: float) -> None:
        """A receiver report's round trip (0: none measured)."""
        if rtt_s > 0:
            rtts = self._rtts
            if rtts and now - rtts[-1][0] < 1.0:
                rtts[-1] = (rtts[-1][0], min(rtts[-1][1], rtt_s))
            else:
                rtts.append((now, rtt_s))
        self._update(now)

    def rtt(self, now: float) -> float:
        """The least round trip of the last WINDOW_S (the path's, without a queue that a narrowing
        link filled for a while), or the latest older one, or 0."""
        recent = [r for t, r in self._rtts if now - t <= WINDOW_S]
        return min(recent) if recent else self._rtts[-1][1] if self._rtts else 0.0

    def _update(self, now: float) -> None:
        if not self.xid:
            return
        nacks = self._nacks
        if len(nacks) == NACKS and now - nacks[0] <= WINDOW_S:
            rtt_ms = (self.rtt(now) or UNKNOWN_RTT_S) * 1000
            target = min(MAX_MIN_MS, max(FLOOR_MS, 10 * math.ceil((RTT_FACTOR * rtt_ms + MARGIN_MS) / 10)))
        elif self.min_ms is not None and nacks and now - nacks[-1] > QUIET_S:
            target = FLOOR_MS
        else:
            return
        current = self.min_ms
        if current is not None and abs(target - current) < STEP_MS and target != FLOOR_MS:
            return
        if target == current:
            return
        self.min_ms = target
        self.changes += 1
        STATS.playout_delay_changes += 1
        self._element = element(target, MAX_MS)
        if self.egress is not None:
            self.egress.set_playout_delay(self.xid, target, MAX_MS)

    def stamp(self, data: bytes) -> bytes:
        """`data` (an RTP packet) with the element when its SSRC carries it (the Python path)."""
        if self.min_ms is None or len(data) < 12 or int.from_bytes(data[8:12], "big") not in self.ssrcs:
            return data
        return stamp_element(data, self.xid, self._element) or data
