"""`basement sfu` (a media node) and `basement signal` (a signalling replica), for a Redis cluster."""

from __future__ import annotations

import argparse
import logging

from signalling import config


def _run(args: argparse.Namespace, which: str) -> int:
    from signalling.cli import _run as run_loop
    from signalling.run import cluster as process

    settings = config.load(args)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.redis_url:
        raise config.ConfigError(f"redis_url: `basement {which}` needs Redis (BASEMENT_REDIS_URL)")
    result: dict[str, int] = {}

    async def main() -> None:
        fn = process.run_sfu if which == "sfu" else process.run_signal
        result["code"] = await fn(settings)

    run_loop(main())
    return result.get("code", 1)


def cmd_sfu(args: argparse.Namespace) -> int:
    return _run(args, "sfu")


def cmd_signal(args: argparse.Namespace) -> int:
    return _run(args, "signal")


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    sfu = subparsers.add_parser("sfu", help="SFU media node of a cluster (Redis): media, heartbeats, drain on SIGTERM")
    config.add_arguments(sfu)
    sfu.set_defaults(func=cmd_sfu)
    sig = subparsers.add_parser("signal", help="signalling replica of a cluster (Redis): HTTP + WebSocket")
    config.add_arguments(sig)
    sig.set_defaults(func=cmd_signal)
