"""``python -m tim_drivers.sim --port PATH --profile FILE``: run a simulated TIM.

Prints ``ready`` on stdout once the port is open.  Exit codes: 0 on SIGINT/SIGTERM or when
the port goes away, 78 (EX_CONFIG) for a bad profile, 74 (EX_IOERR) when the port cannot
be opened, 2 for bad options.

Fault injection for link tests (see ``FaultConfig``): ``--drop P``, ``--corrupt P``
(``--corrupt-mode byte``: each sent octet flipped with probability P, the default;
``frame``: each sent frame gets one flipped octet with probability P), ``--delay-ms N``,
``--reboot-after N`` (once, after N received frames), ``--seed S``.  On exit the counters
(``SimStats``) are printed to stderr as one line ``stats {json}`` and, with
``--stats FILE``, written to FILE as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path

from tim_drivers.errors import ProfileError, TimUnavailable
from tim_drivers.sim.profile import load_profile
from tim_drivers.sim.simulator import CORRUPT_MODES, FaultConfig, TimSimulator

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
    faults = parser.add_argument_group("fault injection")
    faults.add_argument(
        "--drop",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a received frame is ignored",
    )
    faults.add_argument(
        "--corrupt",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a sent octet (or frame) is corrupted",
    )
    faults.add_argument(
        "--corrupt-mode",
        choices=CORRUPT_MODES,
        default="byte",
        help="what --corrupt applies to (default byte)",
    )
    faults.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        metavar="N",
        help="added delay before every answer, in ms",
    )
    faults.add_argument(
        "--reboot-after",
        type=int,
        default=None,
        metavar="N",
        help="reboot once after N received frames",
    )
    faults.add_argument("--seed", type=int, default=None, help="seed of the fault generator")
    parser.add_argument(
        "--stats",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the counters as JSON to FILE on exit",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        config = FaultConfig(
            drop=args.drop,
            corrupt=args.corrupt,
            corrupt_mode=args.corrupt_mode,
            delay=args.delay_ms / 1000,
            reboot_after=args.reboot_after,
            seed=args.seed,
        )
    except ValueError as err:
        parser.error(str(err))
    try:
        simulator = TimSimulator(load_profile(args.profile), faults=config)
    except ProfileError as err:
        print(f"error: {err}", file=sys.stderr)
        return EX_CONFIG
    try:
        asyncio.run(_run(simulator, args.port))
    except TimUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return EX_IOERR
    finally:
        _report(simulator, args.stats)
    return 0


def _report(simulator: TimSimulator, path: Path | None) -> None:
    stats = json.dumps(simulator.stats.to_dict(), sort_keys=True)
    print(f"stats {stats}", file=sys.stderr, flush=True)
    if path is not None:
        try:
            path.write_text(stats + "\n")
        except OSError as err:
            print(f"error: cannot write {path}: {err.strerror}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
