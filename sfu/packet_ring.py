"""PacketRing: the last RING_SIZE packets of one Layer as they arrived, kept once for every subscriber.

A subscriber's NACK is answered from here. Each DownTrack keeps, per packet it sent, only what it
needs to make that packet again: the ring and serial of the source packet and the offsets its
rewrite applied (`DownTrack.cache`). It rebuilds the packet when a NACK asks for it. LiveKit works
the same way (the packet once per published track, a `sequencer` of rewrite metadata per
subscriber).

Before, every DownTrack kept its own rewritten copy of each packet: about 1.3 MB per video
subscriber, all of it written during the first seconds of the subscription. At 450 subscribers, the
page faults of those first writes were 10 % of the native SFU's CPU.

A serial names one stored packet. `store` returns it; `get` finds the packet only while its slot
still holds that same store. So a publisher that restarts its numbering cannot hand a subscriber
another packet under a sequence number the subscriber's DownTrack remembers.

The C twin is `sfu._native.PacketRing` (sfu/native/packet_ring.c), with the same methods; the data
path picks one (`sfu.track.configure`).
"""

from __future__ import annotations

RING_SIZE = 1024  # packets; about 4 s of a 2.5 Mbps video layer
RING_MASK = RING_SIZE - 1


class PacketRing:
    """The last RING_SIZE packets of one Layer, by their sequence number, as received."""

    __slots__ = ("_slots", "stores")

    def __init__(self) -> None:
        self._slots: list[tuple[int, int, bytes] | None] | None = None  # (seq, serial, packet); made on first use
        self.stores = 0  # packets stored; also the last serial given out

    def store(self, seq: int, data: bytes) -> int:
        """Keep `data` (an RTP packet with this seq) and return its serial. The packet already in that
        slot with the same seq and bytes keeps its serial: each DownTrack's `forward` stores the packet
        it forwards, so one fan-out stores it once."""
        if len(data) > 0xFFFF:
            raise ValueError("a packet is at most 65535 bytes")
        slots = self._slots
        if slots is None:
            slots = self._slots = [None] * RING_SIZE
        seq &= 0xFFFF
        index = seq & RING_MASK
        held = slots[index]
        if held is not None and held[0] == seq and (held[2] is data or held[2] == data):
            return held[1]
        self.stores += 1
        slots[index] = (seq, self.stores, data if type(data) is bytes else bytes(data))
        return self.stores

    def get(self, seq: int, serial: int) -> bytes | None:
        """The packet `store` gave this serial, if the ring still holds it."""
        slots = self._slots
        if slots is None:
            return None
        held = slots[seq & RING_MASK]
        return held[2] if held is not None and held[1] == serial and held[0] == (seq & 0xFFFF) else None
