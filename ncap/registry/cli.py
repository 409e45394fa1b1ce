"""``ncap-registry``: run the thing registry and provisioning component.

    ncap-registry --component registry.example.org --secret-file /etc/ncap-registry/secret \\
        --database /var/lib/ncap-registry/registry.sqlite [--server 127.0.0.1 --port 5347]

Prints ``ready COMPONENT`` on standard output once attached to the server. Exit status 78 for a
bad secret file or database path, 69 when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from ncap.config import read_secret
from ncap.errors import ConfigError, NcapError
from ncap.logsetup import setup_logging
from ncap.registry.service import RegistryComponent
from ncap.registry.store import RegistryStore

EX_UNAVAILABLE = 69
EX_CONFIG = 78
ATTACH_TIMEOUT_S = 20.0


async def start_registry(
    component: str, secret: str, database: Path, *, server: str, port: int, timeout: float
) -> RegistryComponent:
    """Open the store, attach the component, return it once the server accepted it."""
    store = RegistryStore(database)
    registry = RegistryComponent(component, secret, server, port, store)
    registry.connect()
    try:
        async with asyncio.timeout(timeout):
            await registry.ready.wait()
    except TimeoutError:
        registry.abort()
        store.close()
        raise NcapError(
            f"component {component} not accepted by {server}:{port} within {timeout:g} s"
        ) from None
    return registry


async def stop_registry(registry: RegistryComponent) -> None:
    with contextlib.suppress(Exception):
        await registry.disconnect(wait=2.0)
    registry.store.close()


async def _serve(args: argparse.Namespace) -> int:
    secret = read_secret(args.secret_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        registry = await start_registry(
            args.component,
            secret,
            args.database,
            server=args.server,
            port=args.port,
            timeout=ATTACH_TIMEOUT_S,
        )
    except NcapError as err:
        print(f"ncap-registry: {err}", file=sys.stderr)
        return EX_UNAVAILABLE
    print(f"ready {args.component}", flush=True)
    try:
        await stop.wait()
    finally:
        await stop_registry(registry)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ncap-registry", description=__doc__.split("\n")[0])
    parser.add_argument("--component", required=True, help="the component's address")
    parser.add_argument("--secret-file", type=Path, required=True, help="XEP-0114 secret (0600)")
    parser.add_argument("--database", type=Path, required=True, help="SQLite state file")
    parser.add_argument("--server", default="127.0.0.1", help="server's component host")
    parser.add_argument("--port", type=int, default=5347, help="server's component port")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return asyncio.run(_serve(args))
    except ConfigError as err:
        print(f"ncap-registry: {err}", file=sys.stderr)
        return EX_CONFIG
    except NcapError as err:
        print(f"ncap-registry: {err}", file=sys.stderr)
        return EX_CONFIG


if __name__ == "__main__":
    raise SystemExit(main())
