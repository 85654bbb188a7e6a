"""Results: a table on stdout, a progress bar on stderr, JSON, and a matplotlib (Agg) chart."""

from __future__ import annotations

import sys
import time
from typing import Any

COLUMNS = [
    ("target", "target", "{}"),
    ("scenario", "scenario", "{}"),
    ("rooms", "rooms", "{}"),
    ("pubs", "publishers", "{}"),
    ("subs", "subscribers", "{}"),
    ("fwd pps", "forwarded_pps", "{:,.0f}"),
    ("fwd Mbit/s", "forwarded_mbps", "{:.2f}"),
    ("SFU CPU %", "sfu_cpu_pct", "{:.1f}"),
    ("CPU µs/pkt", "cpu_us_per_packet", "{:.2f}"),
    ("above floor", "cpu_us_above_floor", "{:.2f}"),
    ("loss %", "loss_pct", "{:.3f}"),
    ("stalled", "stalled_streams", "{}"),
    ("paused", "sfu_paused", "{}"),
    ("GSO run", "gso_datagrams_per_send", "{:.1f}"),
    ("lat p50 ms", "latency_ms_p50", "{:.2f}"),
    ("lat p99 ms", "latency_ms_p99", "{:.2f}"),
    ("added p50 µs", "added_latency_us_p50", "{:.0f}"),
    ("added p99 µs", "added_latency_us_p99", "{:.0f}"),
    ("RSS/sub KiB", "rss_kb_per_subscriber", "{:.0f}"),
    ("join p50 ms", "join_ms_p50", "{:.0f}"),
    ("join max ms", "join_ms_max", "{:.0f}"),
    ("gen CPU %", "generator_cpu_pct", "{:.0f}"),
    ("CRC err", "crc_errors", "{}"),
]


def _fmt(fmt: str, v: Any) -> str:
    if v is None:
        return "-"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    head = [c[0] for c in COLUMNS]
    body = [[_fmt(fmt, r.get(key)) for _, key, fmt in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    out = [line, sep]
    for b in body:
        out.append("| " + " | ".join(v.rjust(w) for v, w in zip(b, widths)) + " |")
    return "\n".join(out)


def subtract_floor(rows: list[dict[str, Any]], floor_us: float | None) -> None:
    """Add `cpu_us_above_floor`: what each SFU spends per forwarded packet beyond the send floor."""
    for r in rows:
        us = r.get("cpu_us_per_packet")
        r["cpu_us_above_floor"] = us - floor_us if us is not None and floor_us is not None else None


def ratios(ours: dict[str, Any], janus: dict[str, Any]) -> dict[str, float | None]:
    def div(a: Any, b: Any) -> float | None:
        return a / b if a is not None and b not in (None, 0) else None

    out = {"cpu_us_per_packet": div(ours.get("cpu_us_per_packet"), janus.get("cpu_us_per_packet"))}
    if ours.get("cpu_us_above_floor") is not None:
        out["cpu_us_above_floor"] = div(ours.get("cpu_us_above_floor"), janus.get("cpu_us_above_floor"))
    if "capacity" in ours or "capacity" in janus:
        out["capacity"] = div(ours.get("capacity"), janus.get("capacity"))
    return out


def ramp_summary(result: dict[str, Any]) -> dict[str, Any]:
    """A ramp as one row for the ratios: the step at its capacity (the last one that passed), not the
    step that failed, whose CPU per packet is that of an overloaded SFU; no capacity, no figures."""
    at = next((s for s in reversed(result["steps"]) if s["subscribers"] == result["capacity"]), None)
    return {**(at or {}), "capacity": result["capacity"]}


class ProgressBar:
    """One self-overwriting line on stderr; silent when stderr is not a terminal unless forced."""

    def __init__(self, enabled: bool | None = None, width: int = 30) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.width = width
        self._last = 0.0
        self._text = ""

    def __call__(self, text: str, frac: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if text == self._text and now - self._last < 0.2 and frac < 1.0:
            return
        self._last, self._text = now, text
        filled = int(self.width * max(0.0, min(1.0, frac)))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {text[:90]:<90}")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * (self.width + 95) + "\r")
            sys.stderr.flush()


def plot(results: list[dict[str, Any]], path: str, title: str = "") -> None:
    """Single runs: bars per target (forwarded pps, SFU CPU µs/packet, latency p50/p99). Ramps: the
    same figures and SFU CPU % as curves over N, one line per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"basement-native": "#3b7dd8", "basement-python": "#7fa9e8", "janus": "#e07b39"}
    runs = [r for r in results if "steps" not in r]
    ramps = [r for r in results if "steps" in r]
    if ramps:
        fig, axes = plt.subplots(1, 4, figsize=(4.2 * 4, 3.8))
        for r in ramps:
            steps = r["steps"]
            n = [s["subscribers"] for s in steps]
            color = colors.get(r["target"], "#888")
            axes[0].plot(n, [s["forwarded_pps"] for s in steps], marker="o", color=color, label=r["target"])
            axes[1].plot(n, [s["cpu_us_per_packet"] for s in steps], marker="o", color=color, label=r["target"])
            axes[2].plot(n, [s["latency_ms_p50"] for s in steps], marker="o", color=color, label=f"{r['target']} p50")
            axes[2].plot(n, [s["latency_ms_p99"] for s in steps], linestyle="--", color=color, alpha=0.5)
            axes[3].plot(n, [s["sfu_cpu_pct"] for s in steps], marker="o", color=color,
                         label=f"{r['target']} (cap {r['capacity']})")
        for ax, t in zip(axes, ("forwarded packets/s", "SFU CPU µs per forwarded packet",
                                "latency ms (p50, p99 dashed)", "SFU CPU % of one core")):
            ax.set_title(t)
            ax.set_xlabel("subscribers")
            ax.legend(fontsize=7)
        axes[2].set_yscale("log")
        axes[3].axhline(95, color="#aaa", linestyle="--", linewidth=1)
    else:
        fig, axes = plt.subplots(1, 3, figsize=(4.2 * 3, 3.8))
        names = [f"{r['target']}\nN={r['subscribers']}" for r in runs]
        c = [colors.get(r["target"], "#888") for r in runs]
        axes[0].bar(names, [r["forwarded_pps"] for r in runs], color=c)
        axes[0].set_title("forwarded packets/s")
        axes[1].bar(names, [r["cpu_us_per_packet"] or 0 for r in runs], color=c)
        axes[1].set_title("SFU CPU µs per forwarded packet")
        x = range(len(runs))
        axes[2].bar([i - 0.2 for i in x], [r["latency_ms_p50"] or 0 for r in runs], width=0.4, label="p50", color=c)
        axes[2].bar([i + 0.2 for i in x], [r["latency_ms_p99"] or 0 for r in runs], width=0.4, label="p99",
                    color=c, alpha=0.5)
        axes[2].set_xticks(list(x), names)
        axes[2].set_title("added latency ms (p50 solid, p99 light)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
