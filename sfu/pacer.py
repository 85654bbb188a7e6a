"""Pacer: a token bucket and the packets waiting for it, so that a burst leaves at a rate, not at once.

Why: the SFU forwards a packet as soon as it arrives, so what a subscriber is sent has the shape of
what the publisher sent. A key frame is several times a delta frame, and a publisher on a fast
uplink paces it at 2.5 x its own estimate (libwebrtc's pacing factor): it reaches a subscriber
behind 1.5 Mbit/s as a burst of tens of packets, and a link with a shallow buffer (a policer, a
small router queue) drops what does not fit; the losses are NACKed and resent, into the same link.
libwebrtc paces what it sends at 2.5 x its estimate for that reason, and the SFU paces each
subscriber transport (`sfu.pacing` decides what is paced and at what rate).

The rule, kept sans-IO (the caller passes the time and does the sending): a packet may go while the
bucket holds tokens (the bucket fills at `rate` and holds BURST_S of it; a packet may take it below
zero, as libwebrtc's interval budget allows, so a packet never waits for tokens it could not fill),
in the order packets came. Two bounds make a wrong rate cost latency, never packets or memory: a
packet that waited MAX_HOLD_S, or the oldest of MAX_HELD waiting, goes at once (`forced`, which does
not take tokens). A rate of 0 paces nothing.

Twin: sfu/native/pacer.c is the same rule in C, for the native Egress. Both compute every double in
the same order, and the tests and `fuzz_native` compare them decision by decision.
"""

from __future__ import annotations

from collections import deque

BURST_S = 0.02  # the bucket holds 20 ms at the rate: a delta frame passes, a key frame is spread
MAX_HOLD_S = 0.5  # a packet waits at most this long
MAX_HELD = 512  # and at most this many packets wait (then the oldest goes)


class Pacer:
    """One transport's bucket and its waiting packets, by size (the caller keeps the packets)."""

    def __init__(self) -> None:
        self.rate = 0.0  # bytes per second; 0: nothing waits
        self.tokens = 0.0  # bytes that may go now (below 0: owed)
        self.last = 0.0  # when the bucket was last filled
        self._waiting: deque[tuple[float, int]] = deque()  # (when pushed, size), oldest first
        self.held = 0  # packets that waited before they went
        self.forced = 0  # of those, the ones that went by a bound, not by tokens

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def set_rate(self, bps: float, now: float) -> None:
        """Pace at `bps` bits per second from now (0: off). A bucket switched on starts full."""
        self._fill(now)
        off = self.rate <= 0
        self.rate = bps / 8 if bps > 0 else 0.0
        if off:
            self.tokens = self.rate * BURST_S
            self.last = now
        elif self.tokens > self.rate * BURST_S:
            self.tokens = self.rate * BURST_S

    def _fill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(self.tokens + (now - self.last) * self.rate, self.rate * BURST_S)
            self.last = now

    def push(self, now: float, size: int) -> bool:
        """A packet of `size` bytes waits, behind the others. False when MAX_HELD wait already (pop
        first: it lets the oldest go)."""
        if len(self._waiting) >= MAX_HELD:
            return False
        self._waiting.append((now, size))
        return True

    def pop(self, now: float) -> int:
        """The size of the oldest waiting packet if it may go now (it no longer waits), else 0."""
        if not self._waiting:
            return 0
        at, size = self._waiting[0]
        if self.rate > 0:
            self._fill(now)
            if self.tokens > 0:
                self.tokens -= size
            elif now - at >= MAX_HOLD_S or len(self._waiting) >= MAX_HELD:
                self.forced += 1
            else:
                return 0
        self._waiting.popleft()
        if now > at:
            self.held += 1
        return size
