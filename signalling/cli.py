"""`basement` command line: serve (all-in-one), and the tools around it."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys

from signalling import config


def _run(coro) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


def cmd_serve(args: argparse.Namespace) -> int:
    from signalling.server import serve_forever

    settings = config.load(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _run(serve_forever(settings))
    return 0


# Modules that contribute subcommands; each exposes add_subparser(subparsers) and sets `func`.
SUBCOMMAND_MODULES = ["signalling.sessions_cli", "signalling.cluster.cli", "bench.cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="basement", description="Basement SFU")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="all-in-one server: signalling + SFU + web client, in-memory state")
    config.add_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if not name.startswith(e.name or "?"):
                raise
            continue
        module.add_subparser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except config.ConfigError as e:
        print(f"basement: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
