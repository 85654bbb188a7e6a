"""TransportArrivals: what a publisher transport's transport-wide sequence numbers say arrived, and when.

With transport-wide congestion control negotiated on a publisher's m-lines, every packet the
publisher sends carries the next number of one sequence per transport (the `transport-wide-cc`
extension). The SFU notes each number's arrival time here (the Ingress, per packet: in C on the
native path, `_native.TransportArrivals`, this class's twin) and, every `FEEDBACK_INTERVAL_S`, tells
the publisher which numbers arrived when (`feedback`: RTPFB FMT 15, sfu.twcc). The publisher's own
send-side estimator (libwebrtc's GCC) then sets its encoders' rates: the uplink's congestion control
is the browser's, from our feedback, as with LiveKit and mediasoup.

Bounded: the numbers are held in a ring of RING entries; a jump of more than MAX_GAP numbers is a
new start (nothing before it is reported), and a number below the first not yet reported (late, or
reported already as lost) is counted (`late`) and not reported again.
"""

from __future__ import annotations

import math
from typing import Protocol

from sfu import twcc

RING = 8192  # numbers held: 0.8 s at 10,000 packets/s, eight feedback intervals of a busy publisher
MAX_GAP = 1000  # a jump further than this ahead of the highest number is a restart, not loss
# numbers per feedback packet: with two-byte deltas about 950 bytes, well within a path's MTU
MAX_PER_FEEDBACK = 400
FEEDBACK_INTERVAL_S = 0.1  # libwebrtc's receivers send feedback every 50-250 ms, 100 ms by default
# a publisher that negotiated the extension but has numbered nothing this long (aiortc: it offers
# the extension and numbers nothing) is looked at once a second, not ten times
FEEDBACK_IDLE_AFTER_S = 5.0
FEEDBACK_IDLE_S = 1.0


class Arrivals(Protocol):
    """What the Ingress and `feedback` use of a TransportArrivals or its C twin."""

    @property
    def base(self) -> int: ...

    @property
    def high(self) -> int: ...

    @property
    def late(self) -> int: ...

    def add(self, seq: int, arrival: float) -> None: ...

    def take(self, limit: int = MAX_PER_FEEDBACK) -> tuple[int, list[int | None]] | None: ...


class TransportArrivals:
    """The Python twin of `_native.TransportArrivals` (sfu/native/transport_arrivals.c)."""

    __slots__ = ("_seqs", "_times", "base", "high", "late")

    def __init__(self) -> None:
        self._seqs = [-1] * RING  # the unwrapped number each slot holds the arrival of
        self._times = [0] * RING  # its arrival, µs
        self.base = -1  # the first unwrapped number not reported yet; -1: nothing arrived
        self.high = -1  # the highest unwrapped number arrived
        self.late = 0  # arrivals below `base`: late, or already reported

    def add(self, seq: int, arrival: float) -> None:
        """Number `seq` (16 bits) arrived at `arrival` (seconds)."""
        if not 0 <= seq <= 0xFFFF or not -1e9 < arrival < 1e9:
            raise ValueError("add(seq, arrival): seq is 16 bits, arrival within +-1e9 s")
        if self.high < 0:
            unwrapped = self.base = seq
        else:
            unwrapped = self.high + ((seq - self.high + 0x8000) & 0xFFFF) - 0x8000
            if unwrapped - self.high > MAX_GAP:
                self.base = unwrapped  # a restart: the numbers skipped were never sent
        if unwrapped < self.base:
            self.late += 1
            return
        if unwrapped > self.high:
            self.high = unwrapped
            if unwrapped - self.base >= RING:
                self.base = unwrapped - RING + 1  # the oldest unreported ones are no longer held
        slot = unwrapped & (RING - 1)
        self._seqs[slot] = unwrapped
        self._times[slot] = math.floor(arrival * 1e6 + 0.5)  # (to the nearest µs, as the C twin)

    def take(self, limit: int = MAX_PER_FEEDBACK) -> tuple[int, list[int | None]] | None:
        """The next numbers not reported yet, at most `limit` from `base`: (the first of them,
        [arrival µs, or None when it did not arrive]); None when there are none. They count as
        reported from now on."""
        if self.base < 0 or self.high < self.base or limit < 1:
            return None
        end = min(self.high + 1, self.base + limit)
        seqs, times = self._seqs, self._times
        out: list[int | None] = []
        for n in range(self.base, end):
            slot = n & (RING - 1)
            out.append(times[slot] if seqs[slot] == n else None)
        first, self.base = self.base, end
        return first, out


def feedback(arrivals: Arrivals, sender_ssrc: int, media_ssrc: int, count: int) -> tuple[list[bytes], int]:
    """The feedback packets reporting what arrived since the last ones, and the next feedback count.

    A stretch in which nothing arrived is not reported: a feedback's reference time is that of a
    packet that arrived. `arrivals` is a TransportArrivals or its C twin."""
    packets: list[bytes] = []
    while (piece := arrivals.take(MAX_PER_FEEDBACK)) is not None:
        first, times = piece
        reference = next((t for t in times if t is not None), None)
        if reference is None:
            continue
        try:
            packets.append(twcc.build(sender_ssrc, media_ssrc, first & 0xFFFF, reference, count, times))
        except ValueError:  # arrivals further apart than a delta can say (±8 s): a clock jump
            continue
        count = (count + 1) & 0xFF
    return packets, count
