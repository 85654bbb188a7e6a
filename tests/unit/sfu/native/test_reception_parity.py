"""The C ReceptionCore against sfu.reception.Reception, in lockstep: the same packets (and RTX repairs)
must give the same result and leave the same fields, NACK list and report values after every step.

Seeded scenarios mix in-order runs, loss bursts (small, and wider than the NACK window), reordering,
duplicates, repairs of missing and of received numbers, 16-bit wraps, jumps that are dropped and
jumps that turn out to be restarts, timestamps that wrap, and receiver-report intervals.
"""

from __future__ import annotations

import random

import pytest

from sfu import datapath, reception

FIELDS = ("clock_rate", "base_seq", "max_seq", "cycles", "received", "restarts", "missing_bits", "_bad_seq",
          "_expected_prior", "_received_prior", "_jitter_q4", "_transit", "_last_ts")
REPORT = ("started", "extended_max", "expected", "packets_lost", "jitter")


@pytest.fixture(autouse=True, params=["both"])
def data_path(request: pytest.FixtureRequest) -> str:
    """Overrides the per-path parametrisation of tests/unit/sfu: these tests use both classes at once."""
    return request.param


def _state(rx) -> tuple:
    return tuple(getattr(rx, f) for f in FIELDS) + tuple(getattr(rx, f) for f in REPORT) + (rx.missing(),)


def _steps(r: random.Random, n: int):
    seq, ts, now = r.randrange(65536), r.randrange(1 << 32), r.uniform(0, 1e5)
    for _ in range(n):
        op = r.random()
        now += r.uniform(0, 0.05)
        if op < 0.55:  # the next packet, sometimes a new frame
            seq = (seq + 1) & 0xFFFF
            if r.random() < 0.3:
                ts = (ts + 3000) & 0xFFFFFFFF
            yield "update", seq, ts, now
        elif op < 0.7:  # a loss burst
            seq = (seq + r.choice([2, 3, 10, 100, 255, 256, 257, 400, 2999, 3000])) & 0xFFFF
            ts = (ts + 3000) & 0xFFFFFFFF
            yield "update", seq, ts, now
        elif op < 0.8:  # late: reordered, duplicate, or far behind
            yield "update", (seq - r.choice([0, 1, 2, 5, 200, 256, 257, 1499, 1500, 1501])) & 0xFFFF, ts, now
        elif op < 0.9:  # an RTX repair, of a missing number or not
            yield "repair", (seq - r.randrange(0, 300)) & 0xFFFF, 0, 0.0
        elif op < 0.95:  # a jump: a lone packet far away, or a restart (the next one continues it)
            far = (seq + r.randrange(3000, 64536)) & 0xFFFF
            yield "update", far, r.randrange(1 << 32), now
            if r.random() < 0.5:
                seq = (far + 1) & 0xFFFF
                ts = r.randrange(1 << 32)
                yield "update", seq, ts, now
        else:
            yield "interval_loss", 0, 0, 0.0


def test_lockstep_with_the_python_reception():
    results: set = set()
    for seed in range(20):
        r = random.Random(seed)
        clock = r.choice([48000, 90000])
        py, c = reception.Reception(clock), datapath.NativeReception(clock)
        for i, (op, a, b, t) in enumerate(_steps(r, 3000)):
            if op == "update":
                got, expected = c.update(a, b, t), py.update(a, b, t)
            elif op == "repair":
                got, expected = c.repair(a), py.repair(a)
            else:
                got, expected = c.interval_loss(), py.interval_loss()
            assert got == expected, (seed, i, op, a, b, t)
            assert _state(c) == _state(py), (seed, i, op, a, b, t)
            results.add((op, expected))
    # every outcome happened: each update result, useful and useless repairs, loss reported
    assert {("update", k) for k in range(5)} <= results, results
    assert {("repair", True), ("repair", False)} <= results
    assert any(op == "interval_loss" and v > 0 for op, v in results)


def test_refuses_out_of_range_input_and_keeps_its_window_bits():
    c = datapath.NativeReception(90000)
    for bad in [(-1, 0, 0.0), (65536, 0, 0.0), (0, 1 << 32, 0.0), (0, 0, float("nan")), (0, 0, float("inf")),
                (0, 0, 1e9)]:
        with pytest.raises(ValueError):
            c.update(*bad)
    with pytest.raises(ValueError):
        datapath.NativeReception(0)
    c.update(10, 0, 1.0)
    c.update(20, 0, 1.1)
    assert c.missing() == list(range(11, 20))
    for extra in (1 << 300, 1 << 258, 1 << 257, 1):  # only bits 1..256 exist
        c.missing_bits = extra | (1 << 3) | (1 << 256)
        assert c.missing_bits == (1 << 3) | (1 << 256)
        assert c.missing() == [17, (20 - 256) & 0xFFFF]  # ascending, as Reception.missing sorts
    with pytest.raises(ValueError):
        c.missing_bits = -1
    with pytest.raises(AttributeError):
        c.clock_rate = 1  # fixed at construction (the jitter bound depends on it)
    # any int repairs as in Python: only its low 16 bits count
    c, py = datapath.NativeReception(90000), reception.Reception(90000)
    for rx in (c, py):
        rx.update(10, 0, 1.0)
        rx.update(30, 0, 1.2)
    assert c.repair(25 + (1 << 70)) is py.repair(25 + (1 << 70)) is True
    assert c.repair(-65516) is py.repair(-65516) is True  # -65516 & 0xFFFF == 20
    assert c.missing() == py.missing()
    # made without __init__: not started, as a fresh Reception
    bare = datapath.NativeReception.__new__(datapath.NativeReception)
    assert (bare.max_seq, bare.started, bare.missing()) == (-1, False, [])
