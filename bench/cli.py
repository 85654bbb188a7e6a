"""`basement bench`: forwarding-throughput load test of Basement, side by side with Janus.

    basement bench livestream --subscribers 20 --duration 20 --json out.json
    basement bench livestream --compare --plot out.png
    basement bench audio --ramp
    basement bench meeting -n 6 --rooms 4 --workers 2 --compare-workers

The generator (this process) and the SFU under test (a child process) are separate, so the SFU's
CPU per forwarded packet excludes what it costs to produce and check the load. See
docs/performance.md for the method and the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import traceback
from typing import Any

from bench.loadgen.run_config import SCENARIOS, RunConfig
from signalling import config


def add_subparser(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="forwarding-throughput load test (Basement and/or Janus)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=sorted(SCENARIOS), help="audio: 10 pubs x N subs, audio only; "
                   "meeting: N x N, simulcast video + audio; livestream: 1 pub x N subs, video + audio")
    p.add_argument("--subscribers", "-n", type=int, default=20, help="N (the start of the ramp with --ramp)")
    p.add_argument("--publishers", type=int, default=None, help="override the scenario's publisher count")
    p.add_argument("--duration", type=float, default=20.0, help="measurement window per run, seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds between media flowing and measuring")
    p.add_argument("--target", choices=["basement", "basement-nogso", "basement-evp", "basement-python", "janus"],
                   default="basement", help="basement runs the native data path, basement-nogso the same with "
                   "segmented sends (udp_gso) off, basement-evp the same with SRTP's AES on OpenSSL's EVP "
                   "(aes_ni off), basement-python the pure-Python one")
    p.add_argument("--compare", action="store_true",
                   help="run Basement (native, then python data path) and Janus in one run; print ratios")
    p.add_argument("--compare-gso", action="store_true",
                   help="also run the native path with udp_gso off, after native (alone: just these two); "
                        "print native / native without GSO")
    p.add_argument("--ramp", action="store_true", help="raise N until loss > 1 %% or SFU CPU >= 95 %%")
    p.add_argument("--max-subscribers", type=int, default=2000, help="upper bound for --ramp")
    sim = p.add_mutually_exclusive_group()
    sim.add_argument("--simulcast", dest="simulcast", action="store_true", default=None,
                     help="3-layer simulcast video (Basement only)")
    sim.add_argument("--no-simulcast", dest="simulcast", action="store_false")
    p.add_argument("--probe-every", type=int, default=8, help="every k-th packet carries a latency/CRC probe")
    p.add_argument("--wire-latency", action=argparse.BooleanOptionalAction, default=None,
                   help="time the latency the SFU adds with kernel timestamps of each probe leaving the publisher "
                        "and each copy leaving the SFU (a packet capture on lo: needs CAP_NET_RAW, as under "
                        "unshare -n). With --ramp (where it is on by default) one more run at half the capacity")
    p.add_argument("--pacing", type=float, default=0.0, metavar="FACTOR",
                   help="space each publisher's video packets at FACTOR x its bitrate, as a browser's pacer "
                        "does (libwebrtc: 2.5); 0 (default) sends each frame in one burst")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction, default=None,
                   help="run the SFU on the last CPU and the generator on the others (default: on with >= 2 CPUs); "
                        "SFU CPU is then capacity per core, and Janus's threads share that one core too")
    p.add_argument("--rooms", type=int, default=1,
                   help="K copies of the scenario, each in a room of its own (N subscribers each)")
    p.add_argument("--workers", type=int, default=1,
                   help="Basement's media worker processes (`basement serve --workers W`); its CPU is then that "
                        "of the server process and its workers. Rooms are placed on workers, so use --rooms")
    p.add_argument("--compare-workers", action="store_true",
                   help="run Basement with one worker, then with --workers W, on the same load; print the ratio")
    p.add_argument("--ice-address", default="127.0.0.1", help="address the generator's ICE gathers on")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--keep-logs", action="store_true", help="keep the SFU's log even when the run went well "
                   "(a failed run always keeps it); its path is printed")
    p.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure the send floor (the kernel's cost of one SRTP datagram per subscriber "
                        "socket at the run's packet rate, same pinning) and report CPU per packet above it")
    config.add_arguments(p, "bench")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: config.Settings | None = None) -> int:
    # The generator's peers are aiortc's: at `info` aioice logs four lines per connection's ICE,
    # thousands of lines (and generator CPU) in a large run. `--log-level debug` still shows them.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("aioice", "aiortc"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        return runner(_main(args))
    except (RuntimeError, TimeoutError, ConnectionError) as e:
        # always say what failed: a bare TimeoutError has no message of its own, so show where it came from
        print(f"basement bench: {type(e).__name__}: {e}" if str(e) else
              f"basement bench: {type(e).__name__} in:\n{''.join(traceback.format_tb(e.__traceback__)[-4:])}",
              file=sys.stderr)
        return 1


async def run_target(name: str, cfg: RunConfig, ramp: bool, max_n: int, layers: dict, progress: Any,
                     keep_logs: bool = False, workers: int = 1) -> dict:
    from bench.loadgen import scenario
    from bench.loadgen.targets import make_target

    target = make_target(name, workers)
    target.keep_logs = keep_logs
    try:
        progress(f"starting {name}", 0.0)
        await target.start()
        if ramp:
            return await scenario.ramp(target, cfg, layers, max_n, progress)
        return await scenario.run_once(target, cfg, layers, progress)
    except BaseException:
        target.keep_logs = True  # a failed run keeps the SFU's log, and says where it is
        raise
    finally:
        await target.stop()  # kills the SFU child process whatever happened


async def _send_floor(rows: list[dict[str, Any]], duration: float, progress: Any) -> dict[str, Any]:
    """The send floor at the first measured step's fan-out and per-subscriber packet rate."""
    from bench.loadgen import floor

    first = next((r for r in rows if r.get("forwarded_pps")), None)
    if first is None:
        raise RuntimeError("no run forwarded anything: no packet rate to measure the send floor at")
    n = first["subscribers"]
    progress("measuring the send floor", 0.0)
    return await floor.measure(n, first["forwarded_pps"] / n, min(duration, 10.0))


async def _main(args: argparse.Namespace) -> int:
    from bench.loadgen import media, peers, report
    from bench.loadgen import targets as targets_mod
    from sfu.transport import configure_ice

    configure_ice([args.ice_address])
    peers.configure_native_receive()
    cpus = sorted(os.sched_getaffinity(0))
    if args.workers < 1 or args.rooms < 1:
        raise RuntimeError("--workers and --rooms must be at least 1")
    if args.compare_workers and (args.workers < 2 or args.compare or args.target != "basement"):
        raise RuntimeError("--compare-workers needs --workers 2 or more, with the basement target alone")
    # the SFU gets as many cores as it has media processes, the generator the rest; with no core left
    # for the generator nothing is pinned (the CPU per packet is still the SFU's own)
    sfu_cores = args.workers
    if args.pin or (args.pin is None and len(cpus) > sfu_cores):
        if len(cpus) <= sfu_cores:
            raise RuntimeError(f"--pin needs more than {sfu_cores} CPUs (the SFU's {sfu_cores} and the generator's)")
        targets_mod.pin(set(cpus[-sfu_cores:]))
        os.sched_setaffinity(0, set(cpus[:-sfu_cores]))
    # `kill -USR1 <bench pid>` prints where every task of the generator is waiting (a stuck run)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _print_tasks)
    bar = report.ProgressBar(enabled=False if args.no_progress else None)
    layers = media.load_layers(progress=lambda t: bar(t, 0.0))
    simulcast = False if args.compare else args.simulcast
    cfg = RunConfig(scenario=args.scenario, subscribers=args.subscribers, publishers=args.publishers,
                    duration=args.duration, warmup=args.warmup, simulcast=simulcast, probe_every=args.probe_every,
                    pacing=args.pacing, wire_latency=args.ramp if args.wire_latency is None else args.wire_latency,
                    rooms=args.rooms)
    if cfg.wire_latency and cfg.probe_every < 2:
        raise RuntimeError("--wire-latency needs --probe-every 2 or more: it matches copies by a sparse set of probes")
    targets = ["basement", "basement-python", "janus"] if args.compare else [args.target]
    if args.compare_gso:
        targets = ["basement", "basement-nogso", *targets[1:]] if args.compare else ["basement", "basement-nogso"]
    runs = [(name, args.workers) for name in targets]
    if args.compare_workers:
        runs = [("basement", 1), ("basement", args.workers)]
    results = []
    try:
        for name, workers in runs:
            results.append(await run_target(name, cfg, args.ramp, args.max_subscribers, layers, bar, args.keep_logs,
                                            workers))
    finally:
        bar.done()
    rows = [s for r in results for s in r.get("steps", [r])]
    halves = [r["at_half_capacity"] for r in results if r.get("at_half_capacity")]
    out: dict[str, Any] = {"results": results}
    if args.floor and rows:
        out["send_floor"] = await _send_floor(rows, cfg.duration, bar)
        report.subtract_floor(rows, out["send_floor"]["us_per_packet"])
    if cfg.wire_latency and rows:
        from bench.loadgen import wire

        bar("measuring the latency floor", 0.0)
        out["latency_floor"] = await wire.measure_floor(targets_mod.SFU_CPUS)
    print(report.table(rows))
    if "send_floor" in out:
        f = out["send_floor"]
        print(f"send floor: {f['us_per_packet']:.2f} µs of the SFU core per datagram ({f['send']}, "
              f"{f['receivers']} receivers at {f['pps_per_receiver']:.0f} packets/s each)")
    if "latency_floor" in out:
        f = out["latency_floor"]
        print(f"latency floor: p50 {f['added_latency_us_p50']:.0f} µs, p99 {f['added_latency_us_p99']:.0f} µs added by "
              f"a bare reflector on the SFU's core (one datagram every {f['interval_ms']:.0f} ms)")
    if args.ramp:
        for r in results:
            print(f"{r['target']} {r['scenario']}: capacity {r['capacity']} subscribers ({r['stop_reason']})")
    if halves:
        report.subtract_floor(halves, out.get("send_floor", {}).get("us_per_packet"))
        print("at half the capacity, with the wire capture on (its cost is in these CPU figures):")
        print(report.table(halves))
    pairs = []
    if args.compare_workers and len(results) == 2:
        pairs.append((f"Basement {args.workers} workers / 1", "ratios_workers", results[1], results[0]))
    elif len(results) == len(targets):
        if args.compare:
            native, python, janus = results[0], results[-2], results[-1]
            pairs += [("Basement native / Janus", "ratios_native_over_janus", native, janus),
                      ("Basement python / Janus", "ratios_python_over_janus", python, janus),
                      ("Basement native / python", "ratios_native_over_python", native, python)]
        if args.compare_gso:  # basement-nogso runs right after basement
            pairs.append(("Basement native / native without GSO", "ratios_gso", results[0], results[1]))
    if args.compare_workers and len(results) == 2 and not args.ramp:
        # what relaying costs: the CPU the W-worker run spent beyond the one-worker run, per packet
        # it relayed between workers (an upper bound: the extra processes' own upkeep is in it)
        one, many = results
        relayed = many.get("sfu_relayed_packets")
        if relayed:
            extra = many["sfu_cpu_s"] / many["duration_s"] - one["sfu_cpu_s"] / one["duration_s"]
            out["relay_us_per_relayed_packet"] = extra * 1e6 / (relayed / many["duration_s"])
            print(f"relayed between workers: {relayed} packets ({relayed / many['duration_s']:.0f}/s); extra CPU of "
                  f"{args.workers} workers over 1: {out['relay_us_per_relayed_packet']:.1f} µs per relayed packet")
    summary = report.ramp_summary if args.ramp else (lambda r: r)
    for label, key, ours, other in pairs:
        rat = report.ratios(summary(ours), summary(other))
        out[key] = rat
        for k, v in rat.items():
            print(f"ratio {label}, {k}: {'-' if v is None else f'{v:.2f}'}")
    if args.json:
        _write_json(args.json, out)
    if args.plot:
        report.plot(results, args.plot, title=f"{args.scenario}: " + ", ".join(
            f"{r['target']}" for r in results))
    bad = [r for r in rows if r.get("crc_errors")]
    if bad:
        print("payload integrity errors (CRC mismatches) were seen: see crc_errors", file=sys.stderr)
        return 1
    return 0


def _print_tasks() -> None:
    for task in asyncio.all_tasks():
        task.print_stack(limit=6, file=sys.stderr)


def _write_json(path: str, data: Any) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
