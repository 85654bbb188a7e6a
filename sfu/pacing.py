"""Pacing: a subscriber transport sends its video at most at `pacing_factor` x its downlink estimate.

What is paced, and at what rate (the rule itself is `sfu.pacer.Pacer`'s):

* The media of the video m-lines (their media SSRCs). Audio, RTCP, retransmissions on RTX and the
  prober's padding go at once: audio and retransmissions are what libwebrtc's pacer sends first,
  and the prober paces its padding itself (5 ms ticks).
* At `factor` x the send-side estimate (sfu.estimator, from the subscriber's transport-wide
  feedback): 1.25 by default (setting `pacing_factor`). libwebrtc paces at 2.5 x; measured here
  (`python -m bench.bandwidth --scenario keyframes`, docs/performance.md "Pacing"), 2.5 x left an
  aiortc publisher's key-frame bursts through a 25 ms queue as they were (the bucket held most of a
  key frame), while 1.25 x took ~85 % of their drops away. What it costs: a key frame takes its
  size / (1.25 x the estimate) to leave, ~50 ms for 20 KB at 2.5 Mbit/s, where a bottleneck near
  the estimate would have queued it about as long anyway.
* Without a send-side estimate nothing is paced: a receive-side REMB can read far below what
  arrives (aiortc's reads 6-33 kbit/s on an idle loopback), and a client that sends neither (the
  benchmark's subscribers) gets what arrives as it arrives.

The held packets are unprotected and unnumbered: they get their transport-wide number and SRTP when
they leave, so the numbers and their send times follow the order on the wire (the estimator reads
queueing from them). On the native path the Egress holds them (sfu/native/forward.c) and one
process-wide clock lets them go (`PaceClock`: a timer armed when an Egress starts holding, calling
`_native.pace()` every TICK_S while any holds); on the Python path `Pacing` holds them and its own
timer does. Either way nothing is sent on a timer that could go at once: a packet waits only while
the bucket is empty, so pacing costs latency only to a burst above the rate.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sfu.metrics import STATS
from sfu.pacer import Pacer

try:
    from sfu import _native
except ImportError:  # not built: the Python path only
    _native = None

TICK_S = 0.005  # how often waiting packets are looked at (libwebrtc's pacer: 5 ms)
DEFAULT_FACTOR = 1.25  # see the module docstring: libwebrtc's 2.5 left the bursts measured here alone

_factor = DEFAULT_FACTOR


def configure_pacing(factor: float) -> None:
    """Process-wide (setting `pacing_factor`): pace at `factor` x the estimate; 0 paces nothing."""
    global _factor
    if not (factor == 0 or 1.0 <= factor <= 100.0):
        raise ValueError(f"pacing_factor must be 0 (off) or 1 to 100, not {factor}")
    _factor = factor


class PaceClock:
    """The native path's timer: calls `_native.pace()` every TICK_S while an Egress holds packets."""

    def __init__(self, pace: Callable[[], int]) -> None:
        self._pace = pace
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def arm(self) -> None:
        """An Egress started holding packets (called from the native send path)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a send outside any loop (a test's): whoever sent calls pace()
            return
        if self._handle is not None and self._loop is loop and not loop.is_closed():
            return
        self._loop = loop
        self._handle = loop.call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        self._handle = None
        if self._pace() and self._loop is not None and not self._loop.is_closed():
            self._handle = self._loop.call_later(TICK_S, self._tick)


CLOCK: PaceClock | None = None
if _native is not None:
    CLOCK = PaceClock(_native.pace)
    _native.set_pace_waker(CLOCK.arm)


class Pacing:
    """One subscriber transport's pacing: its paced SSRCs, its rate, and on the Python path the
    packets waiting and their timer."""

    def __init__(self) -> None:
        self.ssrcs: set[int] = set()
        self.bps = 0.0  # the pacing rate now (0: off)
        self.egress: Any = None  # the native Egress that paces (sfu.transport), or None
        self.pacer = Pacer()  # the Python path's
        # the Python path's send, which numbers, protects and sends a packet on the pair nominated
        # now (PeerTransport sets it whenever it resolves the pair: what waits goes to the new one)
        self.send_now: Callable[[bytes], Any] | None = None
        self._packets: deque[bytes] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self.failures = 0  # packets that waited and then failed to go

    def negotiated(self, ssrc: int) -> None:
        """A video m-line's media SSRC: its packets are paced."""
        self.ssrcs.add(ssrc)
        if self.egress is not None:
            self.egress.pace_ssrc(ssrc)

    def attach(self, egress: Any) -> None:
        """Pace in `egress` (the native send side) from now on, or here (None). What waits here goes
        first (`flush`), so nothing is held in two places."""
        self.flush()
        self.egress = egress
        if egress is None:
            self.pacer.set_rate(self.bps, time.monotonic())
            return
        for ssrc in self.ssrcs:
            egress.pace_ssrc(ssrc)
        egress.set_pacing(self.bps)

    def on_estimate(self, estimate_bps: float, now: float) -> None:
        """The send-side estimate changed."""
        self.bps = _factor * estimate_bps if estimate_bps > 0 else 0.0
        if self.egress is not None:
            self.egress.set_pacing(self.bps)
        else:
            self.pacer.set_rate(self.bps, now)
            if self._packets:
                self._release(now)

    # --- the Python path -------------------------------------------------------------------
    def send(self, data: bytes, now: float) -> None:
        """Send an RTP packet through `send_now` now, or when the bucket lets it go."""
        send_now = self.send_now
        if send_now is None:
            self.failures += 1
            return
        if self.pacer.rate <= 0 or len(data) < 12 or struct.unpack_from("!I", data, 8)[0] not in self.ssrcs:
            send_now(data)
            return
        self._release(now)  # (when the most wait already, the oldest goes)
        if not self.pacer.push(now, len(data)):  # cannot happen after a release
            send_now(data)
            return
        self._packets.append(data)
        self._release(now)
        if self._packets and self._handle is None:
            try:
                self._handle = asyncio.get_running_loop().call_later(TICK_S, self._tick)
            except RuntimeError:  # no loop (a test's send): the caller ticks
                pass

    def _send(self, data: bytes) -> None:
        try:
            if self.send_now is None:
                raise ConnectionError("no path")
            self.send_now(data)
        except Exception:  # libsrtp refusal or a closed socket, as PeerTransport._send counts them
            self.failures += 1

    def _release(self, now: float) -> None:
        pacer, packets = self.pacer, self._packets
        held, forced = pacer.held, pacer.forced
        while pacer.pop(now):
            self._send(packets.popleft())
        STATS.paced += pacer.held - held
        STATS.pace_forced += pacer.forced - forced

    def _tick(self) -> None:
        self._handle = None
        self._release(time.monotonic())
        if self._packets:
            self._handle = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def flush(self) -> None:
        """Send what waits here, now, in order (the path moves to an Egress, or the other way)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        packets, self._packets = self._packets, deque()
        rate = self.pacer.rate
        self.pacer = Pacer()
        self.pacer.set_rate(rate * 8, time.monotonic())
        for data in packets:
            self._send(data)

    def close(self) -> None:
        """The transport closed: what waits is dropped."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._packets.clear()
        self.pacer = Pacer()
