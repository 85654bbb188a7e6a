"""`basement` command line: serve (all-in-one), and the tools around it.

Every subcommand declares the settings groups it reads (`config.SUBCOMMAND_GROUPS`): it offers
flags for those only, `main` loads Settings for those (flags, then `BASEMENT_*` env, then defaults)
and sets up logging from them, then calls the subcommand's `func(args, settings)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import sys
from collections.abc import Coroutine
from typing import Any

from signalling import config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(settings: config.Settings) -> None:
    """The logging of every subcommand: level from Settings, one format, to stderr."""
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)


def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a subcommand's coroutine to completion, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def cmd_serve(args: argparse.Namespace, settings: config.Settings) -> int:
    from signalling.run.serve import serve_forever

    run_loop(serve_forever(settings))
    return 0


# Modules that contribute subcommands; each exposes add_subparser(subparsers), and each subcommand
# parser calls config.add_arguments(parser, "<its name>") and sets `func(args, settings)`.
SUBCOMMAND_MODULES = ["signalling.sessions.cli", "signalling.run.cluster_cli", "bench.cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="basement", description="Basement SFU")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="all-in-one server: signalling + SFU + web client, in-memory state",
                           description="All-in-one server: signalling, the SFU and the web client in one process.")
    config.add_arguments(serve, "serve")
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


# What py-evm (the embedded chain) sets for the EVM's 1,024 call frames; it still leaves the C stack
# room to spare, unlike py_ecc's 100,000.
RECURSION_LIMIT = 1024 * 12


def cap_recursion_limit(limit: int = RECURSION_LIMIT) -> None:
    """Import py_ecc now (it raises the recursion limit to 100,000 at import), then lower it again.

    Why: with a limit of 100,000, C code that recurses under that guard (the JSON decoder, repr,
    pickle) overflows the C stack and the whole process dies with SIGSEGV before any RecursionError.
    safejson bounds untrusted JSON already; this is defence in depth for every other path. py_ecc
    needs nothing close to it: its recursion is logarithmic in the scalar.
    """
    with contextlib.suppress(ImportError):
        importlib.import_module("py_ecc")
    if sys.getrecursionlimit() > limit:
        sys.setrecursionlimit(limit)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cap_recursion_limit()
    try:
        settings = config.load(args)
        setup_logging(settings)
        return args.func(args, settings)
    except config.ConfigError as e:
        print(f"basement: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
