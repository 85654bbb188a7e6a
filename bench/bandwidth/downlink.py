"""Downlink estimation over time: a Chromium subscriber behind a link whose rate changes, with the
SFU's send-side estimate (transport-wide feedback, probes) and with the subscriber's REMB only.

    unshare -rn -- bash -c 'ip link set lo up && exec "$@"' x \\
        .venv/bin/python -m bench.bandwidth --json bw.json --plot docs/bench-bandwidth.png

The subscriber's Chromium runs in a network namespace of its own behind a veth pair whose server side
is a token bucket (tests/support/netns.py `Link.limit`); the publisher is a Chromium on loopback
sending three VP8 simulcast layers. The link goes 600 kbit/s (20 s) -> 5 Mbit/s (20 s) ->
300 kbit/s (15 s). Every 0.25 s: the link's rate, the subscriber's estimate as the SFU uses it, the
rate of the layer the SFU forwards (allocated), what the SFU sent the subscriber (actual, media and
probes), the layer and the decoded frame width and count. One run per mode (`transport_cc` on, off),
one after the other; a table of what each mode did in each phase on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from signalling import config  # noqa: E402
from signalling.ports import free_port  # noqa: E402
from signalling.run.serve import start_server  # noqa: E402
from tests.support.browser import VIDEO, Browser  # noqa: E402
from tests.support.netns import SERVER_IP, Link  # noqa: E402

PHASES = [(600_000, 20.0), (5_000_000, 20.0), (300_000, 15.0)]
SAMPLE_S = 0.25


async def _page(server: Any, room: str, name: str, prefix: list[str] | None = None, **query: str) -> Browser:
    params = {"room": room, "name": name, "autojoin": "1", "video": VIDEO, **query}
    b = Browser(f"{server.url}/?{urlencode(params)}", prefix=prefix)
    await b.start()
    await b.wait_for("!!window.basement && document.activeElement.id === 'join-button'")
    await b.click("#join-button")
    return b


async def run(transport_cc: bool, tmp: Path) -> list[dict[str, Any]]:
    link = Link().start()
    pages: list[Browser] = []
    server = None
    try:
        server = await start_server(config.load(
            env={}, port=0, metrics_port=free_port(), data_dir=str(tmp / f"data-{transport_cc}"), workers="1",
            host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"], transport_cc=transport_cc))
        publisher = await _page(server, "bw", "chromium", audio="0")
        pages.append(publisher)
        video = (await publisher.wait_for("window.basement.published.video && window.basement.published"))["video"]
        link.limit(PHASES[0][0])
        watcher = await _page(server, "bw", "watcher", prefix=link.command(), audio="0", camera="0")
        pages.append(watcher)
        await watcher.wait_for("window.basement.participant")
        await watcher.evaluate(f"window.basement.send({{type: 'subscription', track: '{video}', layer: 'high'}})")
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        last_bytes, last_t = 0, started
        for rate, seconds in PHASES:
            link.limit(rate)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                stats = await watcher.evaluate("window.basement.stats()")
                inbound = next((s for s in stats["inbound"] if s.get("kind") == "video"), {})
                dt = next((d for p in server.node.peers.values() for d in p.downtracks.values() if d.is_video), None)
                now = time.monotonic()
                sent = 0
                if dt is not None:
                    transport = dt.transport
                    sent = dt.bytes_sent + getattr(getattr(transport, "prober", None), "bytes", 0)
                actual = (sent - last_bytes) * 8 / max(now - last_t, 1e-3)
                last_bytes, last_t = sent, now
                layer = dt.current if dt is not None else None
                samples.append({
                    "t": round(now - started, 2), "link_bps": rate,
                    "estimate_bps": dt.estimate_bps if dt is not None else 0,
                    "allocated_bps": round(layer.bitrate) if layer is not None else 0,
                    "actual_bps": round(actual), "layer": layer.rid if layer is not None else None,
                    "width": inbound.get("frameWidth") or 0, "frames": inbound.get("framesDecoded") or 0,
                    "probes": getattr(getattr(dt.transport, "prober", None), "probes", 0) if dt is not None else 0,
                })
                await asyncio.sleep(SAMPLE_S)
        return samples
    finally:
        for p in pages:
            await p.close()
        if server is not None:
            await server.stop()
        link.stop()


def summary(mode: str, samples: list[dict[str, Any]]) -> list[str]:
    rows = []
    t0 = 0.0
    for rate, seconds in PHASES:
        phase = [s for s in samples if t0 <= s["t"] < t0 + seconds]
        t0 += seconds
        if not phase:
            continue
        widths = [s["width"] for s in phase]
        frames = phase[-1]["frames"] - phase[0]["frames"]
        stalls = sum(1 for a, b in zip(phase, phase[1:]) if b["frames"] == a["frames"])
        layers = {}
        for s in phase:
            layers[s["layer"]] = layers.get(s["layer"], 0) + 1
        rows.append(f"{mode:<12} {rate / 1e3:>6.0f}k  layers {dict(sorted(layers.items(), key=str))}  "
                    f"last width {widths[-1]}  fps {frames / seconds:.1f}  samples without a new frame {stalls}  "
                    f"estimate at end {phase[-1]['estimate_bps'] / 1e3:.0f}k")
    return rows


def plot(results: dict[str, list[dict[str, Any]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 3.6 * len(results)), sharex=True)
    if len(results) == 1:
        axes = [axes]
    for ax, (mode, samples) in zip(axes, results.items()):
        t = [s["t"] for s in samples]
        ax.step(t, [s["link_bps"] / 1e3 for s in samples], where="post", color="#444", label="link")
        ax.plot(t, [s["estimate_bps"] / 1e3 for s in samples], color="#3b7dd8", label="estimate")
        ax.plot(t, [s["allocated_bps"] / 1e3 for s in samples], color="#2a9d5c", label="allocated (layer's rate)")
        ax.plot(t, [s["actual_bps"] / 1e3 for s in samples], color="#e07b39", alpha=0.6, label="actual (sent)")
        ax.set_ylabel("kbit/s")
        ax.set_ylim(0, 2500)
        ax.set_title(mode)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def runs(tmp: Path, transport_cc_only: bool) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for mode, on in (("transport-cc", True), ("REMB only", False)):
        if on or not transport_cc_only:
            results[mode] = await run(on, tmp)
    return results


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the samples here")
    parser.add_argument("--plot", help="write a chart (PNG) here")
    parser.add_argument("--transport-cc-only", action="store_true", help="skip the REMB-only run")
    args = parser.parse_args(argv)
    results = asyncio.run(runs(Path(tempfile.mkdtemp(prefix="basement-bw-")), args.transport_cc_only))
    for mode, samples in results.items():
        for row in summary(mode, samples):
            print(row)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
