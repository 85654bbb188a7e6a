"""TransportSequence: the transport-wide sequence numbers a subscriber transport stamps on what it sends.

With transport-wide congestion control negotiated (`sfu.twcc`), every RTP packet the SFU sends to a
subscriber carries the next number of one sequence per transport, in the `transport-wide-cc`
header extension, whatever its SSRC (media, RTX, probes). The subscriber reports which numbers
arrived and when; this object remembers, per number, when the packet left and how big it was, so the
report becomes (send time, size, arrival) for the estimator (`sfu.estimator`).

`stamp` is the twin of the native Egress's stamping (sfu/native/transport_seq.c, `bs_tcc_stamp`):
an element with the id already in the packet is overwritten (one of another length is blanked to
padding: a receiver would read it instead); otherwise one is added where the extension block has
padding to spare, or the block grows by a word, or a block is added. The native
path stamps in the Egress (`set_transport_seq`, `stamp_ssrc`, `sent_packet`), the Python path here; only
packets of SSRCs whose m-line negotiated the extension are stamped (a receiver ignores an element
its m-line did not negotiate, and would report the number lost).
"""

from __future__ import annotations

HISTORY = 4096  # as the native Egress's TCC_HISTORY: about 2 s of a 20 Mbit/s downlink


def stamp(data: bytes, xid: int, seq: int) -> bytes | None:
    """`data` (an RTP packet) carrying transport sequence number `seq` under one-byte id `xid`;
    None when the packet cannot carry it (truncated, or an extension profile of no RFC)."""
    return stamp_element(data, xid, bytes(((seq >> 8) & 0xFF, seq & 0xFF)))


def stamp_element(data: bytes, xid: int, value: bytes) -> bytes | None:
    """`data` (an RTP packet) carrying the header extension element `value` (1-16 bytes) under
    one-byte id `xid`; None when the packet cannot carry it (truncated, or an extension profile of
    no RFC)."""
    n, size = len(data), len(value)
    if n < 12 or not 1 <= xid <= 14 or not 1 <= size <= 16:
        return None
    hdr = 12 + 4 * (data[0] & 0x0F)
    if n < hdr:
        return None
    if not data[0] & 0x10:  # no extension block yet: add one with our element, padded to words
        words = (1 + size + 3) // 4
        out = bytearray(data[:hdr])
        out[0] |= 0x10
        block = bytes((0xBE, 0xDE, 0, words, xid << 4 | (size - 1))) + value
        return bytes(out) + block + bytes(4 + 4 * words - len(block)) + data[hdr:]
    if n < hdr + 4:
        return None
    profile = (data[hdr] << 8) | data[hdr + 1]
    start = hdr + 4
    end = start + 4 * ((data[hdr + 2] << 8) | data[hdr + 3])
    if end > n:
        return None
    two_byte = (profile & 0xFFF0) == 0x1000
    if profile != 0xBEDE and not two_byte:
        return None
    out = bytearray(data)
    i, last = start, start  # last: just after the last element
    while i < end:
        b = data[i]
        if b == 0:
            i += 1
            continue
        if two_byte:
            if i + 2 > end or i + 2 + data[i + 1] > end:
                return None
            esize, header = data[i + 1], 2
            mine = b == xid and esize == size
        else:
            if b >> 4 == 15:  # RFC 8285: stop here; what follows is not ours to overwrite
                return None
            esize, header = (b & 0x0F) + 1, 1
            if i + 1 + esize > end:
                return None
            mine = b >> 4 == xid and esize == size
        if mine:
            out[i + header:i + header + size] = value
            return bytes(out)
        if (b if two_byte else b >> 4) == xid:
            # our id with another length (a receiver would read that one): blanked to padding
            out[i:i + header + esize] = bytes(header + esize)
        else:
            last = i + header + esize
        i += header + esize
    element = bytes((xid, size)) + value if two_byte else bytes((xid << 4 | (size - 1),)) + value
    if end - last >= len(element):  # fits in the block's padding
        out[last:last + len(element)] = element
        return bytes(out)
    grow = (len(element) - (end - last) + 3) // 4 * 4
    grown = out[:end] + bytes(grow)
    words = (end + grow - start) // 4
    grown[hdr + 2], grown[hdr + 3] = words >> 8, words & 0xFF
    grown[last:last + len(element)] = element
    return bytes(grown + out[end:])


class TransportSequence:
    """One transport's stamping configuration and, on the Python data path, its numbering and
    send history. The native Egress keeps its own numbering and history once it exists."""

    def __init__(self) -> None:
        self.xid = 0  # the negotiated one-byte id; 0: transport-wide CC not negotiated
        self.ssrcs: set[int] = set()  # SSRCs whose m-line negotiated it
        self.next = 0
        self.unstamped = 0  # packets of those SSRCs that could not carry a number
        self._history: list[tuple[int, float, int] | None] = [None] * HISTORY  # (seq, sent at, bytes)

    def stamp(self, data: bytes, now: float) -> bytes:
        if not self.xid or len(data) < 12 or int.from_bytes(data[8:12], "big") not in self.ssrcs:
            return data
        seq = self.next
        out = stamp(data, self.xid, seq)
        if out is None:
            self.unstamped += 1
            return data
        self.next = (seq + 1) & 0xFFFF
        self._history[seq % HISTORY] = (seq, now, len(out))
        return out

    def sent_packet(self, seq: int) -> tuple[float, int] | None:
        """(send time, bytes) of the packet numbered `seq`, None when it is not (or no longer) known."""
        entry = self._history[seq % HISTORY]
        if entry is None or entry[0] != seq:
            return None
        return entry[1], entry[2]
