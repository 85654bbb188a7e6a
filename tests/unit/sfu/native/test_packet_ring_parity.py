"""The C PacketRing against sfu/packet_ring.py: the same stores keep and lose the same packets."""

from __future__ import annotations

import random

import pytest

from sfu import _native
from sfu.packet_ring import PacketRing


@pytest.fixture(autouse=True, params=["both"])
def data_path(request: pytest.FixtureRequest) -> str:
    """Overrides the per-path parametrisation of tests/unit/sfu: this test uses both twins at once."""
    return request.param


def test_both_rings_keep_and_lose_the_same_packets() -> None:
    r = random.Random(5)
    rings = (PacketRing(), _native.PacketRing())
    remembered: list[tuple[int, int, int]] = []  # (seq, serial in the Python ring, in the C ring)
    for _ in range(20000):
        seq = r.randrange(3000) if r.random() < 0.9 else r.choice([0, 0xFFFF, 1024, 2048])
        data = bytes([r.randrange(4)]) * r.choice([0, 1, 12, 127, 128, 129, 1200])
        serials = [ring.store(seq, data) for ring in rings]
        remembered.append((seq, *serials))
        seq, py_serial, c_serial = r.choice(remembered)
        assert rings[0].get(seq, py_serial) == rings[1].get(seq, c_serial)
    assert rings[0].stores == rings[1].stores
