"""``python -m tim_drivers.sim --port PATH --profile FILE``: run a simulated TIM.

Prints ``ready`` on stdout once the port is open.  Exit codes: 0 on SIGINT/SIGTERM or when
the port goes away, 78 (EX_CONFIG) for a bad profile, 74 (EX_IOERR) when the port cannot
be opened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from tim_drivers.errors import ProfileError, TimUnavailable
from tim_drivers.sim.profile import load_profile
from tim_drivers.sim.simulator import TimSimulator

_LOGGER = logging.getLogger(__name__)

EX_IOERR = 74
EX_CONFIG = 78


def _ready() -> None:
    print("ready", flush=True)


async def _run(simulator: TimSimulator, port: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.create_task(simulator.serve(port, on_ready=_ready))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for task in (serving, stopping):
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopping
    if serving.done() and not serving.cancelled():
        serving.result()  # re-raise a failure to open the port
    else:
        with contextlib.suppress(asyncio.CancelledError):
            await serving


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tim_drivers.sim", description=__doc__)
    parser.add_argument("--port", required=True, help="serial device or pty path to serve")
    parser.add_argument("--profile", required=True, help="TIM profile (TOML)")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        simulator = TimSimulator(load_profile(args.profile))
    except ProfileError as err:
        print(f"error: {err}", file=sys.stderr)
        return EX_CONFIG
    try:
        asyncio.run(_run(simulator, args.port))
    except TimUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return EX_IOERR
    return 0


if __name__ == "__main__":
    sys.exit(main())
