"""The ``ncap`` command line: run, demo, and the owner tools read, nodes, set, watch."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from ncap import __version__
from ncap.errors import ConfigError, NcapError
from xep.errors import XepError

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
    except (NcapError, XepError) as err:
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

    firstboot = sub.add_parser(
        "firstboot",
        help="import ncap.toml and secrets from the boot partition (once); show the claim QR",
    )
    firstboot.add_argument("--boot-dir", type=Path, default=Path("/boot/firmware/ncap"))
    firstboot.add_argument("--config-dir", type=Path, default=Path("/etc/ncap"))
    firstboot.add_argument("--state-dir", type=Path, default=Path("/var/lib/ncap"))
    firstboot.add_argument(
        "--claim-only", action="store_true", help="only show and save the claim QR code"
    )
    firstboot.set_defaults(handler=_cmd_firstboot)

    demo = sub.add_parser("demo", help="start a private XMPP server, a simulated TIM and the NCAP")
    demo.add_argument("--json", action="store_true", help="print one JSON line once ready")
    demo.add_argument("--workdir", type=Path, help="keep the demo's files here (default: temp dir)")
    demo.add_argument(
        "--unclaimed",
        action="store_true",
        help="leave the thing unclaimed and print its claim URI (claim it with 'ncap claim')",
    )
    demo.set_defaults(handler=_cmd_demo)

    client = argparse.ArgumentParser(add_help=False)
    who = client.add_argument_group("connection")
    who.add_argument("--jid", required=True, help="the account to act as")
    who.add_argument(
        "--password-file", type=Path, help="file holding the password (else $NCAP_PASSWORD)"
    )
    who.add_argument("--ca", type=Path, help="CA file to verify the server against")
    who.add_argument("--server", help="host to connect to (default: the JID's domain)")
    who.add_argument("--port", type=int, default=5222)
    who.add_argument("--timeout", type=float, default=15.0)
    thing_help = "the thing's JID (a bare JID is resolved through its presence)"

    read = sub.add_parser("read", parents=[client], help="XEP-0323 momentary readout of a thing")
    read.add_argument("thing", help=thing_help)
    read.add_argument("node", nargs="?", help="node id (default: every node)")
    read.add_argument("fields", nargs="*", help="field names (default: every field)")
    read.add_argument("--json", action="store_true", help="print JSON instead of a table")
    read.set_defaults(handler=_cmd_read)

    nodes = sub.add_parser("nodes", parents=[client], help="XEP-0326: show a thing's node tree")
    nodes.add_argument("thing", help=thing_help)
    nodes.set_defaults(handler=_cmd_nodes)

    set_ = sub.add_parser("set", parents=[client], help="XEP-0325: set a control parameter")
    set_.add_argument("thing", help=thing_help)
    set_.add_argument("node", help="node id, e.g. relay/relay")
    set_.add_argument("parameter", help="parameter name, e.g. relay")
    set_.add_argument("value", help="new value, e.g. true or 12.5")
    set_.set_defaults(handler=_cmd_set)

    watch = sub.add_parser("watch", parents=[client], help="subscribe to a thing's events")
    watch.add_argument("thing", help=thing_help)
    watch.add_argument("node", nargs="?", help="node id (default: every node)")
    watch.add_argument("fields", nargs="*", help="field names (default: every field)")
    watch.add_argument("--min-interval", type=float, help="at most one event per S seconds")
    watch.add_argument("--max-interval", type=float, help="at least one event per S seconds")
    watch.add_argument("--count", type=int, help="stop after N events")
    watch.set_defaults(handler=_cmd_watch)

    follow = sub.add_parser(
        "follow", parents=[client], help="XEP-0060: print the readings a thing publishes"
    )
    follow.add_argument("thing", help="the thing's JID")
    follow.add_argument("--kept", action="store_true", help="first print the items the node keeps")
    follow.add_argument("--count", type=int, help="stop after N readings")
    follow.set_defaults(handler=_cmd_follow)

    registry_help = "the thing registry (default: R= of the URI, else found on the server)"
    claim = sub.add_parser("claim", parents=[client], help="XEP-0347: claim a thing you own")
    claim.add_argument("uri", help="the thing's iotdisco: claim URI, or an image of its QR code")
    claim.add_argument("--registry", help=registry_help)
    claim.add_argument("--public", action="store_true", help="list the thing in public searches")
    claim.set_defaults(handler=_cmd_claim)

    search = sub.add_parser("search", parents=[client], help="XEP-0347: search public things")
    search.add_argument("conditions", nargs="+", help="e.g. MAN=example.org '#V>=1' 'SN~*12*'")
    search.add_argument("--registry", help="the thing registry (default: found on the server)")
    search.add_argument("--offset", type=int, default=0)
    search.add_argument("--max", type=int, default=20)
    search.set_defaults(handler=_cmd_search)

    for name, text in (("remove", "hide your thing from searches"), ("disown", "give up a thing")):
        owner_cmd = sub.add_parser(name, parents=[client], help=f"XEP-0347: {text}")
        owner_cmd.add_argument("thing", help="the thing's JID")
        owner_cmd.add_argument(
            "--registry", help="the thing registry (default: found on the server)"
        )
        owner_cmd.set_defaults(handler=_cmd_registry_owner, action=name)

    unregister = sub.add_parser(
        "unregister", help="remove this gateway from its thing registry (before uninstalling)"
    )
    unregister.add_argument("--config", type=Path, default=Path("/etc/ncap/ncap.toml"))
    unregister.add_argument("--timeout", type=float, default=15.0)
    unregister.set_defaults(handler=_cmd_unregister)

    status = sub.add_parser("status", help="show a running gateway's counters (its /metrics)")
    status.add_argument(
        "--url",
        default="http://127.0.0.1:9108/metrics",
        help="metrics endpoint (default: %(default)s)",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    status.add_argument("--timeout", type=float, default=5.0)
    status.set_defaults(handler=_cmd_status)
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


def _cmd_firstboot(args: argparse.Namespace) -> int:
    from ncap.firstboot import import_from_boot, publish_claim

    if not args.claim_only:
        result = import_from_boot(args.boot_dir, args.config_dir, args.state_dir)
        if result.imported:
            print(f"ncap: imported {', '.join(str(p) for p in result.installed)}")
        if result.registered:
            print(f"ncap: created the XMPP account {result.registered} in-band")
    publish_claim(args.state_dir, args.boot_dir, sys.stdout)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ncap.demo import run_demo

    async def go(stop: asyncio.Event) -> None:
        await run_demo(stop, as_json=args.json, workdir=args.workdir, unclaimed=args.unclaimed)

    _run_with_signals(go)
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        from ncap.config import read_secret

        try:
            return read_secret(args.password_file)
        except ConfigError as err:
            raise ConfigError("--password-file", err.problem) from None
    password = os.environ.get("NCAP_PASSWORD", "")
    if not password:
        raise ConfigError("--password-file", "give a password file or set NCAP_PASSWORD")
    return password


def _session(args: argparse.Namespace) -> contextlib.AbstractAsyncContextManager[Any]:
    from ncap.reader import session_with

    return session_with(
        args.jid,
        _password(args),
        args.thing,
        ca_file=args.ca,
        server=args.server,
        port=args.port,
        timeout=args.timeout,
    )


def _print(text: str) -> None:
    with contextlib.suppress(BrokenPipeError):
        print(text, flush=True)


def _cmd_read(args: argparse.Namespace) -> int:
    from ncap.reader import format_readout, read_thing, readout_as_json

    readout = asyncio.run(
        read_thing(
            args.jid,
            _password(args),
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
        _print(json.dumps(readout_as_json(readout), ensure_ascii=False))
    else:
        _print(format_readout(readout))
    return 0


def _cmd_nodes(args: argparse.Namespace) -> int:
    from ncap.owner import format_tree, node_tree

    async def go() -> str:
        async with _session(args) as (client, thing):
            return format_tree(await node_tree(client, thing, args.timeout))

    _print(asyncio.run(go()))
    return 0


def _cmd_set(args: argparse.Namespace) -> int:
    from ncap.owner import set_parameter

    async def go() -> None:
        async with _session(args) as (client, thing):
            result = await set_parameter(
                client, thing, args.node, args.parameter, args.value, args.timeout
            )
        narrowed = " (narrowed by the thing's provisioning)" if result.narrowed else ""
        _print(f"{args.node}: {args.parameter} = {args.value}{narrowed}")

    asyncio.run(go())
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from ncap.owner import format_push, watch

    async def go(stop: asyncio.Event) -> None:
        async with _session(args) as (client, thing):
            pushes = watch(
                client,
                thing,
                args.node,
                args.fields,
                min_interval=args.min_interval,
                max_interval=args.max_interval,
                timeout=args.timeout,
            )
            seen = 0
            async for pushed in _until(stop, pushes):
                _print(format_push(pushed))
                seen += 1
                if args.count is not None and seen >= args.count:
                    break

    _run_with_signals(go)
    return 0


async def _until(stop: asyncio.Event, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """*items* until *stop* is set."""
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            following = asyncio.ensure_future(anext(items))
            await asyncio.wait({following, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                return
            try:
                yield following.result()
            except StopAsyncIteration:
                return
    finally:
        stopped.cancel()
        await items.aclose()  # type: ignore[attr-defined]


def _registry(args: argparse.Namespace, registry: str | None) -> Any:
    from ncap.claim import registry_session

    return registry_session(
        args.jid,
        _password(args),
        registry,
        ca_file=args.ca,
        server=args.server,
        port=args.port,
        timeout=args.timeout,
    )


def _cmd_claim(args: argparse.Namespace) -> int:
    from ncap.claim import claim, claim_uri_from

    uri = claim_uri_from(args.uri)

    async def go() -> str:
        async with _registry(args, uri.registry or args.registry) as (client, registry):
            return await claim(client, registry, uri, public=args.public, timeout=args.timeout)

    _print(f"claimed {asyncio.run(go())}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from ncap.claim import RegistryToolError, format_found, search
    from xep.xep_0347.uri import parse_disco_uri

    try:
        terms = parse_disco_uri("iotdisco:" + ";".join(args.conditions)).terms
    except XepError as err:
        raise RegistryToolError(f"bad search condition: {err}") from None

    async def go() -> str:
        async with _registry(args, args.registry) as (client, registry):
            found = await search(
                client,
                registry,
                terms,
                offset=args.offset,
                max_count=args.max,
                timeout=args.timeout,
            )
        return format_found(found)

    _print(asyncio.run(go()))
    return 0


def _cmd_registry_owner(args: argparse.Namespace) -> int:
    from ncap.claim import disown, remove

    action = remove if args.action == "remove" else disown

    async def go() -> None:
        async with _registry(args, args.registry) as (client, registry):
            await action(client, registry, args.thing, timeout=args.timeout)

    asyncio.run(go())
    _print(f"{args.action}d {args.thing}" if args.action == "remove" else f"disowned {args.thing}")
    return 0


def _cmd_unregister(args: argparse.Namespace) -> int:
    from ncap.config import load_config
    from ncap.unregister import unregister_gateway

    config = load_config(args.config)
    registry = asyncio.run(unregister_gateway(config, args.timeout))
    _print(f"{config.xmpp.jid} unregistered from {registry}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from ncap.metrics import fetch_status, format_status, status_as_json

    status = fetch_status(args.url, args.timeout)  # MetricsError: unreachable, exit 69
    if args.json:
        _print(json.dumps(status_as_json(status)))
    else:
        _print(format_status(status, args.url))
    return 0


def _cmd_follow(args: argparse.Namespace) -> int:
    from slixmpp import JID

    from ncap.pubsub_items import Batch, format_batch
    from ncap.xmpp.connection import SecureClient
    from ncap.xmpp.follower import Follower
    from ncap.xmpp.publisher import node_name

    async def go(stop: asyncio.Event) -> None:
        client = SecureClient(
            args.jid, _password(args), ca_file=args.ca, server=args.server, port=args.port
        )
        printed = 0

        def show(batch: Batch) -> None:
            nonlocal printed
            for line in format_batch(batch):
                if args.count is not None and printed >= args.count:
                    stop.set()
                    return
                _print(line)
                printed += 1
            if args.count is not None and printed >= args.count:
                stop.set()

        await client.start(args.timeout)
        try:
            thing = JID(args.thing).bare
            follower = Follower(client, thing, node_name(thing), on_batch=show)
            await follower.subscribe(args.timeout)
            if args.kept:
                await follower.catch_up(args.timeout)
            await stop.wait()
        finally:
            await client.disconnect(wait=1.0)

    _run_with_signals(go)
    return 0
