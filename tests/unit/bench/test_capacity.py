"""When a ramp step fails (bench.loadgen.scenario.capacity_reached)."""

from __future__ import annotations

from bench.loadgen.scenario import capacity_reached


def _step(**kw):
    return {"loss_pct": 0.0, "sfu_cpu_pct": 50.0, "generator_cpu_pct": 50.0, "streams": 2000, "stalled_streams": 0,
            **kw}


def test_a_step_passes_when_everything_arrives_and_no_cpu_is_saturated():
    assert capacity_reached(_step()) is None
    assert capacity_reached(_step(stalled_streams=20)) is None  # 1 %: within the tolerance loss has too


def test_streams_that_stop_arriving_fail_a_step_that_shows_no_loss():
    # N = 2,277 on 2026-12-05: no loss in the streams that arrived, but video reached few subscribers
    why = capacity_reached(_step(stalled_streams=1500))
    assert why == "1500 of 2000 streams got nothing in the window"


def test_a_stall_says_what_the_sfu_had_paused():
    stalled = _step(stalled_streams=1500)
    assert capacity_reached({**stalled, "sfu_paused_downtracks": {"bandwidth": 700, "no_layer": 3}}) == (
        "1500 of 2000 streams got nothing in the window; the SFU had paused 700 (bandwidth), 3 (no_layer)")
    assert capacity_reached({**stalled, "sfu_paused_downtracks": {}}) == (
        "1500 of 2000 streams got nothing in the window; the SFU had paused none")


def test_a_stall_says_which_connections_the_sfu_saw_end_and_who_left():
    stalled = {**_step(stalled_streams=1500), "sfu_paused_downtracks": {},
               "sfu_transports_ended": {"subscriber/consent_expired": 40, "publisher/closed": 0},
               "sfu_left": {"disconnected": 700}}
    assert capacity_reached(stalled) == (
        "1500 of 2000 streams got nothing in the window; the SFU had paused none; so far 40 connections "
        "ended (subscriber/consent_expired), 700 participants left (disconnected)")


def test_loss_and_saturation_fail_a_step():
    assert capacity_reached(_step(loss_pct=1.5)) == "loss > 1 %"
    assert capacity_reached(_step(sfu_cpu_pct=96.0)) == "SFU CPU >= 95 % of one core"
    assert "generator" in capacity_reached(_step(generator_cpu_pct=97.0))
    assert capacity_reached(_step(loss_pct=None)) == "no packets received in the measurement window"
