"""Churn soak: does `basement serve` give memory back when participants leave? (issue #11)

    python -m bench.soak --duration 3600            # the acceptance run: < 5 % RSS growth after warm-up
    python -m bench.soak --duration 300 --warmup 60

A child `basement serve` (as in `basement bench`) hosts one room with `--stable` participants who
publish audio + video and stay. Meanwhile `--churners` participants at a time join, publish,
subscribe to everyone, receive media for `--stay` seconds, leave and are replaced, for the whole
run. The server's RSS is sampled throughout; the result compares the RSS after warm-up with the RSS
at the end (each the median of the last samples, so a single GC or allocator wobble does not
decide). Run it in a loopback-only network namespace, like the bench:

    unshare -n -- bash -c 'ip link set lo up && exec "$@"' x .venv/bin/python -m bench.soak --duration 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from typing import Any

from bench.loadgen import media
from bench.loadgen.peers import LightSubscriber, SyntheticPublisher
from bench.loadgen.targets import BasementTarget
from sfu.transport import configure_ice

SAMPLE_EVERY = 2.0  # s between RSS samples
SMOOTH = 5  # samples in each median


class Member:
    def __init__(self, name: str, layers: dict[str, media.EncodedLayer]) -> None:
        self.pub = SyntheticPublisher(name, layers, audio=True, video=True)
        self.sub = LightSubscriber(name)
        self.conn: Any = None

    async def join(self, target: BasementTarget, room: str) -> None:
        self.conn = await target.publish(room, self.pub, self.sub)
        await self.pub.wait_connected()
        self.pub.start()

    async def leave(self, target: BasementTarget) -> None:
        with contextlib.suppress(Exception):
            await self.conn.request({"type": "leave"}, timeout=10)
        with contextlib.suppress(Exception):
            await self.conn.close()
        if self.conn in target.conns:
            target.conns.remove(self.conn)
        self.pub.stop_sending()
        await self.pub.close()
        await self.sub.close()


def _median_mib(samples: list[tuple[float, int]]) -> float:
    return statistics.median(rss for _, rss in samples[-SMOOTH:]) / 2**20


async def soak(duration: float, warmup: float, stable: int, churners: int, stay: float) -> dict[str, Any]:
    configure_ice(["127.0.0.1"])
    layers = media.load_layers(rids=("q",))  # one small VP8 layer: the point is churn, not bandwidth
    target = BasementTarget()
    await target.start()
    samples: list[tuple[float, int]] = []
    cycles = 0
    after_warmup: float | None = None
    stop = asyncio.Event()
    try:
        room = await target.new_room(stable + churners)
        members = [Member(f"stable{i}", layers) for i in range(stable)]
        for m in members:
            await m.join(target, room)
        start = time.monotonic()

        async def churn(slot: int) -> None:
            nonlocal cycles
            while not stop.is_set():
                m = Member(f"churn{slot}-{cycles}", layers)
                try:
                    await m.join(target, room)
                    await asyncio.sleep(stay)
                finally:
                    await m.leave(target)
                cycles += 1

        tasks = [asyncio.ensure_future(churn(i)) for i in range(churners)]
        while time.monotonic() - start < duration:
            await asyncio.sleep(SAMPLE_EVERY)
            target.check_alive()
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()
            now = time.monotonic() - start
            samples.append((now, target.rss_bytes()))
            if after_warmup is None and now >= warmup and len(samples) >= SMOOTH:
                after_warmup = _median_mib(samples)
                print(f"[{now:6.0f} s] after warm-up: RSS {after_warmup:.1f} MiB, {cycles} cycles", flush=True)
            elif len(samples) % 30 == 0:
                print(f"[{now:6.0f} s] RSS {_median_mib(samples):.1f} MiB, {cycles} cycles", flush=True)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        end = _median_mib(samples)
        base = after_warmup if after_warmup is not None else end
        for m in members:
            await m.leave(target)
        return {"duration_s": duration, "warmup_s": warmup, "cycles": cycles, "stable": stable,
                "churners": churners, "rss_after_warmup_mib": round(base, 1), "rss_end_mib": round(end, 1),
                "growth_pct": round(100 * (end - base) / base, 2) if base else 0.0,
                "samples": [(round(t, 1), round(r / 2**20, 1)) for t, r in samples]}
    finally:
        stop.set()
        await target.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=3600.0, help="whole run, seconds")
    p.add_argument("--warmup", type=float, default=120.0, help="seconds before the baseline RSS is taken")
    p.add_argument("--stable", type=int, default=2, help="participants who stay the whole run")
    p.add_argument("--churners", type=int, default=2, help="participants joining and leaving concurrently")
    p.add_argument("--stay", type=float, default=3.0, help="seconds a churning participant stays")
    p.add_argument("--json", metavar="PATH", help="write the result, samples included")
    args = p.parse_args(argv)
    result = asyncio.run(soak(args.duration, args.warmup, args.stable, args.churners, args.stay))
    print(f"cycles {result['cycles']}: RSS after warm-up {result['rss_after_warmup_mib']} MiB, "
          f"at the end {result['rss_end_mib']} MiB ({result['growth_pct']:+.2f} %)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
