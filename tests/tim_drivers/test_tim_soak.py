"""Soak: SerialTim reads continuously over a pty from a simulator that corrupts and drops.

The duration is ``TIM_SOAK_SECONDS`` (default 30 s, what issue "TIM link" asks for); this
is the only slow test of tests/tim_drivers.

What is asserted, with the simulator's counters (``SimStats``):

* every read returns a :class:`Sample` of the channel asked for, or raises a
  :class:`TimError` (anything else fails the test);
* the link never stays down: no more than ``MAX_FAILED_IN_A_ROW`` reads fail in a row
  (one failed read needs four failed attempts of one command) and the last read succeeds;
* no delivered reading is lost: ``samples >= readings_delivered``, where a reading is
  delivered when the simulator sent its reply at least once with no corrupted octet and
  with the receiver in sync (the previous frame's delimiter intact).  The NCAP can get
  more samples than that only from a corrupted reply that was decoded anyway (a corrupted
  delimiter followed by a stale-frame reset, or a CRC miss), so the excess is bounded by
  ``reading_transmissions_corrupted``; and it never gets more samples than readings sent.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tim_ptyutil import RawPty, open_raw_pty

from tim_drivers.drivers.p1451_serial import SerialTim
from tim_drivers.errors import TimError
from tim_drivers.sim import TimSimulator, parse_profile
from tim_drivers.sim.simulator import FaultConfig, SimStats
from tim_drivers.transport.serial_link import SerialSettings

SOAK_SECONDS = float(os.environ.get("TIM_SOAK_SECONDS", "30"))
CORRUPT = 0.01  # per sent octet
DROP = 0.01  # per received frame
REPLY_TIMEOUT = 0.25  # the profile's OHoldOff, which SerialTim uses as reply timeout
MAX_FAILED_IN_A_ROW = 3
WEATHER = Path(__file__).resolve().parents[2] / "hardware" / "tims" / "weather.toml"


@pytest.fixture
def pair() -> Iterator[RawPty]:
    with open_raw_pty() as p:
        yield p


def _weather() -> TimSimulator:
    document = tomllib.loads(WEATHER.read_text())
    document["tim"]["ohold_off"] = REPLY_TIMEOUT  # more reads per second than 0.5 s
    return TimSimulator(parse_profile(document, str(WEATHER)))


async def _soak(
    pair: RawPty, seconds: float, faults: FaultConfig
) -> tuple[int, list[bool], collections.Counter[str], SimStats]:
    simulator = _weather()
    task = asyncio.create_task(simulator.serve_fd(pair.master))
    samples = 0
    outcomes: list[bool] = []  # one per read: True = sample
    errors: collections.Counter[str] = collections.Counter()
    try:
        async with SerialTim(SerialSettings(pair.path)) as tim:
            # Discovery reads kilobytes of TEDS, hopeless at 1 % octet errors on a real
            # line too; the soak is about the steady state, so faults start afterwards.
            info = await tim.discover()
            simulator.faults = faults
            numbers = [channel.number for channel in info.channels]

            async def read_once() -> None:
                nonlocal samples
                number = numbers[len(outcomes) % len(numbers)]
                try:
                    sample = await tim.read(number)
                except TimError as err:
                    errors[type(err).__name__] += 1
                    outcomes.append(False)
                    return
                assert sample.channel == number
                samples += 1
                outcomes.append(True)

            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await read_once()
            # Past the deadline, read on until a read succeeds (bounded): the link is up.
            for _ in range(MAX_FAILED_IN_A_ROW + 1):
                if outcomes and outcomes[-1]:
                    break
                await read_once()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return samples, outcomes, errors, simulator.stats


def _longest_failure_run(outcomes: list[bool]) -> int:
    longest = run = 0
    for ok in outcomes:
        run = 0 if ok else run + 1
        longest = max(longest, run)
    return longest


@pytest.mark.integration
@pytest.mark.timeout(SOAK_SECONDS + 60)
async def test_tim_corruption_soak(pair: RawPty) -> None:
    faults = FaultConfig(drop=DROP, corrupt=CORRUPT, seed=21451)
    samples, outcomes, errors, stats = await _soak(pair, SOAK_SECONDS, faults)
    print(
        f"\nsoak {SOAK_SECONDS:.0f} s: {len(outcomes)} reads, {samples} samples, "
        f"errors {dict(errors)}, simulator {stats.to_dict()}"
    )
    assert stats.frames_corrupted > 0
    assert stats.frames_dropped > 0
    assert samples > 0
    assert _longest_failure_run(outcomes) <= MAX_FAILED_IN_A_ROW
    assert outcomes[-1], "the last read failed: the link stayed down"
    assert samples >= stats.readings_delivered
    assert samples - stats.readings_delivered <= stats.reading_transmissions_corrupted
    assert samples <= stats.readings_sent
