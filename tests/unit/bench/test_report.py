"""bench.loadgen.report: a ramp compares at the step where it passed, not where it failed."""

from __future__ import annotations

from bench.loadgen import report


def _ramp(capacity, steps):
    return {"capacity": capacity, "steps": [{"subscribers": n, "cpu_us_per_packet": us} for n, us in steps]}


def test_the_ratio_of_two_ramps_uses_each_ones_last_passing_step():
    native = _ramp(454, [(135, 13.5), (202, 13.0), (303, 12.6), (454, 12.54)])
    janus = _ramp(135, [(135, 45.4), (202, 50.04)])  # failed at 202: loss
    ratios = report.ratios(report.ramp_summary(native), report.ramp_summary(janus))
    assert round(ratios["cpu_us_per_packet"], 3) == round(12.54 / 45.4, 3)
    assert round(ratios["capacity"], 2) == round(454 / 135, 2)


def test_a_ramp_with_no_passing_step_has_no_figures():
    summary = report.ramp_summary(_ramp(None, [(135, 80.0)]))
    assert summary == {"capacity": None}
    assert report.ratios(summary, report.ramp_summary(_ramp(135, [(135, 45.4)])))["cpu_us_per_packet"] is None
