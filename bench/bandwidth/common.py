"""What the scenarios share: the server, the pages, the phases' tables and the plots."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from signalling import config
from signalling.ports import free_port
from signalling.run.serve import start_server
from tests.support.browser import VIDEO, Browser
from tests.support.netns import SERVER_IP

MODES = (("transport-cc", True), ("REMB only", False))


async def server(transport_cc: bool, tmp: Path, name: str) -> Any:
    """An all-in-one server on SERVER_IP (and loopback, for the publisher)."""
    return await start_server(config.load(
        env={}, port=0, metrics_port=free_port(), data_dir=str(tmp / f"data-{name}-{transport_cc}"), workers="1",
        host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"], transport_cc=transport_cc))


async def page(server: Any, room: str, name: str, prefix: list[str] | None = None, **query: str) -> Browser:
    params = {"room": room, "name": name, "autojoin": "1", "video": VIDEO, **query}
    b = Browser(f"{server.url}/?{urlencode(params)}", prefix=prefix)
    await b.start()
    await b.wait_for("!!window.basement && document.activeElement.id === 'join-button'")
    await b.click("#join-button")
    return b


async def publish(server: Any, room: str, prefix: list[str] | None = None) -> tuple[Browser, str]:
    """A Chromium publishing three VP8 layers; (its page, its video track's id)."""
    publisher = await page(server, room, "chromium", prefix=prefix, audio="0")
    video = (await publisher.wait_for("window.basement.published.video && window.basement.published"))["video"]
    return publisher, video


async def watch(server: Any, room: str, name: str, video: str, prefix: list[str] | None = None) -> Browser:
    """A Chromium subscriber asking for `video`'s top layer."""
    watcher = await page(server, room, name, prefix=prefix, audio="0", camera="0")
    await watcher.wait_for("window.basement.participant")
    await watcher.evaluate(f"window.basement.send({{type: 'subscription', track: '{video}', layer: 'high'}})")
    return watcher


async def inbound_video(watcher: Browser) -> dict[str, Any]:
    stats = await watcher.evaluate("window.basement.stats()")
    return next((s for s in stats["inbound"] if s.get("kind") == "video"), {})


def video_downtracks(server: Any) -> list[Any]:
    return [d for p in server.node.peers.values() for d in p.downtracks.values() if d.is_video]


def sent_bytes(dt: Any) -> int:
    """What the SFU sent a DownTrack's subscriber for it: media, and the probes of its transport."""
    return dt.bytes_sent + getattr(getattr(dt.transport, "prober", None), "bytes", 0)


class Sender:
    """The SFU's side of one subscriber's video: each `sample()` is its estimate, the rate of the
    layer forwarded (allocated), what was sent since the last sample (actual) and the layer."""

    def __init__(self, server: Any, started: float) -> None:
        self.server, self.started = server, started
        self.last_bytes, self.last_t = 0, started

    def sample(self) -> tuple[Any, dict[str, Any]]:
        """(the DownTrack or None, the sample's fields)."""
        dt = next(iter(video_downtracks(self.server)), None)
        now = time.monotonic()
        sent = sent_bytes(dt) if dt is not None else 0
        actual = (sent - self.last_bytes) * 8 / max(now - self.last_t, 1e-3)
        self.last_bytes, self.last_t = sent, now
        layer = dt.current if dt is not None else None
        return dt, {"t": round(now - self.started, 2), "estimate_bps": dt.estimate_bps if dt is not None else 0,
                    "allocated_bps": round(layer.bitrate) if layer is not None else 0,
                    "actual_bps": round(actual), "layer": layer.rid if layer is not None else None}


async def close(pages: list[Browser], server: Any, link: Any) -> str:
    """End a run: its pages, its server, then its link (what the link reports, if anything)."""
    for p in pages:
        await p.close()
    if server is not None:
        await server.stop()
    return link.stop() or ""


def phases_table(mode: str, samples: list[dict[str, Any]], phases: Sequence[tuple[Any, float]],
                 row: Callable[[str, Any, float, list[dict[str, Any]]], str]) -> list[str]:
    """One line per phase: `row(mode, the phase's link, its length, its samples)`."""
    out, t0 = [], 0.0
    for link, seconds in phases:
        phase = [s for s in samples if t0 <= s["t"] < t0 + seconds]
        t0 += seconds
        if phase:
            out.append(row(mode, link, seconds, phase))
    return out


def plot(results: dict[str, list[dict[str, Any]]], path: str, lines: Sequence[tuple[str, str, str]],
         ylim: float = 2500, link: str | None = "link_bps") -> None:
    """One panel per mode: the link's rate (a step) and each (sample key, label, colour) in kbit/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 3.6 * len(results)), sharex=True)
    if len(results) == 1:
        axes = [axes]
    for ax, (mode, samples) in zip(axes, results.items()):
        t = [s["t"] for s in samples]
        if link is not None:
            ax.step(t, [(s[link] if s[link] is not None else float("nan")) / 1e3 for s in samples], where="post",
                    color="#444", label="link")
        for key, label, colour in lines:
            ax.plot(t, [(s[key] or 0) / 1e3 for s in samples], color=colour, label=label,
                    alpha=0.6 if "actual" in key else 1.0)
        ax.set_ylabel("kbit/s")
        ax.set_ylim(0, ylim)
        ax.set_title(mode)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
