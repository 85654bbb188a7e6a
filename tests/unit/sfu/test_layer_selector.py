"""LayerSelector policy as pure functions: no network, no clock."""

from __future__ import annotations

from dataclasses import dataclass

from sfu.layers import UP_STREAK, LayerInfo, SelectorState, decide, requested_index

Q, H, F = LayerInfo(0, 150_000, 320, 180), LayerInfo(1, 500_000, 640, 360), LayerInfo(2, 1_500_000, 1280, 720)
ALL = [Q, H, F]
LOSSY = 0.05  # above LOSS_FREE (congestion), below HIGH_LOSS (no loss-driven moves of its own)


class Clock:
    t = 100.0


def run(state, estimate, requested=2, loss=None, available=ALL, times=1, step=0.5):
    """Evaluate like the selector does: every `step` seconds, applying each decision. `loss` is the
    subscriber's reported loss; None (the default) means no receiver report says anything."""
    d = None
    for _ in range(times):
        Clock.t += step
        d = decide(state, available, requested, estimate, loss, Clock.t)
        state.current = d.target
    return d


@dataclass
class L:
    index: int
    width: int = 0
    height: int = 0


def test_requested_index_from_names_sizes_and_off():
    layers = [L(0, 320, 180), L(1, 640, 360), L(2, 1280, 720)]
    assert requested_index(layers, "low", None, None) == 0
    assert requested_index(layers, "medium", None, None) == 1
    assert requested_index(layers, "high", None, None) == 2
    assert requested_index(layers, "off", None, None) is None
    assert requested_index(layers, None, 300, 170) == 0
    assert requested_index(layers, None, 600, 340) == 1
    assert requested_index(layers, None, 1920, 1080) == 2  # larger than anything: the best there is
    assert requested_index(layers, None, 0, 0) is None  # not rendered
    assert requested_index([L(0), L(1)], None, 1280, 720) == 0  # unknown sizes count as covering
    assert requested_index([L(0)], "high", None, None) == 0  # no simulcast: the only layer


def test_without_an_estimate_the_request_is_served():
    assert run(SelectorState(), None, requested=1).target == 1
    assert run(SelectorState(), None, requested=2).target == 2


def test_never_above_the_request():
    assert run(SelectorState(current=0), 10_000_000, requested=1, times=10).target == 1


def test_down_is_immediate_and_lands_on_the_best_fitting_layer():
    s = SelectorState(current=2)
    d = run(s, 600_000)
    assert (d.target, d.reason) == (1, "bandwidth")
    s = SelectorState(current=2)
    assert run(s, 200_000).target == 0


def test_up_needs_headroom_for_several_evaluations_one_layer_at_a_time():
    s = SelectorState(current=0)
    for _ in range(UP_STREAK - 1):
        assert run(s, 3_000_000).target == 0
    assert run(s, 3_000_000).target == 1
    for _ in range(UP_STREAK - 1):
        assert run(s, 3_000_000).target == 1
    assert run(s, 3_000_000).target == 2


def test_an_idle_link_is_probed_one_layer_up():
    # receive-side estimators report a little above what they receive: that is headroom, so try higher
    s = SelectorState(current=0)
    assert run(s, 200_000, times=UP_STREAK).target == 1
    # the medium layer fits the estimate it produces, so it stays
    assert run(s, 540_000, times=10).target == 1


def test_failed_probes_back_off_exponentially_instead_of_flapping():
    s = SelectorState(current=0)
    ups = []
    for _ in range(240):  # two simulated minutes at 2 evaluations per second
        before = s.current
        d = run(s, 250_000)  # enough for q (150k) with headroom, never for h (500k)
        if d.target == 1 and before == 0:
            ups.append(Clock.t)
    assert 2 <= len(ups) <= 7, ups
    gaps = [b - a for a, b in zip(ups, ups[1:])]
    assert all(b >= a for a, b in zip(gaps, gaps[1:])), gaps  # each retry waits at least as long
    assert s.current == 0 or s.current == 1


def test_loss_moves_down_even_when_the_estimate_is_high():
    s = SelectorState(current=2)
    d = run(s, 10_000_000, loss=0.2)
    assert (d.target, d.reason) == (1, "loss")


def test_thin_in_temporal_steps_then_pause_then_resume():
    s = SelectorState(current=0)
    d = run(s, 100_000)  # below the lowest layer (150k), above its temporal layers 0-1 (60 %, 90k)
    assert (d.target, d.max_tid) == (0, 1)
    d = run(s, 65_000)  # and above its base temporal layer (40 %, 60k) only
    assert (d.target, d.max_tid) == (0, 0)
    d = run(s, 40_000, loss=LOSSY)  # not even that, and the reports show loss: pause video
    assert (d.target, d.reason) == (None, "bandwidth")
    assert s.paused_for_bandwidth
    # enough with headroom for several evaluations resumes
    for _ in range(UP_STREAK - 1):
        assert run(s, 400_000).target is None
    d = run(s, 400_000)
    assert (d.target, d.reason) == (0, "recovered")
    assert not s.paused_for_bandwidth


def test_a_paused_track_retries_its_base_layer_with_growing_backoff():
    # paused, nothing flows, so a receive-side estimate stays where it fell: retry on a timer
    s = SelectorState(current=0)
    run(s, 40_000, loss=LOSSY)
    assert s.paused_for_bandwidth
    retries = []
    for _ in range(120):  # one simulated minute
        d = run(s, 40_000, loss=LOSSY)
        if d.target is not None:
            assert (d.target, d.reason, d.max_tid) == (0, "recovered", 0)
            retries.append(Clock.t)
    gaps = [round(b - a, 1) for a, b in zip(retries, retries[1:])]
    assert len(retries) >= 3 and all(b > a for a, b in zip(gaps, gaps[1:5])), gaps
    # a retry the link can carry holds
    s = SelectorState(current=0)
    run(s, 40_000, loss=LOSSY)
    while run(s, 100_000).target is None:
        pass
    assert run(s, 100_000, times=10).target == 0 and not s.paused_for_bandwidth


def test_off_pauses_without_bandwidth_flag():
    s = SelectorState(current=1)
    d = run(s, 10_000_000, requested=None)
    assert (d.target, d.reason) == (None, "off")
    assert not s.paused_for_bandwidth


def test_missing_layers_fall_back_to_what_arrives():
    # dynacast turned h and f off at the publisher: only q arrives
    assert run(SelectorState(), None, requested=2, available=[Q]).target == 0
    # only f arrives (q stalled): better something than nothing
    assert run(SelectorState(), None, requested=0, available=[F]).target == 2
    assert run(SelectorState(current=1), None, requested=2, available=[]).reason == "unavailable"


def test_raising_the_request_goes_straight_there_and_holds_while_the_estimate_ramps():
    s = SelectorState()
    assert run(s, 250_000, requested=0).target == 0
    d = run(s, 250_000, requested=2)  # enough for q with headroom, far from f: still, the user asked
    assert (d.target, d.reason) == (2, "requested")
    # a receive-side estimator ramps towards what it now receives; meanwhile the layer stays
    for estimate in (300_000, 450_000, 650_000, 900_000, 1_200_000):
        assert run(s, estimate, requested=2).target == 2
    assert run(s, 1_400_000, requested=2, times=10).target == 2  # fits now: the probe held
    assert not s.probing and s.backoff_s == 0


def test_a_raised_request_that_the_link_cannot_carry_falls_back_and_backs_off():
    s = SelectorState()
    run(s, 250_000, requested=0)
    assert run(s, 250_000, requested=2).target == 2
    d = run(s, 250_000, requested=2, times=7)  # the estimate never ramps: after the probe window, down
    assert d.target == 0 and s.backoff_s > 0 and s.retry_at > Clock.t
    # but a collapse during the probe window (below what q needed) moves down at once
    s = SelectorState()
    run(s, 250_000, requested=0)
    run(s, 250_000, requested=2)
    assert run(s, 100_000, requested=2).target == 0


def test_a_struggling_link_does_not_jump_when_the_request_rises():
    s = SelectorState()
    run(s, 10_000_000, requested=1)
    assert run(s, 420_000, requested=1).target == 1  # mild shortfall for h: look again
    assert run(s, 420_000, requested=2).target == 0  # second shortfall: down, no jump to f


def test_a_mild_shortfall_must_repeat_a_severe_one_acts_at_once():
    s = SelectorState(current=1)
    assert run(s, 420_000).target == 1  # 500k does not fit 420k * 1.15, but only just
    assert run(s, 10_000_000).target == 1  # and it recovered: no switch
    assert run(s, 420_000).target == 1
    assert run(s, 420_000).target == 0  # twice in a row: down
    s = SelectorState(current=1)
    assert run(s, 300_000).target == 0  # 300k < 70 % of 500k: at once


def test_an_estimate_alone_thins_but_never_pauses():
    # aiortc's receive-side estimator in a starved client reports a few kbit/s on an idle link; its
    # receiver reports show every packet arriving: video must keep flowing (issue 14)
    s = SelectorState(current=2)
    d = run(s, 10_000, loss=0.0)
    assert (d.target, d.reason, d.max_tid) == (0, "bandwidth", 0)
    assert not s.paused_for_bandwidth
    assert all(run(s, 6_000, loss=0.01).target == 0 for _ in range(20))
    assert run(s, 6_000, loss=None).target == 0  # no report (yet): no evidence of congestion either
    # the same estimate with loss in the reports is congestion: pause
    d = run(s, 6_000, loss=LOSSY)
    assert (d.target, d.reason) == (None, "bandwidth") and s.paused_for_bandwidth
    # a fresh start is not paused on the estimate alone
    s = SelectorState()
    assert run(s, 6_000).target == 0 and not s.paused_for_bandwidth
