"""Downlink: a Chromium subscriber behind a link whose rate changes.

The subscriber's Chromium runs in a network namespace of its own behind a veth pair whose server side
is a token bucket (tests/support/netns.py `Link.limit`); the publisher is a Chromium on loopback
sending three VP8 simulcast layers. The link goes 600 kbit/s (20 s) -> 5 Mbit/s (20 s) ->
300 kbit/s (15 s). Every 0.25 s: the link's rate, the subscriber's estimate as the SFU uses it, the
rate of the layer the SFU forwards (allocated), what the SFU sent the subscriber (actual, media and
probes), the layer and the decoded frame width and count.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.bandwidth import common
from tests.support.browser import Browser
from tests.support.netns import Link

PHASES = [(600_000, 20.0), (5_000_000, 20.0), (300_000, 15.0)]
SAMPLE_S = 0.25


async def run(transport_cc: bool, tmp: Path) -> list[dict[str, Any]]:
    link = Link().start()
    pages: list[Browser] = []
    server = None
    try:
        server = await common.server(transport_cc, tmp, "downlink")
        publisher, video = await common.publish(server, "bw")
        pages.append(publisher)
        link.limit(PHASES[0][0])
        watcher = await common.watch(server, "bw", "watcher", video, prefix=link.command())
        pages.append(watcher)
        samples: list[dict[str, Any]] = []
        sender = common.Sender(server, time.monotonic())
        for rate, seconds in PHASES:
            link.limit(rate)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                inbound = await common.inbound_video(watcher)
                dt, row = sender.sample()
                samples.append({
                    **row, "link_bps": rate,
                    "width": inbound.get("frameWidth") or 0, "frames": inbound.get("framesDecoded") or 0,
                    "probes": getattr(getattr(dt.transport, "prober", None), "probes", 0) if dt is not None else 0,
                })
                await asyncio.sleep(SAMPLE_S)
        return samples
    finally:
        await common.close(pages, server, link)


def _row(mode: str, rate: int, seconds: float, phase: list[dict[str, Any]]) -> str:
    frames = phase[-1]["frames"] - phase[0]["frames"]
    stalls = sum(1 for a, b in zip(phase, phase[1:]) if b["frames"] == a["frames"])
    layers: dict[Any, int] = {}
    for s in phase:
        layers[s["layer"]] = layers.get(s["layer"], 0) + 1
    return (f"{mode:<12} {rate / 1e3:>6.0f}k  layers {dict(sorted(layers.items(), key=str))}  "
            f"last width {phase[-1]['width']}  fps {frames / seconds:.1f}  samples without a new frame {stalls}  "
            f"estimate at end {phase[-1]['estimate_bps'] / 1e3:.0f}k")


def summary(mode: str, samples: list[dict[str, Any]]) -> list[str]:
    return common.phases_table(mode, samples, PHASES, _row)


def plot(results: dict[str, list[dict[str, Any]]], path: str) -> None:
    common.plot(results, path, [("estimate_bps", "estimate", "#3b7dd8"),
                                ("allocated_bps", "allocated (layer's rate)", "#2a9d5c"),
                                ("actual_bps", "actual (sent)", "#e07b39")])
