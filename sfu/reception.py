"""Reception of one incoming RTP stream: sequence validation, receiver-report statistics, NACK state.

Replaces aiortc's StreamStatistics + NackGenerator, whose cost depends on what the sender chooses:
NackGenerator walks every sequence number of a gap (a 32k jump costs tens of milliseconds) and
re-scans its whole missing set on every packet. Here every packet costs O(1):

* Sequence numbers follow RFC 3550 A.1 with mediasoup's thresholds. A forward step below
  MAX_DROPOUT is loss, a packet up to MAX_MISORDER behind is late (reordered or retransmitted).
  Anything else is a jump: dropped, unless the next packet continues from it, which means the
  sender restarted its numbering, so statistics and NACK state start over (as libwebrtc and
  mediasoup do).
* The missing sequence numbers live in one integer bitmap over the NACK_WINDOW numbers behind the
  newest: a gap is a shift and an OR, a late packet clears one bit, the window is a mask. Older
  losses are forgotten — after that long a retransmission would come too late to be useful.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_DROPOUT = 3000  # forward steps at least this big are jumps, not loss
MAX_MISORDER = 1500  # packets further behind than this are jumps, not late
NACK_WINDOW = 256  # sequence numbers behind the newest whose loss is tracked and NACKed
_WINDOW_BITS = ((1 << (NACK_WINDOW + 1)) - 1) ^ 1  # bit i = newest - i is missing, i in 1..NACK_WINDOW

# what `update` found
IN_ORDER = 0  # the next sequence number
GAP = 1  # newest so far, some numbers skipped (now missing)
LATE = 2  # behind the newest: reordered, retransmitted or duplicate
JUMP = 3  # too far from the newest: not counted; drop it
RESTART = 4  # continues a jump: the sender restarted its numbering, so did we


class ReceptionReports:
    """What a receiver report says (RFC 3550 6.4.1), from a Reception's fields."""

    __slots__ = ()
    base_seq: int
    max_seq: int
    cycles: int
    received: int
    _expected_prior: int
    _received_prior: int
    _jitter_q4: int

    @property
    def started(self) -> bool:
        return self.max_seq >= 0

    @property
    def extended_max(self) -> int:
        """Extended highest sequence number received (32 bits: wraps in the upper half)."""
        return (self.cycles + self.max_seq) & 0xFFFFFFFF

    @property
    def expected(self) -> int:
        return self.cycles + self.max_seq - self.base_seq + 1

    @property
    def packets_lost(self) -> int:
        """Cumulative loss, clamped to the report's signed 24 bits (duplicates make it negative)."""
        return max(-0x800000, min(0x7FFFFF, self.expected - self.received))

    @property
    def jitter(self) -> int:
        return min(self._jitter_q4 >> 4, 0xFFFFFFFF)

    def interval_loss(self) -> int:
        """Fraction lost since the previous call, 0..255; starts the next interval."""
        expected, received = self.expected, self.received
        e = expected - self._expected_prior
        lost = e - (received - self._received_prior)
        # the fields live in the concrete class (Reception's slots, or ReceptionCore's C members)
        self._expected_prior, self._received_prior = expected, received  # type: ignore[misc]
        if e <= 0 or lost <= 0:
            return 0
        return min(255, (lost << 8) // e)


class Reception(ReceptionReports):
    """Statistics and loss of one SSRC, as an RTCP receiver report needs them (RFC 3550 6.4.1)."""

    __slots__ = ("clock_rate", "base_seq", "max_seq", "cycles", "received", "restarts", "missing_bits",
                 "_bad_seq", "_expected_prior", "_received_prior", "_jitter_q4", "_transit", "_last_ts")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.base_seq = 0
        self.max_seq = -1  # -1: no packet yet
        self.cycles = 0  # sequence wraps, times 65536
        self.received = 0
        self.restarts = 0
        self.missing_bits = 0
        self._bad_seq = -1
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter_q4 = 0
        self._transit = -1
        self._last_ts = -1

    def _start(self, seq: int) -> None:
        self.base_seq = self.max_seq = seq
        self.cycles = 0
        self.received = 1
        self.missing_bits = 0
        self._bad_seq = -1
        self._expected_prior = self._received_prior = 0
        self._transit = -1

    def update(self, seq: int, ts: int, arrival: float) -> int:
        """Account one packet (seq, RTP timestamp, arrival in seconds); returns what it was."""
        delta = (seq - self.max_seq) & 0xFFFF
        if 0 < delta < MAX_DROPOUT and self.max_seq >= 0:
            if seq < self.max_seq:
                self.cycles += 0x10000
            self.max_seq = seq
            self.received += 1
            if delta == 1:
                self.missing_bits = (self.missing_bits << 1) & _WINDOW_BITS
                result = IN_ORDER
            else:
                # bits 1..delta-1 are the numbers just skipped
                bits = (self.missing_bits << delta) | ((1 << delta) - 2) if delta <= NACK_WINDOW else _WINDOW_BITS
                self.missing_bits = bits & _WINDOW_BITS
                result = GAP
            if ts != self._last_ts:
                self._jitter(ts, arrival)
            return result
        if self.max_seq < 0:
            self._start(seq)
            self._jitter(ts, arrival)
            return IN_ORDER
        if delta == 0 or delta > 0x10000 - MAX_MISORDER:
            behind = 0x10000 - delta if delta else 0
            if 0 < behind <= NACK_WINDOW:
                self.missing_bits &= ~(1 << behind)
            self.received += 1
            return LATE
        if seq != self._bad_seq:
            self._bad_seq = (seq + 1) & 0xFFFF
            return JUMP
        self._start(seq)
        self.restarts += 1
        self._jitter(ts, arrival)
        return RESTART

    def repair(self, seq: int) -> bool:
        """An RTX copy of `seq` (RFC 4588, already unwrapped). True when `seq` is one of the missing
        numbers: a retransmission we need, counted as received like any late packet. False for a copy
        of a packet already received, or of one too old or too new to be missing: publishers probe
        bandwidth this way (Chromium and Firefox resend recent packets over RTX, 100+ packets/s with
        no NACK), and counting those as received would hide real loss from the receiver report."""
        behind = (self.max_seq - seq) & 0xFFFF
        if 0 < behind <= NACK_WINDOW and self.max_seq >= 0 and (self.missing_bits >> behind) & 1:
            self.missing_bits ^= 1 << behind
            self.received += 1
            return True
        return False

    def _jitter(self, ts: int, arrival: float) -> None:
        # RFC 3550 A.8, only across frames (packets of one frame share a timestamp and are paced,
        # which is not network jitter); 32-bit arithmetic so timestamp wraps do not read as jitter
        transit = (int(arrival * self.clock_rate) - ts) & 0xFFFFFFFF
        if self._transit >= 0:
            d = (transit - self._transit) & 0xFFFFFFFF
            if d & 0x80000000:
                d = 0x100000000 - d
            self._jitter_q4 += d - ((self._jitter_q4 + 8) >> 4)
        self._transit = transit
        self._last_ts = ts

    def missing(self) -> list[int]:
        """Sequence numbers still missing within the window, ascending (as aiortc packs NACKs)."""
        bits, newest, out = self.missing_bits, self.max_seq, []
        while bits:
            low = bits & -bits
            out.append((newest - low.bit_length() + 1) & 0xFFFF)
            bits ^= low
        out.sort()
        return out


_kind: Callable[[int], Any] = Reception


def configure(kind: Callable[[int], Any]) -> None:
    """The class `new` makes: Reception, or the native data path's (sfu.datapath)."""
    global _kind
    _kind = kind


def new(clock_rate: int) -> Any:
    """A Reception for one incoming stream, of the configured kind."""
    return _kind(clock_rate)
