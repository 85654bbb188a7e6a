"""`basement sfu` (a media node) and `basement signal` (a signalling replica), for a Redis cluster."""

from __future__ import annotations

import argparse

from signalling import config


def _run(settings: config.Settings, which: str) -> int:
    from signalling.cli import run_loop
    from signalling.run import cluster as process

    if not settings.redis_url:
        raise config.ConfigError(f"redis_url: `basement {which}` needs Redis (BASEMENT_REDIS_URL)")
    fn = process.run_sfu if which == "sfu" else process.run_signal
    code = run_loop(fn(settings))
    return code if isinstance(code, int) else 1


def cmd_sfu(args: argparse.Namespace, settings: config.Settings) -> int:
    return _run(settings, "sfu")


def cmd_signal(args: argparse.Namespace, settings: config.Settings) -> int:
    return _run(settings, "signal")


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    sfu = subparsers.add_parser("sfu", help="SFU media node of a cluster (Redis): media, heartbeats, drain on SIGTERM",
                                description="SFU media node of a cluster: hosts rooms placed on it through Redis, "
                                            "serves /healthz, /readyz and /metrics, drains on SIGTERM.")
    config.add_arguments(sfu, "sfu")
    sfu.set_defaults(func=cmd_sfu)
    sig = subparsers.add_parser("signal", help="signalling replica of a cluster (Redis): HTTP + WebSocket",
                                description="Signalling replica of a cluster: the web client, /ws, sign-in, grants, "
                                            "gates and the admin API; media on the `basement sfu` nodes via Redis.")
    config.add_arguments(sig, "signal")
    sig.set_defaults(func=cmd_signal)
