"""Scenarios (LiveKit's benchmark shapes), one measured run, and the capacity ramp.

A run: publishers come up first, then N subscribers join (join time = join request to first media
packet). After every subscriber receives every stream and a short warm-up, the measurement window
opens: SFU CPU (from /proc), packets/bytes at the subscribers, sequence-number loss, probe latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from bench.loadgen import media, wire
from bench.loadgen.peers import LightSubscriber, SyntheticPublisher
from bench.loadgen.run_config import SCENARIOS, RunConfig
from bench.loadgen.targets import Target, self_cpu_seconds

Progress = Callable[[str, float], None]  # (phase text, fraction 0..1)


def _pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[k] / 1000.0  # µs -> ms


async def run_once(target: Target, cfg: RunConfig, layers: dict[str, media.EncodedLayer],
                   progress: Progress | None = None) -> dict[str, Any]:
    """One measured run against an already started target. Peers are always closed afterwards."""
    say = progress or (lambda text, frac: None)
    default_pubs, audio, video, want_sim, pubs_subscribe = SCENARIOS[cfg.scenario]
    n = cfg.subscribers
    npub = cfg.publishers if cfg.publishers is not None else (default_pubs or n)
    simulcast = video and target.supports_simulcast and (want_sim if cfg.simulcast is None else cfg.simulcast)
    use_layers = layers if simulcast else {"h": layers["h"]}
    # --rooms K: K copies of the scenario, each in its own room (with workers, placed on them by load)
    rooms = [await target.new_room(npub + 1) for _ in range(cfg.rooms)]
    pubs: list[SyntheticPublisher] = []
    subs: list[LightSubscriber] = []
    join_started: dict[str, float] = {}
    tap: wire.WireTap | None = None
    try:
        say(f"{target.name}: {npub * len(rooms)} publisher(s) joining", 0.0)
        feeds: list[list[Any]] = [[] for _ in rooms]
        for r, room in enumerate(rooms):
            for i in range(npub):
                name = f"pub{i}" if len(rooms) == 1 else f"r{r}pub{i}"
                pub = SyntheticPublisher(name, use_layers, audio=audio, video=video, simulcast=simulcast,
                                         probe_every=cfg.probe_every, pacing=cfg.pacing)
                sub = None
                if pubs_subscribe and target.name.startswith("basement"):
                    sub = LightSubscriber(name)
                    subs.append(sub)
                    join_started[sub.name] = time.monotonic()
                feeds[r].append(await target.publish(room, pub, sub))
                await pub.wait_connected()
                pub.start()
                pubs.append(pub)
        rss_before = target.rss_bytes()
        fwd_base = await target.forwarded_packets()
        received_base = sum(s.totals()["received"] for s in subs)  # meeting: publishers already subscribe
        sem = asyncio.Semaphore(cfg.join_concurrency)

        async def join(r: int, i: int) -> None:
            async with sem:
                sub = LightSubscriber(f"sub{i}" if len(rooms) == 1 else f"r{r}sub{i}")
                subs.append(sub)
                join_started[sub.name] = time.monotonic()
                others = [f for j, f in enumerate(feeds[r]) if not (pubs_subscribe and j == i)]
                await target.subscribe(rooms[r], sub, others)

        if pubs_subscribe and not target.name.startswith("basement"):
            # Janus: the meeting's participants subscribe with a separate handle to every other feed
            await asyncio.gather(*(join(r, i) for r in range(len(rooms)) for i in range(npub)))
        elif not pubs_subscribe:
            await asyncio.gather(*(join(r, i) for i in range(n) for r in range(len(rooms))))
        per_sub = (npub - 1 if pubs_subscribe else npub) * (int(audio) + int(video))  # one layer per video track
        deadline = time.monotonic() + cfg.setup_timeout
        while True:
            target.check_alive()
            ready = sum(1 for s in subs if len(s.streams) >= per_sub)
            say(f"{target.name}: waiting for media ({ready}/{len(subs)} subscribers complete)", 0.0)
            if ready == len(subs):
                break
            if time.monotonic() > deadline:
                stuck = [f"{s.name}: {sorted(x.kind for x in s.streams.values())}, {s.transport.connection_state}, "
                         f"{s.offers} offer(s)" for s in subs if len(s.streams) < per_sub]
                raise TimeoutError(f"{target.name}: only {ready}/{len(subs)} subscribers received all {per_sub} "
                                   f"streams within {cfg.setup_timeout:.0f} s; incomplete: {'; '.join(stuck[:5])}")
            await asyncio.sleep(0.2)
        joins = [(s.first_packet_at - join_started[s.name]) * 1000 for s in subs if s.first_packet_at]
        await asyncio.sleep(cfg.warmup)

        # --- measurement window ---
        if cfg.wire_latency:
            tap = wire.WireTap()
            await tap.start()
        t0 = time.monotonic()
        cpu0, gen0 = target.cpu_seconds(), self_cpu_seconds()
        fwd0 = await target.forwarded_packets()
        rel0 = await target.relayed_packets()
        # no await between clearing the samples and reading the probe counts: a probe landing in
        # between would be timed without being counted
        for s in subs:
            s.latencies_us.clear()
        before = [s.totals() for s in subs]
        streams_before = [s.stream_counts() for s in subs]
        sent0 = sum(p.packets_sent for p in pubs)
        rss_after = target.rss_bytes()
        while (elapsed := time.monotonic() - t0) < cfg.duration:
            target.check_alive()
            say(f"{target.name} {cfg.scenario} N={n}: measuring", elapsed / cfg.duration)
            await asyncio.sleep(min(0.5, cfg.duration - elapsed))
        after = [s.totals() for s in subs]
        streams_after = [s.stream_counts() for s in subs]
        # who stalled, by what its own end of the connection says now (not after the teardown below,
        # which closes every connection): a transport that ended, or one renegotiated more than
        # once, points at something other than the SFU not sending
        stalled_of = [sum(1 for ssrc, n in b.items() if a.get(ssrc, n) == n)
                      for b, a in zip(streams_before, streams_after)]
        stalled_subscribers = Counter(
            f"{s.transport.connection_state}, {s.offers} offer(s), {len(a)} SSRCs"
            + (f", signalling closed ({s.signalling_closed})" if s.signalling_closed else "")
            for s, a, k in zip(subs, streams_after, stalled_of) if k)
        for s in subs:
            s.collect_latency = False  # samples must cover the same window as the probe counts
        cpu1, gen1 = target.cpu_seconds(), self_cpu_seconds()
        sent1 = sum(p.packets_sent for p in pubs)
        fwd1 = await target.forwarded_packets()
        rel1 = await target.relayed_packets()
        t1 = time.monotonic()
        sfu_figures = await target.sfu_figures()
        captured = await tap.stop() if tap is not None else None
        ports = set().union(*(p.send_ports() for p in pubs))
        # The cross-check against the SFU's own counter needs both sides quiet: stop sending, let
        # packets in flight land, then compare totals since the subscribers joined.
        for p in pubs:
            p.stop_sending()
        await asyncio.sleep(0.5)
        fwd_end = await target.forwarded_packets()
        received_total = sum(s.totals()["received"] for s in subs) - received_base
        # matching is a second of Python at large N: done with the publishers quiet, so the generator's
        # stall cannot cost the subscribers packets the totals above compare
        wire_figures = wire.summary(wire.added_latency(captured[0], ports), captured[1]) if captured else {}
        say(f"{target.name}: done", 1.0)
    finally:
        if tap is not None:
            tap.kill()
        with contextlib.suppress(Exception):
            await target.leave_all()
        for p in pubs:
            with contextlib.suppress(Exception):
                await p.close()
        for s in subs:
            with contextlib.suppress(Exception):
                await s.close()

    dt = t1 - t0
    d = {k: sum(a[k] - b[k] for a, b in zip(after, before)) for k in after[0]} if after else {}
    # a stream that was arriving before the window and got nothing in it: the SFU stopped sending it
    # (paused, or fell behind). `loss %` cannot see it: it counts the packets of streams that arrive.
    streams = sum(len(b) for b in streams_before)
    stalled = sum(stalled_of)
    received = d.get("received", 0)
    expected = d.get("expected", 0)
    lat = [v for s in subs for v in s.latencies_us]
    cpu = cpu1 - cpu0
    return {
        "target": target.name,
        "scenario": cfg.scenario,
        "publishers": npub * len(rooms),
        "subscribers": len(subs),
        "rooms": len(rooms),
        "workers": getattr(target, "workers", None),
        "simulcast": simulcast,
        "layers": {r: {"size": f"{x.width}x{x.height}", "kbps_target": x.kbps} for r, x in use_layers.items()},
        "duration_s": round(dt, 3),
        "packets_published": sent1 - sent0,
        "packets_received": received,
        "packets_counted_natively": d.get("native", 0),  # of those (peers.configure_native_receive)
        "forwarded_pps": received / dt,
        "forwarded_mbps": d.get("bytes", 0) * 8 / dt / 1e6,
        "sfu_reported_forwarded": (fwd1 - fwd0) if fwd0 is not None and fwd1 is not None else None,
        "packets_received_total": received_total,
        "sfu_reported_forwarded_total": (fwd_end - fwd_base) if fwd_end is not None and fwd_base is not None
        else None,
        "sfu_cpu_s": cpu,
        "sfu_cpu_pct": 100 * cpu / dt,
        "cpu_us_per_packet": (cpu * 1e6 / received) if received else None,
        "generator_cpu_pct": 100 * (gen1 - gen0) / dt,
        "loss_pct": 100 * max(0, expected - received) / expected if expected else None,
        "streams": streams,
        "stalled_streams": stalled,
        "stalled_subscribers": dict(stalled_subscribers.most_common(8)),
        "sfu_paused_downtracks": sfu_figures.get("paused_downtracks"),  # by reason
        "sfu_paused": (sum(sfu_figures["paused_downtracks"].values())
                       if sfu_figures.get("paused_downtracks") is not None else None),
        "sfu_waiting_keyframe": sfu_figures.get("waiting_downtracks"),  # video downtracks, at the window's end
        # with --workers: worker -> packets it forwarded since it started (how the load spread)
        "sfu_forwarded_by_worker": sfu_figures.get("forwarded_by_worker") or None,
        # and participants on each worker at the window's end; a room spanning workers relays its
        # tracks between them: packets relayed in the window (one per packet per other worker)
        "sfu_participants_by_worker": sfu_figures.get("participants_by_worker") or None,
        "sfu_relayed_packets": (rel1 - rel0) if rel0 is not None and rel1 is not None else None,
        "gso_datagrams_per_send": sfu_figures.get("gso_datagrams_per_send"),
        # since the SFU started (a ramp's earlier steps included)
        "sfu_left": sfu_figures.get("left"),  # participants, by reason
        "sfu_transports_ended": sfu_figures.get("transports_ended"),  # under a participant, by target/cause
        "sfu_consent_expired": sfu_figures.get("consent_expired"),
        "seq_gaps": d.get("gaps", 0),
        "late_or_dup": d.get("late", 0),
        "probes": d.get("probes", 0),
        "crc_errors": d.get("crc_errors", 0),
        "latency_ms_p50": _pct(lat, 0.5),
        "latency_ms_p99": _pct(lat, 0.99),
        "latency_samples": len(lat),
        **wire_figures,
        "sfu_rss_mb": rss_after / 2**20,
        "rss_kb_per_subscriber": (rss_after - rss_before) / 1024 / max(1, len(subs)),
        "join_ms_p50": statistics.median(joins) if joins else None,
        "join_ms_max": max(joins) if joins else None,
        "config": asdict(cfg),
    }


def capacity_reached(result: dict[str, Any]) -> str | None:
    if result.get("loss_pct") is None:
        # nothing arrived in the window (an SFU so far behind that no sequence advanced): not a pass
        return "no packets received in the measurement window"
    if result["loss_pct"] > 1.0:
        return "loss > 1 %"
    cores = result.get("workers") or 1  # one core per media worker process
    if result["sfu_cpu_pct"] >= 95.0 * cores:  # (said before stalls, which a saturated SFU also causes)
        return "SFU CPU >= 95 % of one core" if cores == 1 else f"SFU CPU >= 95 % of {cores} cores"
    if result.get("stalled_streams", 0) > 0.01 * result.get("streams", 0):
        paused = result.get("sfu_paused_downtracks")
        said = "" if paused is None else (f"; the SFU had paused {', '.join(f'{n} ({r})' for r, n in paused.items())}"
                                          if paused else "; the SFU had paused none")
        if result.get("sfu_waiting_keyframe"):
            said += f"; {result['sfu_waiting_keyframe']} waited for a key frame"
        ended = {k: n for k, n in (result.get("sfu_transports_ended") or {}).items() if n}
        left = {k: n for k, n in (result.get("sfu_left") or {}).items() if n}
        if ended or left:
            said += "; so far " + ", ".join([f"{n} connections ended ({k})" for k, n in ended.items()]
                                            + [f"{n} participants left ({k})" for k, n in left.items()])
        return f"{result['stalled_streams']} of {result['streams']} streams got nothing in the window{said}"
    if result["generator_cpu_pct"] >= 95.0:
        return "load generator saturated (result is a lower bound)"
    return None


async def ramp(target: Target, cfg: RunConfig, layers: dict[str, media.EncodedLayer], max_n: int = 2000,
               progress: Progress | None = None) -> dict[str, Any]:
    """Raise N (x1.5 per step) until loss > 1 %, more than 1 % of the streams stall, or a CPU
    saturates; capacity = the last passing N."""
    steps = []
    n = max(1, cfg.subscribers)
    capacity = None
    reason = f"reached --max-subscribers {max_n}"
    while n <= max_n:
        step_cfg = RunConfig(**{**asdict(cfg), "subscribers": n, "wire_latency": False})  # capture costs the SFU
        try:
            r = await run_once(target, step_cfg, layers, progress)
        except TimeoutError as e:
            reason = f"setup failed at N={n}: {type(e).__name__} {e}".strip()
            break
        steps.append(r)
        why = capacity_reached(r)
        if why:
            reason = why
            break
        capacity = n
        n = max(n + 1, int(n * 1.5))
    half = None
    if capacity is not None and cfg.wire_latency:
        # the latency goal is stated at half the measured capacity: one more run there, timed on the wire
        half_cfg = RunConfig(**{**asdict(cfg), "subscribers": max(1, capacity // 2)})
        half = await run_once(target, half_cfg, layers, progress)
    return {"target": target.name, "scenario": cfg.scenario, "capacity": capacity, "stop_reason": reason,
            "steps": steps, "at_half_capacity": half}
