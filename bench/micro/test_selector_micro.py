"""Micro-benchmark of the LayerSelector (`make bench`): what one evaluation of every video DownTrack of
a room costs. It runs every `interval` (0.5 s) for every room, so at N subscribers per track it is a
per-subscriber cost that does not depend on the packet rate."""

from __future__ import annotations

import time

from bench.micro.conftest import BATCH_SUBSCRIBERS
from sfu.layers import LayerSelector


def test_layer_selector_evaluate(benchmark, rig_factory):
    """LayerSelector.evaluate over one VP8 track with BATCH_SUBSCRIBERS subscribers, each with a REMB:
    time per call / BATCH_SUBSCRIBERS = µs per DownTrack evaluated."""
    rig = rig_factory(BATCH_SUBSCRIBERS, path="native")
    for p in rig.batch(50):  # the layer is arriving, with a rate
        rig.ingress.on_rtp(p, time.monotonic())
    selector = LayerSelector()
    selector.tracks = lambda: [rig.rec]
    for dt in rig.rec.downtracks:
        dt.on_estimate(3_000_000, ())
    clock = [time.monotonic()]

    def run():
        clock[0] += 0.5
        selector.evaluate(clock[0])

    benchmark.extra_info["downtracks"] = BATCH_SUBSCRIBERS
    benchmark(run)
    # every subscriber keeps the one layer, unpaused: the evaluation decided, and decided alike
    assert all(dt.target is rig.layer and not dt.paused for dt in rig.rec.downtracks)
