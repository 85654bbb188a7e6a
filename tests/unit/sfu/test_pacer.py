"""The pacer's rule (sfu.pacer and its C twin, sfu/native/pacer.c): what may go when, both twins
alike, decision by decision."""

from __future__ import annotations

import random

import pytest

from sfu import _native, pacer
from sfu.pacer import BURST_S, MAX_HELD, MAX_HOLD_S, Pacer

TWINS = pytest.mark.parametrize("make", [Pacer, _native.Pacer], ids=["python", "native"])


def drain(p, now: float) -> list[int]:
    out = []
    while size := p.pop(now):
        out.append(size)
    return out


@TWINS
def test_without_a_rate_every_packet_goes_at_once(make):
    p = make()
    for _ in range(100):
        assert p.push(1.0, 1200) and p.pop(1.0) == 1200
    assert p.waiting == 0 and p.held == 0


@TWINS
def test_a_burst_goes_at_the_rate_after_the_bucket(make):
    p = make()
    p.set_rate(800_000, 10.0)  # 100,000 bytes/s: the bucket holds 2,000 bytes
    for _ in range(50):
        assert p.push(10.0, 1000)
    first = drain(p, 10.0)
    assert len(first) == 2  # two take the full bucket (the second below zero): the rest waits
    sent = len(first)
    t = 10.0
    while p.waiting:
        t += 0.005
        sent += len(drain(p, t))
        # never ahead of the rate (the bucket, plus one packet that may take it below zero)
        assert sent * 1000 <= (t - 10.0) * 100_000 + 2000 + 1000
    assert t - 10.0 == pytest.approx(48 * 1000 / 100_000, abs=0.011)  # 48 KB after the bucket: ~0.48 s
    assert p.held == 48 and p.forced == 0


@TWINS
def test_a_packet_waits_at_most_max_hold(make):
    p = make()
    p.set_rate(8_000, 0.0)  # 1,000 bytes/s: one 1,200-byte packet empties it for over a second
    p.push(0.0, 1200)
    p.push(0.0, 1200)
    assert drain(p, 0.0) == [1200]
    assert drain(p, MAX_HOLD_S - 0.001) == []
    assert drain(p, MAX_HOLD_S) == [1200]  # by the bound: it does not take tokens
    assert p.forced == 1 and p.tokens < 0


@TWINS
def test_when_the_most_wait_the_oldest_goes(make):
    p = make()
    p.set_rate(8_000, 0.0)
    p.push(0.0, 100)
    assert drain(p, 0.0) == [100]  # the bucket's 20 bytes, taken below zero
    for k in range(MAX_HELD):
        assert p.push(0.001, 100 + k)
    assert not p.push(0.001, 1)  # full: the caller pops first
    assert drain(p, 0.001) == [100]  # the oldest, by the bound
    assert p.push(0.001, 1) and p.waiting == MAX_HELD and p.forced == 1


@TWINS
def test_a_lower_rate_empties_the_bucket_to_its_new_size_and_off_lets_everything_go(make):
    p = make()
    p.set_rate(8_000_000, 0.0)
    assert p.tokens == pytest.approx(1_000_000 * BURST_S)
    p.set_rate(80_000, 1.0)
    assert p.tokens == pytest.approx(10_000 * BURST_S)
    for _ in range(10):
        p.push(1.0, 1000)
    assert len(drain(p, 1.0)) == 1
    p.set_rate(0, 1.0)
    assert len(drain(p, 1.0)) == 9 and p.rate == 0


def test_the_twins_decide_alike():
    rng = random.Random(7)
    for trial in range(200):
        a, b = Pacer(), _native.Pacer()
        now = rng.uniform(0, 1000)
        for step in range(400):
            now += rng.choice([0.0, 0.0, rng.uniform(0, 0.01), rng.uniform(0, 0.6)])
            r = rng.random()
            if r < 0.05:
                bps = rng.choice([0.0, rng.uniform(1e3, 1e7)])
                a.set_rate(bps, now)
                b.set_rate(bps, now)
            elif r < 0.6:
                size = rng.randint(1, 1500)
                assert a.push(now, size) == b.push(now, size)
            else:
                assert a.pop(now) == b.pop(now), (trial, step)
            assert (a.rate, a.tokens, a.last, a.waiting, a.held, a.forced) == \
                (b.rate, b.tokens, b.last, b.waiting, b.held, b.forced), (trial, step)


def test_the_constants_are_the_c_ones():
    p = _native.Pacer()
    p.set_rate(8.0, 0.0)
    assert p.tokens == 1.0 * pacer.BURST_S
    assert all(p.push(0.0, 1) for _ in range(MAX_HELD)) and not p.push(0.0, 1)
