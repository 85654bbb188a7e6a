"""PacketRing (sfu/packet_ring.py) and its C twin: a Layer's packets as received, kept once for every
subscriber's NACKs. Each test runs on both data paths (tests/unit/sfu/conftest.py)."""

from __future__ import annotations

import pytest

from sfu import datapath
from sfu.packet_ring import RING_SIZE, PacketRing


@pytest.fixture
def ring(data_path: str):
    return datapath._native.PacketRing() if data_path == "native" else PacketRing()


def test_a_stored_packet_is_found_by_its_seq_and_serial_only(ring) -> None:
    serial = ring.store(7, b"\x80\x60\x00\x07packet")
    assert ring.get(7, serial) == b"\x80\x60\x00\x07packet"
    assert ring.get(7, serial + 1) is None and ring.get(7 + RING_SIZE, serial) is None
    assert ring.get(8, serial) is None and ring.stores == 1


def test_the_same_packet_stored_again_keeps_its_serial_and_another_one_takes_its_place(ring) -> None:
    # one fan-out stores its packet once per DownTrack (the Python path): it is one store
    first = ring.store(7, b"same")
    assert ring.store(7, bytes(bytearray(b"same"))) == first  # (equal, not the same object) and ring.stores == 1
    # another packet with that number (a publisher that started over): the old serial finds nothing
    second = ring.store(7, b"other")
    assert second != first and ring.get(7, first) is None and ring.get(7, second) == b"other"
    assert ring.stores == 2


def test_a_lap_of_the_ring_later_the_slot_holds_the_newer_packet(ring) -> None:
    serials = {seq: ring.store(seq, (seq & 0xFFFF).to_bytes(2, "big") * (seq % 700))
               for seq in range(65000, 65000 + 1500)}
    # numbers wrap at 16 bits: 65536 is 0
    for seq, serial in serials.items():
        kept = seq >= 65000 + 1500 - RING_SIZE
        assert (ring.get(seq & 0xFFFF, serial) is not None) == kept, seq
        if kept:
            assert ring.get(seq, serial) == (seq & 0xFFFF).to_bytes(2, "big") * (seq % 700)
    assert ring.stores == 1500


def test_a_packet_larger_than_a_datagram_is_refused(ring) -> None:
    with pytest.raises(ValueError, match="65535"):
        ring.store(1, bytes(65536))
    assert ring.stores == 0 and ring.get(1, 1) is None
