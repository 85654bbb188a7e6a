"""Loss and delay: a Chromium subscriber behind 3 % random loss each way and 80 ms of round trip.

The link is tests/support/impaired_link.py (a relay between two TUN devices: this kernel has no
netem), with no rate limit: the loss is random, not congestion. 40 s; every 0.5 s: the estimate, the
rate of the layer forwarded (allocated), what the SFU sent (actual), the frames the publisher sent
of the top layer and the frames the subscriber decoded, its NACKs and PLIs, and the playout delay
the SFU set (sfu.playout_delay).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.bandwidth import common
from tests.support.browser import Browser
from tests.support.impaired_link import ImpairedLink

LOSS, DELAY_MS = 0.03, 40.0
PHASES = [("3 % loss, 80 ms", 40.0)]
SAMPLE_S = 0.5


async def run(transport_cc: bool, tmp: Path) -> list[dict[str, Any]]:
    link = ImpairedLink(loss=LOSS, delay_ms=DELAY_MS).start()
    pages: list[Browser] = []
    server = None
    try:
        server = await common.server(transport_cc, tmp, "loss")
        publisher, video = await common.publish(server, "lossy")
        pages.append(publisher)
        watcher = await common.watch(server, "lossy", "watcher", video, prefix=link.command())
        pages.append(watcher)
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        sender = common.Sender(server, started)
        end = started + PHASES[0][1]
        while time.monotonic() < end:
            inbound = await common.inbound_video(watcher)
            stats = await publisher.evaluate("window.basement.stats()")
            top = next((o for o in stats["outbound"] if o["kind"] == "video" and o["rid"] == "f"), {})
            dt, row = sender.sample()
            samples.append({
                **row, "link_bps": None,
                "sent_frames": top.get("framesSent") or 0, "frames": inbound.get("framesDecoded") or 0,
                "nacks": inbound.get("nackCount") or 0, "plis": inbound.get("pliCount") or 0,
                "playout_delay_ms": dt.transport.playout_delay.min_ms if dt is not None else None,
            })
            await asyncio.sleep(SAMPLE_S)
        return samples
    finally:
        print(f"link: {await common.close(pages, server, link)}")


def _row(mode: str, name: str, seconds: float, phase: list[dict[str, Any]]) -> str:
    last = [s for s in phase if s["t"] >= phase[-1]["t"] - 20]  # the last 20 s
    sent = last[-1]["sent_frames"] - last[0]["sent_frames"]
    decoded = last[-1]["frames"] - last[0]["frames"]
    layers: dict[Any, int] = {}
    for s in last:
        layers[s["layer"]] = layers.get(s["layer"], 0) + 1
    return (f"{mode:<12} {name}: last 20 s: layers {dict(sorted(layers.items(), key=str))}, decoded {decoded} of "
            f"{sent} frames sent ({decoded / max(sent, 1):.1%}), NACKs {last[-1]['nacks'] - last[0]['nacks']}, "
            f"PLIs {last[-1]['plis'] - last[0]['plis']}, playout delay {last[-1]['playout_delay_ms']} ms, "
            f"estimate at end {last[-1]['estimate_bps'] / 1e3:.0f}k")


def summary(mode: str, samples: list[dict[str, Any]]) -> list[str]:
    return common.phases_table(mode, samples, PHASES, _row)


def plot(results: dict[str, list[dict[str, Any]]], path: str) -> None:
    common.plot(results, path, [("estimate_bps", "estimate", "#3b7dd8"),
                                ("allocated_bps", "allocated (layer's rate)", "#2a9d5c"),
                                ("actual_bps", "actual (sent)", "#e07b39")], link=None)
