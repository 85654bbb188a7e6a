"""free_port: below the ephemeral range, never the same port twice, and in its own slice when
processes pick side by side (BASEMENT_PORT_SLICE)."""

from __future__ import annotations

import pytest

from signalling import ports


def test_two_slices_are_disjoint_and_cover_the_range(monkeypatch):
    monkeypatch.delenv("BASEMENT_PORT_SLICE", raising=False)
    whole = ports._range()
    monkeypatch.setenv("BASEMENT_PORT_SLICE", "0/2")
    first = ports._range()
    monkeypatch.setenv("BASEMENT_PORT_SLICE", "1/2")
    second = ports._range()
    assert whole[0] == first[0] and first[1] == second[0] and second[1] <= whole[1] <= second[1] + 1
    assert whole[1] <= ports._ephemeral_floor()
    picked = [ports.free_port() for _ in range(50)]
    assert all(second[0] <= p < second[1] for p in picked)
    assert len(set(picked)) == len(picked)


@pytest.mark.parametrize("value", ["2/2", "x", "1", "-1/2"])
def test_a_bad_slice_is_named(monkeypatch, value):
    monkeypatch.setenv("BASEMENT_PORT_SLICE", value)
    with pytest.raises(ValueError, match="BASEMENT_PORT_SLICE"):
        ports.free_port()
