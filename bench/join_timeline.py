"""Where a subscriber's join time goes: the median of each step from the join request to the first
media packet, per target, with the load generator of `basement bench` (docs/performance.md).

    unshare -n -- bash -c 'ip link set lo up && exec "$@"' x \\
      .venv/bin/python -m bench.join_timeline --subscribers 30 --concurrency 1 basement janus

One publisher (VP8 + audio) per target; subscribers join `--concurrency` at a time (`basement bench`
uses 4) and each waits for its first packet. Steps: the participant's signalling WebSocket open
(one per participant on both targets), join reply, subscriber offer in, answer out, ICE checking /
completed, peer connection connected (DTLS), first packet; and the SFU's CPU per join (its CPU
while the joins ran, less an estimate of the forwarding it did meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from bench.loadgen import media, targets
from bench.loadgen.peers import LightSubscriber, SyntheticPublisher

STEPS = ["ws", "joined", "offer", "answer", "ice_checking", "ice_completed", "pc_connected", "first"]


async def _one(target: targets.Target, room: str, feed: object, name: str, sem: asyncio.Semaphore) -> dict:
    ev: dict[str, float] = {}
    first = asyncio.Event()
    sub = LightSubscriber(name, on_first_packet=lambda _: first.set())
    pc = sub.transport.pc
    answer = sub.answer

    async def timed_answer(sdp: str) -> str:
        ev.setdefault("offer", time.monotonic())
        out = await answer(sdp)
        ev.setdefault("answer", time.monotonic())
        return out

    sub.answer = timed_answer  # type: ignore[method-assign]

    @pc.on("iceconnectionstatechange")
    def _ice() -> None:
        ev.setdefault("ice_" + pc.iceConnectionState, time.monotonic())

    @pc.on("connectionstatechange")
    def _pc() -> None:
        ev.setdefault("pc_" + pc.connectionState, time.monotonic())

    async with sem:
        t0 = time.monotonic()
        conn = await target.subscribe(room, sub, [feed])
        ev["joined"] = time.monotonic()
    if getattr(conn, "connected_at", None):  # Basement: its signalling WebSocket is open
        ev["ws"] = conn.connected_at
    await first.wait()
    ev["first"] = sub.first_packet_at
    return {k: (v - t0) * 1000 for k, v in ev.items()}


async def run(target: targets.Target, layers: dict, n: int, concurrency: int) -> dict[str, float]:
    await target.start()
    try:
        room = await target.new_room(2)
        pub = SyntheticPublisher("pub0", {"h": layers["h"]}, audio=True, video=True, simulcast=False)
        feed = await target.publish(room, pub, None)
        await pub.wait_connected()
        pub.start()
        await asyncio.sleep(1.0)
        sem = asyncio.Semaphore(concurrency)
        print(f"{target.name}: SFU pid {target.pid}, joins start", file=sys.stderr, flush=True)
        cpu0, gen0, t0 = target.cpu_seconds(), targets.self_cpu_seconds(), time.monotonic()
        rows = await asyncio.gather(*(_one(target, room, feed, f"sub{i}", sem) for i in range(n)))
        cpu1, gen1, t1 = target.cpu_seconds(), targets.self_cpu_seconds(), time.monotonic()
        await asyncio.sleep(2.0)
        forwarding = (target.cpu_seconds() - cpu1) / (time.monotonic() - t1)  # CPU/s with all n receiving
        out = {k: statistics.median([r[k] for r in rows if k in r] or [float("nan")]) for k in STEPS}
        # The joins' own CPU: what the SFU spent while they ran, less forwarding to a subscriber count
        # that grew from 0 to n over that time (about half the full rate): an estimate, not a count.
        out["cpu_ms_per_join"] = max(0.0, (cpu1 - cpu0) - forwarding * (t1 - t0) / 2) * 1000 / n
        out["sfu_cpu_pct"] = 100 * (cpu1 - cpu0) / (t1 - t0)  # while the joins ran (all its threads)
        out["gen_cpu_pct"] = 100 * (gen1 - gen0) / (t1 - t0)  # the generator: if ~100 %, it times itself
        return out
    finally:
        await target.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", default=["basement", "janus"],
                    choices=["basement", "basement-python", "janus"])
    ap.add_argument("--subscribers", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--ice-address", default="127.0.0.1")
    ap.add_argument("--workers", type=int, default=1,
                    help="Basement's media worker processes (`basement serve --workers W`): the room is on one of "
                         "them, signalling in the server process")
    args = ap.parse_args()
    from sfu.transport import configure_ice

    configure_ice([args.ice_address])
    layers = media.load_layers()
    print("| target | " + " | ".join(STEPS) + " | SFU CPU ms / join | SFU CPU % | generator CPU % |")
    print("|---" * (len(STEPS) + 4) + "|")
    for name in args.targets:
        target = (targets.JanusTarget() if name == "janus" else
                  targets.BasementTarget(datapath="python" if name == "basement-python" else "native",
                                         workers=args.workers))
        medians = await run(target, layers, args.subscribers, args.concurrency)
        print(f"| {target.name} | " + " | ".join(f"{medians[k]:.1f}" for k in STEPS)
              + f" | {medians['cpu_ms_per_join']:.1f} | {medians['sfu_cpu_pct']:.0f} | {medians['gen_cpu_pct']:.0f} |",
              flush=True)


if __name__ == "__main__":
    asyncio.run(main())
