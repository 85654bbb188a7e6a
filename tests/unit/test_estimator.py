"""The send-side estimator (sfu.estimator) against an emulated bottleneck (tests/support/bottleneck.py):
it finds the link's rate from transport-wide feedback, falls fast when the link narrows, rises when it
widens, and does not mistake random loss or an idle link for congestion."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sfu.estimator import REDUCE_INTERVAL_S, SendSideEstimator
from tests.support.bottleneck import Bottleneck

PACKET = 1200
FPS = 30
FEEDBACK_S = 0.1


class Run:
    """A sender of video-like traffic (a frame's packets back to back, FPS frames a second) through
    `link`, with a receiver reporting every FEEDBACK_S what arrived, as transport-wide feedback does."""

    def __init__(self, link: Bottleneck, estimator: SendSideEstimator | None = None) -> None:
        self.link = link
        self.estimator = estimator or SendSideEstimator()
        self.t = 0.0
        self.sent: list[tuple[float, int, float | None]] = []  # (send, size, arrival)
        self.reported = 0
        self.estimates: list[tuple[float, float | None]] = []

    def go(self, seconds: float, rate: Callable[[float], float]) -> None:
        end = self.t + seconds
        next_frame, next_feedback = self.t, self.t + FEEDBACK_S
        while self.t < end:
            if next_frame <= next_feedback:
                self.t = next_frame
                frame = rate(self.t) / 8 / FPS
                while frame > 0:
                    size = int(min(PACKET, max(frame, 100)))
                    self.sent.append((self.t, size, self.link.send(self.t, size)))
                    frame -= size
                next_frame += 1 / FPS
            else:
                self.t = next_feedback
                self._feedback()
                next_feedback += FEEDBACK_S

    def _feedback(self) -> None:
        # everything up to the last packet that has arrived by now is reported; the rest waits
        last = None
        for k in range(self.reported, len(self.sent)):
            arrival = self.sent[k][2]
            if arrival is not None and arrival <= self.t:
                last = k
        if last is None:
            return
        batch = self.sent[self.reported:last + 1]
        self.reported = last + 1
        self.estimator.on_packets(self.t, [(s, n, None if a is None else int(a * 1e6)) for s, n, a in batch])
        self.estimates.append((self.t, self.estimator.estimate_bps))

    def estimate(self) -> float:
        value = self.estimator.estimate_bps
        assert value is not None
        return value


def test_sending_more_than_the_link_carries_brings_the_estimate_to_the_link_rate():
    run = Run(Bottleneck(600_000))
    run.go(3.0, lambda t: 1_500_000)
    assert 300_000 <= run.estimate() <= 620_000
    assert run.estimator.overuses > 0


def test_what_arrives_without_queue_or_loss_is_never_undercut_and_the_estimate_grows_above_it():
    run = Run(Bottleneck(5_000_000))
    run.go(6.0, lambda t: 500_000)
    # at least what is received, and room to try more (1.5 x acknowledged is the ceiling)
    assert 500_000 * 1.1 <= run.estimate() <= 500_000 * 1.7
    assert run.estimator.overuses == 0


def test_a_narrowing_link_is_followed_within_two_seconds():
    link = Bottleneck(5_000_000)
    run = Run(link)
    run.go(4.0, lambda t: 1_500_000)
    assert run.estimate() >= 1_500_000
    link.rate_bps = 300_000
    start = run.t
    run.go(4.0, lambda t: 1_500_000)
    fell = next(t for t, e in run.estimates if t > start and e is not None and e <= 330_000)
    assert fell - start <= 2.0


def test_random_loss_below_ten_percent_does_not_drag_the_estimate_down():
    run = Run(Bottleneck(5_000_000, loss=0.03, seed=7))
    run.go(6.0, lambda t: 1_000_000)
    assert run.estimate() >= 1_000_000 * 0.95
    assert run.estimator.overuses == 0


def test_heavy_loss_lowers_the_estimate_below_what_is_sent():
    run = Run(Bottleneck(50_000_000, loss=0.3, seed=3))
    run.go(5.0, lambda t: 1_000_000)
    assert run.estimate() < 1_000_000 * 0.8


def test_it_starts_at_the_start_rate_and_is_lifted_by_what_arrives():
    run = Run(Bottleneck(50_000_000))
    assert run.estimator.estimate_bps == 300_000  # before anything is measured (START_BPS)
    run.go(3.0, lambda t: 1_200_000)
    assert run.estimate() >= 1_200_000  # what arrived without a queue or loss


def test_a_probe_beyond_the_link_leaves_the_estimate_near_the_link_rate():
    # 200 kbit/s of media over a 600 kbit/s link, then half a second at 1.2 Mbit/s (a probe's
    # padding on top): the queue the probe builds shows the link's rate, and the estimate lands just
    # below it, not at what was acknowledged before the probe
    run = Run(Bottleneck(600_000, queue_bytes=20_000))
    run.go(3.0, lambda t: 200_000)
    run.go(0.5, lambda t: 1_200_000)
    run.go(1.5, lambda t: 200_000)
    assert run.estimator.overuses > 0
    assert 600_000 * 0.7 <= run.estimate() <= 620_000


def test_while_an_overuse_lasts_it_decreases_at_most_every_reduce_interval_unless_arrivals_halve():
    # An SFU cuts its rate at once (a layer down), so what is acknowledged falls right after each
    # decrease while the queue left behind still reads as over-use: a decrease at every feedback
    # compounded (260 -> 55 kbit/s in 0.6 s beside a TCP download). Feedback every 50 ms here.
    estimator = SendSideEstimator()
    estimator.delay_bps, estimator.state = 1_000_000, "overusing"
    acked = [800_000.0]
    estimator.acked_bps = lambda window=0.5: acked[0]  # type: ignore[method-assign]
    decreases = []
    for k in range(20):
        now = 10.0 + 0.05 * k
        before = estimator.delay_bps
        estimator._rate_control(acked[0], 0.05, now)
        if estimator.delay_bps < before:
            decreases.append(round(now - 10.0, 2))
        acked[0] *= 0.97  # what arrives follows each cut down
    gaps = [b - a for a, b in zip(decreases, decreases[1:])]
    assert len(decreases) >= 4, decreases
    assert all(REDUCE_INTERVAL_S - 1e-6 <= g <= REDUCE_INTERVAL_S + 0.05 for g in gaps), decreases
    # what arrives fell below half the estimate: that goes at once (the link is much narrower)
    acked[0] = 0.4 * estimator.delay_bps
    estimator._rate_control(acked[0], 0.05, 10.0 + 0.85)
    assert estimator.delay_bps == pytest.approx(0.85 * acked[0])
