"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

The sender numbers every RTP packet of a transport in one sequence (the `transport-wide-cc` header
extension, two bytes); the receiver reports, per number, whether and when the packet arrived
(RTPFB, FMT 15). The sender then knows each packet's send time and arrival time and can estimate the
path itself (`sfu.estimator`), as libwebrtc, LiveKit and mediasoup do, instead of trusting the
receiver's own estimate (REMB).

Feedback layout after the RTCP header and the two SSRCs:

    base sequence number (16) | packet status count (16)
    reference time (24, signed, 64 ms units) | feedback packet count (8)
    packet chunks (16 bits each), then one receive delta per received packet, padded to 32 bits

A chunk is a run (T = 0: a 2-bit symbol and a 13-bit length) or a status vector (T = 1: fourteen
1-bit symbols, or seven 2-bit ones). Symbols: 0 not received, 1 received with a one-byte delta
(unsigned, 250 µs units), 2 received with a two-byte delta (signed), 3 reserved. Deltas are from
the previous received packet's arrival, the first one's from the reference time.

This module is sans-IO: bytes in, plain values out, and the reverse for the tests (and for a future
uplink feedback to publishers).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTPFB = 205
FMT_TWCC = 15
DELTA_US = 250
REFERENCE_US = 64_000
# A feedback may cover at most this many sequence numbers. libwebrtc reports about 100 ms of packets
# (a few hundred at most); a report this long is either forged or about packets no sender keeps.
# A run chunk describes 8,191 of them in two bytes, so without the cap one small datagram could make
# the parser walk half a million statuses.
MAX_STATUSES = 4096


class FeedbackError(ValueError):
    """A transport-wide feedback that does not parse; the message says what is wrong."""


@dataclass(frozen=True)
class Feedback:
    """One parsed feedback. `received` lists (transport sequence number, arrival in µs on the
    receiver's clock) in sequence order; numbers from `base_seq` on, `count` of them, that are not
    listed were not received (yet)."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    count: int
    reference_us: int
    feedback_count: int
    received: list[tuple[int, int]]

    @property
    def lost(self) -> int:
        return self.count - len(self.received)


def parse(packet: bytes | memoryview) -> Feedback:
    """One RTCP transport-wide feedback packet (header included). Raises FeedbackError."""
    data = bytes(packet)
    if len(data) < 20:
        raise FeedbackError(f"transport feedback of {len(data)} bytes: at least 20 are needed")
    if data[0] >> 6 != 2:
        raise FeedbackError(f"RTCP version {data[0] >> 6}, not 2")
    if data[1] != RTPFB or data[0] & 0x1F != FMT_TWCC:
        raise FeedbackError(f"not a transport-wide feedback (PT {data[1]}, FMT {data[0] & 0x1F})")
    length = (struct.unpack_from("!H", data, 2)[0] + 1) * 4
    if length > len(data):
        raise FeedbackError(f"the header says {length} bytes, the packet has {len(data)}")
    end = length
    if data[0] & 0x20:  # padding: its last byte says how much
        pad = data[end - 1]
        if pad == 0 or pad > end - 20:
            raise FeedbackError(f"padding of {pad} bytes in a {end}-byte feedback")
        end -= pad
    sender, media, base, count = struct.unpack_from("!IIHH", data, 4)
    ref_and_fb = struct.unpack_from("!I", data, 16)[0]
    reference = ref_and_fb >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    if count == 0:
        raise FeedbackError("a transport feedback reporting no packets")
    if count > MAX_STATUSES:
        raise FeedbackError(f"a transport feedback reporting {count} packets (at most {MAX_STATUSES})")

    # the chunks: (symbol, how many) runs, coalesced
    symbols: list[tuple[int, int]] = []
    i, covered = 20, 0
    while covered < count:
        if i + 2 > end:
            raise FeedbackError(f"packet chunks end after {covered} of {count} statuses")
        chunk = (data[i] << 8) | data[i + 1]
        i += 2
        if not chunk & 0x8000:  # run length
            symbol, run = (chunk >> 13) & 3, chunk & 0x1FFF
            if run == 0:
                raise FeedbackError("a run chunk of length 0")
            if symbol == 3:
                raise FeedbackError("a run of the reserved status symbol 3")
            run = min(run, count - covered)
            symbols.append((symbol, run))
            covered += run
        elif not chunk & 0x4000:  # fourteen 1-bit symbols
            for bit in range(13, -1, -1):
                if covered == count:
                    break
                symbols.append(((chunk >> bit) & 1, 1))
                covered += 1
        else:  # seven 2-bit symbols
            for shift in range(12, -1, -2):
                if covered == count:
                    break
                symbol = (chunk >> shift) & 3
                if symbol == 3:
                    raise FeedbackError("the reserved status symbol 3 in a status vector")
                symbols.append((symbol, 1))
                covered += 1

    received: list[tuple[int, int]] = []
    at = reference * REFERENCE_US
    seq = base
    for symbol, run in symbols:
        if symbol == 0:
            seq = (seq + run) & 0xFFFF
            continue
        for _ in range(run):
            if symbol == 1:
                if i + 1 > end:
                    raise FeedbackError(f"receive deltas end after {len(received)} packets")
                at += data[i] * DELTA_US
                i += 1
            else:
                if i + 2 > end:
                    raise FeedbackError(f"receive deltas end after {len(received)} packets")
                at += struct.unpack_from("!h", data, i)[0] * DELTA_US
                i += 2
            received.append((seq, at))
            seq = (seq + 1) & 0xFFFF
    if end - i > 3:
        raise FeedbackError(f"{end - i} bytes after the last receive delta")
    return Feedback(sender, media, base, count, reference * REFERENCE_US, ref_and_fb & 0xFF, received)


def build(sender_ssrc: int, media_ssrc: int, base_seq: int, reference_us: int, feedback_count: int,
          arrivals: list[int | None]) -> bytes:
    """A feedback for `arrivals[k]` = arrival (µs, receiver's clock) of sequence number base_seq + k,
    None when it was not received. The reference time is `reference_us` rounded down to 64 ms; the
    deltas are rounded to 250 µs, accumulating as a receiver's do."""
    if not arrivals or len(arrivals) > MAX_STATUSES:
        raise ValueError(f"a feedback reports 1 to {MAX_STATUSES} packets, not {len(arrivals)}")
    reference = reference_us // REFERENCE_US
    at = reference * REFERENCE_US
    statuses: list[int] = []
    deltas = bytearray()
    for arrival in arrivals:
        if arrival is None:
            statuses.append(0)
            continue
        ticks = round((arrival - at) / DELTA_US)
        if 0 <= ticks <= 0xFF:
            statuses.append(1)
            deltas.append(ticks)
        elif -0x8000 <= ticks <= 0x7FFF:
            statuses.append(2)
            deltas += struct.pack("!h", ticks)
        else:
            raise ValueError(f"an arrival {arrival - at} µs from the previous one cannot be expressed")
        at += ticks * DELTA_US
    chunks = bytearray()
    k = 0
    while k < len(statuses):
        run = 1
        while k + run < len(statuses) and statuses[k + run] == statuses[k] and run < 0x1FFF:
            run += 1
        if run >= 7:
            chunks += struct.pack("!H", (statuses[k] << 13) | run)
            k += run
            continue
        group = statuses[k:k + 7]
        chunk = 0xC000
        for n, symbol in enumerate(group):
            chunk |= symbol << (12 - 2 * n)
        chunks += struct.pack("!H", chunk)
        k += len(group)
    body = struct.pack("!IIHHI", sender_ssrc, media_ssrc, base_seq & 0xFFFF, len(arrivals),
                       ((reference & 0xFFFFFF) << 8) | (feedback_count & 0xFF)) + chunks + deltas
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!BBH", 0x80 | FMT_TWCC, RTPFB, (len(body) + 4) // 4 - 1) + body
