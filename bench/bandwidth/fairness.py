"""Fairness: two Chromium subscribers behind one 1.5 Mbit/s link, then a TCP download beside them.

Both subscribers' Chromiums and the download's reader run behind one veth pair whose server side is
a token bucket (a 250 ms queue); each subscriber has its own transport and estimator. 20 s of the two
alone, then 25 s with the download (tests/support/download.py). Every 0.5 s: each subscriber's
estimate and what the SFU sent it (actual), the download's rate and the layers forwarded.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.bandwidth import common
from tests.support.browser import Browser
from tests.support.download import Download
from tests.support.netns import Link

LINK_BPS = 1_500_000
PHASES = [("alone", 20.0), ("with a download", 25.0)]
SAMPLE_S = 0.5
NAMES = ("alice", "bob")


async def run(transport_cc: bool, tmp: Path) -> list[dict[str, Any]]:
    link = Link().start()
    download = Download(link)
    pages: list[Browser] = []
    server = None
    try:
        server = await common.server(transport_cc, tmp, "fairness")
        publisher, video = await common.publish(server, "fair")
        pages.append(publisher)
        link.limit(LINK_BPS)
        watchers = [await common.watch(server, "fair", name, video, prefix=link.command()) for name in NAMES]
        pages.extend(watchers)
        for watcher in watchers:
            await watcher.wait_for("window.basement.stats().then(s => s.inbound.some(i => i.kind === 'video' "
                                   "&& i.framesDecoded > 0))", timeout=30)
        by_name = {p.name: p.id for p in server.node.peers.values()}
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        dts = {dt.subscriber_id: dt for dt in common.video_downtracks(server)}
        last = {name: common.sent_bytes(dts[by_name[name]]) for name in NAMES if by_name.get(name) in dts}
        last_t = started
        for phase, seconds in PHASES:
            if phase == "with a download":
                await download.start()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                now = time.monotonic()
                span = max(now - last_t, 1e-3)
                row: dict[str, Any] = {"t": round(now - started, 2), "link_bps": LINK_BPS, "phase": phase}
                dts = {dt.subscriber_id: dt for dt in common.video_downtracks(server)}
                for i, name in enumerate(NAMES):
                    dt = dts.get(by_name.get(name, ""))
                    sent = common.sent_bytes(dt) if dt is not None else 0
                    row[f"estimate_{i}"] = dt.estimate_bps if dt is not None else 0
                    row[f"actual_{i}"] = round((sent - last.get(name, 0)) * 8 / span)
                    row[f"layer_{i}"] = dt.current.rid if dt is not None and dt.current else None
                    prober = getattr(dt.transport, "prober", None) if dt is not None else None
                    row[f"probes_{i}"] = prober.probes if prober is not None else 0
                    last[name] = sent
                row["download_bps"] = round((download.received - last.get("download", 0)) * 8 / span)
                last["download"], last_t = download.received, now
                samples.append(row)
                await asyncio.sleep(SAMPLE_S)
        return samples
    finally:
        await download.stop()
        await common.close(pages, server, link)


def _row(mode: str, phase_name: str, seconds: float, phase: list[dict[str, Any]]) -> str:
    last = phase[len(phase) // 2:]  # the phase's second half: settled

    def mean(key: str) -> float:
        return sum(s[key] for s in last) / len(last) / 1e3

    layers = [sorted({s[f"layer_{i}"] or "-" for s in last}) for i in range(len(NAMES))]
    return (f"{mode:<12} {phase_name:<16} second half: {NAMES[0]} {mean('actual_0'):.0f}k ({'/'.join(layers[0])}), "
            f"{NAMES[1]} {mean('actual_1'):.0f}k ({'/'.join(layers[1])}), download {mean('download_bps'):.0f}k "
            f"of {LINK_BPS / 1e3:.0f}k")


def summary(mode: str, samples: list[dict[str, Any]]) -> list[str]:
    return common.phases_table(mode, samples, PHASES, _row)


def plot(results: dict[str, list[dict[str, Any]]], path: str) -> None:
    common.plot(results, path, [("estimate_0", f"{NAMES[0]}: estimate", "#3b7dd8"),
                                ("actual_0", f"{NAMES[0]}: actual (sent)", "#1f4e99"),
                                ("estimate_1", f"{NAMES[1]}: estimate", "#e07b39"),
                                ("actual_1", f"{NAMES[1]}: actual (sent)", "#a14d12"),
                                ("download_bps", "TCP download", "#2a9d5c")], ylim=2000)
