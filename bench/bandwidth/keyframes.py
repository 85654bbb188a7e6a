"""Key frames through a shallow queue: a Chromium subscriber behind 3 Mbit/s whose bottleneck holds
only QUEUE_MS of it, watching an aiortc publisher (960x540 VP8, ~1.5 Mbit/s) of which a key frame is
asked for every KEYFRAME_S, with the SFU's pacing (sfu.pacing) off and on in alternating phases of
one run.

aiortc, like GStreamer's webrtcbin and most gateways, sends a frame's packets back to back, so a key
frame (~20 KB here) reaches the SFU as one burst and is forwarded as it arrives; what does not fit
in the bottleneck's queue is dropped (`Link.dropped`: the token bucket's count), NACKed and resent.
Paced, it waits in the SFU and reaches the queue at pacing_factor x the estimate. (A Chromium
publisher paces its own key frames at 2.5 x its estimate, so they arrive spread out already.)
Every 0.5 s: the drops at the bottleneck, the subscriber's lost packets, NACKs, PLIs, key frames
and frames decoded, the packets that waited for the pacer, the estimate and the layer.

Without a send-side estimate (the REMB-only run) nothing is paced, so its phases are alike.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.bandwidth import common
from sfu import _native, pacing
from tests.support.aiortc_bot import Bot
from tests.support.browser import Browser
from tests.support.netns import Link

LINK_BPS = 3_000_000
QUEUE_MS = 25
KEYFRAME_S = 2.0
PHASE_S = 20.0
PHASES = [("unpaced", PHASE_S), ("paced", PHASE_S), ("unpaced", PHASE_S), ("paced", PHASE_S)]
SAMPLE_S = 0.5


async def run(transport_cc: bool, tmp: Path) -> list[dict[str, Any]]:
    link = Link().start()
    pages: list[Browser] = []
    server = None
    bot = None
    try:
        server = await common.server(transport_cc, tmp, "keyframes")
        bot = await Bot.start(server.url, "keys", "aiortc", 960, 540)
        video = bot.published["video"]
        link.limit(LINK_BPS, queue_ms=QUEUE_MS)
        watcher = await common.watch(server, "keys", "watcher", video, prefix=link.command())
        pages.append(watcher)
        await watcher.wait_for("window.basement.stats().then(s => s.inbound.some(i => i.kind === 'video' "
                               "&& i.framesDecoded > 0))", timeout=30)
        await asyncio.sleep(10)  # the estimate and the layer settle
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        sender = common.Sender(server, started)
        next_key = started
        for name, seconds in PHASES:
            pacing.configure_pacing(pacing.DEFAULT_FACTOR if name == "paced" else 0)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                dt, row = sender.sample()
                if time.monotonic() >= next_key and dt is not None and dt.current is not None:
                    dt.track.request_keyframe(dt.current.rid, "bench")
                    next_key += KEYFRAME_S
                inbound = await common.inbound_video(watcher)
                samples.append({
                    **row, "phase": name, "link_bps": LINK_BPS, "dropped": link.dropped(),
                    "lost": inbound.get("packetsLost") or 0, "nacks": inbound.get("nackCount") or 0,
                    "plis": inbound.get("pliCount") or 0, "frames": inbound.get("framesDecoded") or 0,
                    "keyframes": inbound.get("keyFramesDecoded") or 0,
                    "paced": _native.pace_state()[0],
                    "pacing_bps": dt.transport.pacing.bps if dt is not None else 0,
                })
                await asyncio.sleep(SAMPLE_S)
        return samples
    finally:
        pacing.configure_pacing(pacing.DEFAULT_FACTOR)
        if bot is not None:
            await bot.stop()
        print(f"link: {await common.close(pages, server, link)}")


def _row(mode: str, name: str, seconds: float, phase: list[dict[str, Any]]) -> str:
    def delta(key: str) -> int:
        return phase[-1][key] - phase[0][key]

    layers: dict[Any, int] = {}
    for s in phase:
        layers[s["layer"]] = layers.get(s["layer"], 0) + 1
    return (f"{mode:<12} {name:<8} {seconds:.0f} s: dropped at the bottleneck {delta('dropped')}, lost "
            f"{delta('lost')}, NACKs {delta('nacks')}, PLIs {delta('plis')}, key frames decoded "
            f"{delta('keyframes')}, frames decoded {delta('frames')}, paced packets {delta('paced')}, "
            f"layers {dict(sorted(layers.items(), key=str))}, estimate at end {phase[-1]['estimate_bps'] / 1e3:.0f}k")


def summary(mode: str, samples: list[dict[str, Any]]) -> list[str]:
    return common.phases_table(mode, samples, PHASES, _row)


def plot(results: dict[str, list[dict[str, Any]]], path: str) -> None:
    """One panel per mode: packets dropped at the bottleneck and packets that waited for the pacer,
    each summed from the start of the run, over the phases (the paced ones shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 3.2 * len(results)), sharex=True)
    if len(results) == 1:
        axes = [axes]
    for ax, (mode, samples) in zip(axes, results.items()):
        t = [s["t"] for s in samples]
        t0 = 0.0
        for name, seconds in PHASES:
            if name == "paced":
                ax.axvspan(t0, t0 + seconds, color="#3b7dd8", alpha=0.08)
            t0 += seconds
        for key, label, colour in (("dropped", "dropped at the bottleneck", "#d8453b"),
                                   ("lost", "lost (the subscriber's count)", "#e07b39"),
                                   ("paced", "waited for the pacer", "#3b7dd8")):
            ax.plot(t, [s[key] - samples[0][key] for s in samples], color=colour, label=label)
        ax.set_ylabel("packets since the start")
        ax.set_title(f"{mode}: unpaced / paced (shaded) phases, a key frame every {KEYFRAME_S:.0f} s")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
