"""Transport-wide sequence numbers (sfu.transport_seq and its C twin in sfu/native/transport_seq.c,
stamped by the native Egress): every packet of a stamped SSRC leaves with the next number, readable
under the negotiated id, its payload untouched; both twins write the same bytes, and the Egress and
the Python path number, remember and skip alike."""

from __future__ import annotations

import random
import socket
import struct

import pytest
from sfu._native import Egress, SrtpSession

from sfu import _native, rtp, transport_seq
from sfu.transport_seq import TransportSequence
from tests.unit.sfu.native.test_srtp import GCM128, key_for

XID = 4


def packet(ext: bytes | None = None, payload: bytes = b"\x10payload", csrcs: int = 0, padding: int = 0,
           ssrc: int = 0x1234, seq: int = 7) -> bytes:
    first = 0x80 | csrcs | (0x10 if ext is not None else 0) | (0x20 if padding else 0)
    out = struct.pack("!BBHII", first, 96, seq, 9000, ssrc) + bytes(4 * csrcs)
    if ext is not None:
        out += ext
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes((padding,))
    return out


def one_byte(*elements: bytes, pad: int = 0) -> bytes:
    body = b"".join(elements) + bytes(pad)
    body += bytes(-len(body) % 4)
    return b"\xbe\xde" + struct.pack("!H", len(body) // 4) + body


def carried(data: bytes) -> tuple[int | None, bytes]:
    """(transport sequence number under XID, payload without padding) as a receiver reads them."""
    view = rtp.parse(data)
    value = rtp.extension(data, view, XID)
    return (None if value is None else int.from_bytes(value, "big")), data[view.payload_start:view.payload_end]


CASES = {
    "no extension block": packet(),
    "a block with room in its padding": packet(one_byte(b"\x10\xaa", pad=3)),
    "a full block": packet(one_byte(b"\x32\xaa\xbb\xcc")),
    "an element with our id already": packet(one_byte(b"\x41\xff\xff")),
    "our id with another length (blanked)": packet(one_byte(b"\x42\xaa\xbb\xcc", b"\x10\x01")),
    "CSRCs and RTP padding": packet(one_byte(b"\x10\xaa"), csrcs=2, padding=20),
    "the two-byte form": packet(b"\x10\x00\x00\x01" + b"\x07\x01\xaa\x00"),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("stamp", [transport_seq.stamp, _native.transport_seq_stamp], ids=["python", "native"])
def test_the_number_is_readable_and_the_payload_intact(name, stamp):
    data = CASES[name]
    out = stamp(data, XID, 0xBEEF)
    assert out is not None
    number, payload = carried(out)
    assert number == 0xBEEF
    assert payload == carried(data)[1]
    assert len(out) - len(data) in (0, 4, 8)
    if name == "a block with room in its padding" or name == "an element with our id already":
        assert len(out) == len(data)  # nothing moves


@pytest.mark.parametrize("stamp", [transport_seq.stamp, _native.transport_seq_stamp], ids=["python", "native"])
def test_what_cannot_carry_a_number_is_refused(stamp):
    assert stamp(b"\x80\x60\x00", XID, 1) is None  # truncated
    assert stamp(packet(b"\x12\x34\x00\x01abcd"), XID, 1) is None  # a profile of no RFC
    assert stamp(packet(one_byte(b"\xf0")), XID, 1) is None  # RFC 8285's id 15: stop
    assert stamp(packet(), 15, 1) is None and stamp(packet(), 0, 1) is None  # not a one-byte id


def random_packet(rng: random.Random) -> bytes:
    """A packet with or without an extension block (of either form, or no RFC's), CSRCs, padding,
    sometimes cut short."""
    ext = None
    if rng.random() < 0.7:
        words = rng.randint(0, 4)
        body = rng.choice([bytes(4 * words), rng.randbytes(4 * words)])
        ext = struct.pack("!HH", rng.choice([0xBEDE, 0xBEDE, 0x1000, 0x1234]), words) + body
    data = packet(ext, rng.randbytes(rng.randint(0, 40)), rng.randint(0, 2), rng.choice([0, 0, 5]))
    if rng.random() < 0.1:
        data = data[:rng.randint(0, len(data))]
    return data


def test_the_twins_write_the_same_bytes():
    rng = random.Random(5)
    for _ in range(20_000):
        data = random_packet(rng)
        xid, seq = rng.randint(0, 15), rng.randint(0, 0xFFFF)
        assert transport_seq.stamp(data, xid, seq) == _native.transport_seq_stamp(data, xid, seq), (data.hex(), xid)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("stamp", [transport_seq.stamp_element, _native.ext_stamp], ids=["python", "native"])
@pytest.mark.parametrize("value", [b"\x01", b"\x00\xa3\xe8", bytes(range(1, 6)), bytes(range(1, 17))],
                         ids=["1 byte", "3 bytes (a playout delay)", "5 bytes", "16 bytes"])
def test_an_element_of_any_size_is_readable_and_the_payload_intact(name, stamp, value):
    data = CASES[name]
    out = stamp(data, XID, value)
    assert out is not None
    view = rtp.parse(out)
    assert rtp.extension(out, view, XID) == value
    assert out[view.payload_start:view.payload_end] == carried(data)[1]
    assert (len(out) - len(data)) % 4 == 0
    assert stamp(out, XID, value) == out  # stamped again: overwritten in place


def test_the_twins_write_the_same_bytes_for_elements_of_any_size():
    rng = random.Random(8)
    for _ in range(20_000):
        data = random_packet(rng)
        xid, value = rng.randint(0, 15), rng.randbytes(rng.randint(0, 17))
        assert transport_seq.stamp_element(data, xid, value) == _native.ext_stamp(data, xid, value), \
            (data.hex(), xid, value.hex())


class _Native:
    """An Egress to a socket of the test's: what it sends, unprotected, is what a subscriber reads."""

    def __init__(self) -> None:
        key = key_for(GCM128, seed=3)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.egress = Egress(self.tx.fileno(), self.rx.getsockname(), GCM128, key)
        self.receiver = SrtpSession(GCM128, key, True)

    def configure(self, xid: int, next_seq: int, ssrcs: list[int]) -> None:
        self.egress.set_transport_seq(xid, next_seq)
        for ssrc in ssrcs:
            self.egress.stamp_ssrc(ssrc)

    def send(self, data: bytes) -> bytes:
        assert self.egress.send_rtp(data)
        return self.receiver.unprotect(self.rx.recv(2048))

    def sent_packet(self, seq: int):
        return self.egress.sent_packet(seq)

    def close(self) -> None:
        self.egress.close()
        self.rx.close()
        self.tx.close()


class _Python:
    """The Python path: PeerTransport's send stamps with its TransportSequence before protecting."""

    def __init__(self) -> None:
        self.sequence = TransportSequence()

    def configure(self, xid: int, next_seq: int, ssrcs: list[int]) -> None:
        self.sequence.xid, self.sequence.next = xid, next_seq
        self.sequence.ssrcs.update(ssrcs)

    def send(self, data: bytes) -> bytes:
        return self.sequence.stamp(data, 1.0)

    def sent_packet(self, seq: int):
        return self.sequence.sent_packet(seq)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("side", [_Native, _Python], ids=["egress", "python"])
def test_a_transport_numbers_its_stamped_ssrcs_in_one_sequence_and_remembers_each(side):
    s = side()
    try:
        s.configure(XID, 0xFFFE, [0x1234, 0x5678])
        sent = [packet(ssrc=0x1234, seq=1), packet(ssrc=0x5678), packet(ssrc=0x9ABC), packet(ssrc=0x1234, seq=2)]
        got = [carried(s.send(p))[0] for p in sent]
        assert got == [0xFFFE, 0xFFFF, None, 0]  # one sequence across SSRCs, wrapping; others untouched
        size = len(sent[0]) + 8
        assert [s.sent_packet(n)[1] for n in (0xFFFE, 0xFFFF, 0)] == [size, size, size]
        assert s.sent_packet(1) is None and s.sent_packet(0xFFFD) is None  # never sent
        for seq in range(3, 3 + transport_seq.HISTORY):
            s.send(packet(ssrc=0x1234, seq=seq))
        assert s.sent_packet(0) is None  # forgotten: a whole history later
    finally:
        s.close()
