"""Uplink: a Chromium publisher behind an uplink whose rate changes.

The publisher's Chromium runs behind a veth pair whose client side is a token bucket
(`Link.limit(..., uplink=True)`); a watcher on loopback asks for the top layer (with nobody
watching, dynacast would stop every layer). The uplink goes 500 kbit/s (30 s) -> no limit (20 s) ->
300 kbit/s (15 s). Every 0.5 s: the publisher's own estimate (`availableOutgoingBitrate`, from the
SFU's transport-wide feedback, or from its REMB), what its encoders aim at (allocated: the sum of
the layers' `targetBitrate`), what reaches the SFU (actual: the bytes the layers received), per
layer, and the packets lost on the way.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.bandwidth import common
from tests.support.browser import Browser
from tests.support.netns import Link

PHASES: list[tuple[int | None, float]] = [(500_000, 30.0), (None, 20.0), (300_000, 15.0)]
SAMPLE_S = 0.5


async def run(transport_cc: bool, tmp: Path) -> list[dict[str, Any]]:
    link = Link().start()
    pages: list[Browser] = []
    server = None
    try:
        server = await common.server(transport_cc, tmp, "uplink")
        link.limit(PHASES[0][0], uplink=True)
        publisher, video = await common.publish(server, "up", prefix=link.command())
        pages.append(publisher)
        pages.append(await common.watch(server, "up", "watcher", video))
        ingress = next(p.ingress for p in server.node.peers.values() if p.ingress is not None)
        layers = next(rec for rec in ingress.tracks.values() if rec.kind == "video").layers
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        last_bytes, last_t = {rid: x.bytes for rid, x in layers.items()}, started
        for rate, seconds in PHASES:
            link.limit(rate, uplink=True)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                stats = await publisher.evaluate("window.basement.stats()")
                path = stats["paths"]["publisher"] or {}
                outbound = [o for o in stats["outbound"] if o["kind"] == "video"]
                now = time.monotonic()
                span = max(now - last_t, 1e-3)
                received = {rid: round((x.bytes - last_bytes.get(rid, 0)) * 8 / span) for rid, x in layers.items()}
                last_bytes, last_t = {rid: x.bytes for rid, x in layers.items()}, now
                samples.append({
                    "t": round(now - started, 2), "link_bps": rate,
                    "estimate_bps": path.get("availableOutgoingBitrate") or 0,
                    "allocated_bps": sum(o.get("targetBitrate") or 0 for o in outbound if o.get("active", True)),
                    "actual_bps": sum(received.values()), "layers": received,
                    "lost": {rid: x.rx.packets_lost for rid, x in layers.items() if x.rx.started},
                    "packets": sum(x.packets for x in layers.values()),
                })
                await asyncio.sleep(SAMPLE_S)
        return samples
    finally:
        await common.close(pages, server, link)


def _row(mode: str, rate: int | None, seconds: float, phase: list[dict[str, Any]]) -> str:
    last = phase[len(phase) // 2:]  # the phase's second half: settled
    mean = {rid: sum(s["layers"].get(rid, 0) for s in last) / len(last) / 1e3 for rid in ("q", "h", "f")}
    # (a layer's cumulative loss can fall: a late packet counted lost arrives after all)
    lost = sum(max(0, phase[-1]["lost"].get(rid, 0) - phase[0]["lost"].get(rid, 0)) for rid in phase[-1]["lost"])
    got = phase[-1]["packets"] - phase[0]["packets"]
    estimates = [s["estimate_bps"] / 1e3 for s in last]
    return (f"{mode:<12} {'none' if rate is None else f'{rate / 1e3:.0f}k':>6}  second half: estimate "
            f"{min(estimates):.0f}-{max(estimates):.0f}k, received q {mean['q']:.0f}k h {mean['h']:.0f}k "
            f"f {mean['f']:.0f}k; lost {lost} of {lost + got} packets in the phase")


def summary(mode: str, samples: list[dict[str, Any]]) -> list[str]:
    return common.phases_table(mode, samples, PHASES, _row)


def plot(results: dict[str, list[dict[str, Any]]], path: str) -> None:
    common.plot(results, path, [("estimate_bps", "publisher's estimate", "#3b7dd8"),
                                ("allocated_bps", "allocated (its encoders' targets)", "#2a9d5c"),
                                ("actual_bps", "actual (received by the SFU)", "#e07b39")], ylim=3000)
