"""TIM link benchmarks: channel reads/s over a pty, and codec cost per message.

    .venv/bin/python bench/tim_link.py [--runs 5] [--seconds 3] [--profile FILE]

(a) SerialTim.read() back to back over a raw pty pair, the simulator (hardware/tims/
    env-sensor.toml by default) in its own process on the pty master; one read is
    Trigger + ACK + Read data-set segment + reply.  Median of --runs runs.
(b) encode / decode cost per message (µs) of TLF-1 framing + the 1451.0 command or reply
    inside it, and of TEDS build / parse; timeit, median of 7 repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import subprocess
import sys
import time
import timeit
import tty
from collections.abc import Callable
from pathlib import Path

from tim_drivers.codec import p1451
from tim_drivers.codec.framing import FrameDecoder, FrameKind, LinkFrame
from tim_drivers.codec.teds import (
    FLOAT32_SAMPLE,
    KELVIN,
    CalKey,
    ChannelTeds,
    ChanType,
    MetaTeds,
)
from tim_drivers.drivers.p1451_serial import ChannelKind, SerialTim
from tim_drivers.transport.serial_link import SerialSettings

REPO = Path(__file__).resolve().parents[1]
SERVE = (
    "import asyncio, sys\n"
    "from tim_drivers.sim import TimSimulator\n"
    "asyncio.run(TimSimulator.from_file(sys.argv[1]).serve_fd(int(sys.argv[2])))\n"
)


async def _reads_per_second(slave_path: str, seconds: float) -> float:
    async with SerialTim(SerialSettings(slave_path)) as tim:
        info = await tim.discover()
        numbers = [c.number for c in info.channels if c.kind is ChannelKind.SENSOR]
        for number in numbers:  # warm-up
            await tim.read(number)
        reads = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            await tim.read(numbers[reads % len(numbers)])
            reads += 1
        return reads / (time.perf_counter() - started)


def bench_link(profile: Path, runs: int, seconds: float) -> list[float]:
    rates = []
    for _ in range(runs):
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        simulator = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(profile), str(master)],
            pass_fds=(master,),
            cwd=REPO,
        )
        try:
            rates.append(asyncio.run(_reads_per_second(os.ttyname(slave), seconds)))
        finally:
            simulator.terminate()
            simulator.wait(timeout=5)
            os.close(master)
            os.close(slave)
    return rates


def _cost_us(function: Callable[[], object]) -> float:
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    return statistics.median(timer.repeat(repeat=7, number=number)) / number * 1e6


def bench_codec() -> dict[str, float]:
    command = p1451.read_data_set(1, 0)
    command_wire = LinkFrame(FrameKind.COMMAND, 7, command.to_bytes()).to_bytes()
    reply_payload = p1451.Reply(True, p1451.Segment(0, struct.pack(">f", 294.65)).to_bytes())
    reply_wire = LinkFrame(FrameKind.REPLY, 7, reply_payload.to_bytes()).to_bytes()
    channel = ChannelTeds(
        cal_key=CalKey.CAL_NONE,
        chan_type=ChanType.SENSOR,
        phy_units=KELVIN,
        low_limit=233.15,
        high_limit=358.15,
        o_error=0.5,
        sample=FLOAT32_SAMPLE,
        update_time=0.0,
    )
    channel_image = channel.to_bytes()
    meta = MetaTeds(uuid=bytes(10), ohold_off=0.5, shold_off=2.0, test_time=1.0, max_chan=3)
    meta_image = meta.to_bytes()
    decoder = FrameDecoder()

    def encode_command() -> bytes:
        return LinkFrame(FrameKind.COMMAND, 7, p1451.read_data_set(1, 0).to_bytes()).to_bytes()

    def decode_command() -> p1451.Command:
        return p1451.Command.from_bytes(decoder.feed(command_wire)[0].payload)

    def encode_reply() -> bytes:
        segment = p1451.Segment(0, struct.pack(">f", 294.65)).to_bytes()
        return LinkFrame(FrameKind.REPLY, 7, p1451.Reply(True, segment).to_bytes()).to_bytes()

    def decode_reply() -> p1451.Segment:
        frame = decoder.feed(reply_wire)[0]
        return p1451.Segment.from_bytes(p1451.Reply.from_bytes(frame.payload).data)

    return {
        "TLF-1 + Read data-set command, encode": _cost_us(encode_command),
        "TLF-1 + Read data-set command, decode": _cost_us(decode_command),
        "TLF-1 + data-set reply (1 Float32), encode": _cost_us(encode_reply),
        "TLF-1 + data-set reply (1 Float32), decode": _cost_us(decode_reply),
        f"TransducerChannel TEDS ({len(channel_image)} octets), build": _cost_us(channel.to_bytes),
        f"TransducerChannel TEDS ({len(channel_image)} octets), parse": _cost_us(
            lambda: ChannelTeds.from_bytes(channel_image)
        ),
        f"Meta-TEDS ({len(meta_image)} octets), build": _cost_us(meta.to_bytes),
        f"Meta-TEDS ({len(meta_image)} octets), parse": _cost_us(
            lambda: MetaTeds.from_bytes(meta_image)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--profile", type=Path, default=REPO / "hardware" / "tims" / "env-sensor.toml"
    )
    args = parser.parse_args()
    rates = bench_link(args.profile, args.runs, args.seconds)
    print(
        f"channel reads/s over a pty ({args.profile.name}, {args.runs} x {args.seconds:g} s): "
        f"median {statistics.median(rates):.0f} (min {min(rates):.0f}, max {max(rates):.0f})"
    )
    for name, cost in bench_codec().items():
        print(f"{name:<50} {cost:8.2f} µs")


if __name__ == "__main__":
    main()
