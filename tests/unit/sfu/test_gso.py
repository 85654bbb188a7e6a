"""sfu.gso: which queued datagrams leave as one segmented UDP send. `runs` and its C twin
`_native.gso_runs` (what an Egress flush uses) must split every queue the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from sfu import _native, gso

TWINS = {"python": gso.runs, "native": _native.gso_runs}


@pytest.fixture(params=sorted(TWINS))
def runs(request: pytest.FixtureRequest) -> Callable[[Sequence[int]], list[int]]:
    return TWINS[request.param]


@pytest.mark.parametrize(("lengths", "expected"), [
    ([], []),
    ([1200], [1]),
    ([1200, 1200, 1200], [3]),
    ([1200, 1200, 1200, 700], [4]),             # a frame: the last packet shorter ends the run
    ([1200, 1200, 700, 700], [3, 1]),           # only one shorter one: the kernel's last segment
    ([1200, 1200, 1201, 1201], [2, 2]),         # a longer one starts a run of its own
    ([90, 1200, 1200, 90, 90], [1, 3, 1]),      # audio between video: order is kept
    ([1187, 1187, 1186, 1186, 1186], [3, 2]),   # a packetizer's nearly equal split
], ids=str)
def test_runs_are_equal_lengths_with_an_optional_shorter_last(
        runs: Callable[[Sequence[int]], list[int]], lengths: list[int], expected: list[int]) -> None:
    assert runs(lengths) == expected
    assert sum(expected) == len(lengths)


def test_a_run_holds_at_most_the_kernels_segments_and_bytes(runs: Callable[[Sequence[int]], list[int]]) -> None:
    assert runs([100] * 130) == [64, 64, 2]
    per_run = gso.MAX_BYTES // 1500  # 40 datagrams of 1,500 bytes
    assert runs([1500] * 100) == [per_run, per_run, 100 - 2 * per_run]
    assert runs([1500] * per_run + [10]) == [per_run, 1]  # the shorter last would cross the byte bound


def test_the_c_twin_refuses_what_is_not_a_length() -> None:
    with pytest.raises(TypeError):
        _native.gso_runs(None)
    with pytest.raises(ValueError, match="negative"):
        _native.gso_runs([1, -1])
