"""The ``ncap`` command line: run, demo, read."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from ncap import __version__
from ncap.errors import ConfigError, NcapError

EX_CONFIG = 78
EX_UNAVAILABLE = 69
EX_USAGE = 64

_LOGGER = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from ncap.logsetup import setup_logging

    setup_logging(args.verbose)
    try:
        return int(args.handler(args))
    except ConfigError as err:
        print(f"ncap: bad configuration: {err}", file=sys.stderr)
        return EX_CONFIG
    except NcapError as err:
        print(f"ncap: {err}", file=sys.stderr)
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ncap", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ncap {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway from a configuration file")
    run.add_argument("--config", type=Path, default=Path("/etc/ncap/ncap.toml"))
    run.add_argument(
        "--check-config", action="store_true", help="only validate the configuration, then exit"
    )
    run.set_defaults(handler=_cmd_run)

    demo = sub.add_parser("demo", help="start a private XMPP server, a simulated TIM and the NCAP")
    demo.add_argument("--json", action="store_true", help="print one JSON line once ready")
    demo.add_argument("--workdir", type=Path, help="keep the demo's files here (default: temp dir)")
    demo.set_defaults(handler=_cmd_demo)

    read = sub.add_parser("read", help="XEP-0323 momentary readout of a thing")
    read.add_argument("thing", help="the thing's JID (full JID preferred)")
    read.add_argument("node", nargs="?", help="node id (default: every node)")
    read.add_argument("fields", nargs="*", help="field names (default: every field)")
    read.add_argument("--jid", required=True, help="the account to read as")
    read.add_argument(
        "--password-file", type=Path, help="file holding the password (else $NCAP_PASSWORD)"
    )
    read.add_argument("--ca", type=Path, help="CA file to verify the server against")
    read.add_argument("--server", help="host to connect to (default: the JID's domain)")
    read.add_argument("--port", type=int, default=5222)
    read.add_argument("--timeout", type=float, default=15.0)
    read.add_argument("--json", action="store_true", help="print JSON instead of a table")
    read.set_defaults(handler=_cmd_read)
    return parser


def _run_with_signals(coro_factory: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run the coroutine built by coro_factory(stop_event) until SIGINT/SIGTERM."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await coro_factory(stop)

    asyncio.run(runner())


def _cmd_run(args: argparse.Namespace) -> int:
    from ncap.config import load_config

    config = load_config(args.config)
    if args.check_config:
        print(f"{args.config}: configuration is valid")
        return 0

    async def go(stop: asyncio.Event) -> None:
        from ncap.app import Gateway, run_until_signalled

        await run_until_signalled(Gateway(config), stop)

    _run_with_signals(go)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ncap.demo import run_demo

    async def go(stop: asyncio.Event) -> None:
        await run_demo(stop, as_json=args.json, workdir=args.workdir)

    _run_with_signals(go)
    return 0


def _cmd_read(args: argparse.Namespace) -> int:
    from ncap.reader import format_readout, read_thing, readout_as_json

    if args.password_file is not None:
        from ncap.config import read_secret

        try:
            password = read_secret(args.password_file)
        except ConfigError as err:
            raise ConfigError("--password-file", err.problem) from None
    else:
        password = os.environ.get("NCAP_PASSWORD", "")
        if not password:
            print("ncap read: give --password-file or set NCAP_PASSWORD", file=sys.stderr)
            return EX_USAGE
    readout = asyncio.run(
        read_thing(
            args.jid,
            password,
            args.thing,
            node=args.node,
            fields=tuple(args.fields),
            ca_file=args.ca,
            server=args.server,
            port=args.port,
            timeout=args.timeout,
        )
    )
    if args.json:
        print(json.dumps(readout_as_json(readout), ensure_ascii=False))
    else:
        print(format_readout(readout))
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    return 0
