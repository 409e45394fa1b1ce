"""Modbus RTU polling throughput over a pty against a wire-timed slave simulator (issue 5).

ModbusDevice.poll() loops for every slave share one ModbusBus (kind rtu) on the slave end of
a pty; bench/rtu_slave.py serves the master end in its own process and delays
every reply to when it would end on a real wire (see its docstring).

    .venv/bin/python bench/modbus_rtu.py [--seconds 10] [--repeat 1] [--log-dir DIR]

For 9600 8N1 and 115200 8E1 (the pty is opened 8N1; 8E1 is modelled in timing only) and
two maps, (a) 3 slaves x 40 contiguous u16 holding registers and (b) 3 slaves x 32 mixed
channels (u16, i32, f32 word-swapped) over ~400 registers with gaps, it prints:

* util: (wire time of every request and reply + one t3.5 per frame) / wall time;
* delivered: Samples returned by poll() per second / the readings per second of the
  time-optimal request plan on that wire (cycle = request + t3.5 + turnaround + reply
  + t3.5 per request; the plan is found by dynamic programming, not by the planner);
* ignored: requests the simulator ignored for breaking the 3.5-character silence;
* host gap: median time from the end of a reply on the wire to the next request, against
  the t3.5 the protocol needs (the rest is host overhead);
* dead slave: the live slaves' readings/s with the third slave dead, as a % of their
  readings/s when the dead slave is not configured at all (and of the all-live run).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import logging
import multiprocessing
import os
import statistics
import sys
import time
import tty
from collections.abc import Callable
from pathlib import Path

import rtu_slave
from rtu_slave import Frame, SlaveImage, Wire

from tim_drivers.modbus.bus import ModbusBus, ModbusBusSettings
from tim_drivers.modbus.device import ModbusDevice
from tim_drivers.modbus.profile import DeviceProfile, parse_profile
from tim_drivers.modbus.registers import DataType, Function

TURNAROUND_S = 0.001
POLL_INTERVAL_S = 1e-4  # "as fast as it can go"
SLAVES = (1, 2, 3)
DEAD = 3
IMAGE_SIZE = 450


@dataclasses.dataclass(frozen=True, slots=True)
class Line:
    label: str
    baud: int
    bits: int

    @property
    def wire(self) -> Wire:
        return Wire(self.baud, self.bits)


LINES = (Line("9600 8N1", 9600, 10), Line("115200 8E1", 115200, 11))


# --- maps -----------------------------------------------------------------------------


def contiguous_profile(slave: int) -> DeviceProfile:
    channels = [
        {"name": f"r{i}", "function": "holding", "address": i, "poll_interval_s": POLL_INTERVAL_S}
        for i in range(40)
    ]
    device = {"name": f"contiguous{slave}", "slave_id": slave, "poll_interval_s": POLL_INTERVAL_S}
    return parse_profile({"device": device, "channels": channels}, f"contiguous{slave}")


# (function, first address, type, how many): an energy meter's layout with holes
_SPARSE_LAYOUT = (
    ("input", 0, "f32", 3),  # voltages L1..L3
    ("input", 6, "f32", 3),  # currents
    ("input", 12, "f32", 3),  # active power
    ("input", 24, "f32", 3),  # apparent power (hole 18..23)
    ("input", 30, "f32", 3),  # reactive power
    ("input", 70, "f32", 1),  # frequency (hole 36..69)
    ("input", 72, "f32", 2),  # import / export energy
    ("input", 100, "i32", 3),  # signed power, 32-bit integers
    ("input", 200, "f32", 2),  # THD
    ("holding", 300, "u16", 6),  # configuration words
    ("holding", 340, "u16", 2),
    ("holding", 398, "u16", 1),
)


def sparse_profile(slave: int) -> DeviceProfile:
    channels: list[dict[str, object]] = []
    for function, first, kind, count in _SPARSE_LAYOUT:
        step = 1 if kind == "u16" else 2
        for i in range(count):
            channel: dict[str, object] = {
                "name": f"{function}{first + i * step}",
                "function": function,
                "address": first + i * step,
                "type": kind,
                "poll_interval_s": POLL_INTERVAL_S,
            }
            if kind == "f32":
                channel["word_order"] = "little"
            channels.append(channel)
    device = {"name": f"sparse{slave}", "slave_id": slave, "poll_interval_s": POLL_INTERVAL_S}
    return parse_profile({"device": device, "channels": channels}, f"sparse{slave}")


MAPS: dict[str, Callable[[int], DeviceProfile]] = {
    "a 40 contiguous": contiguous_profile,
    "b sparse mixed": sparse_profile,
}


def image_of(profile: DeviceProfile) -> SlaveImage:
    """Register image with every channel encoded from a plausible value, holes as 0."""
    registers = dict.fromkeys(range(IMAGE_SIZE), 0)
    for index, channel in enumerate(profile.channels):
        kind = channel.format.data_type
        value: float = 230.5 + index if kind in (DataType.F32, DataType.F64) else index * 7
        if kind is DataType.I32:
            value = -1000 * index
        for offset, word in enumerate(channel.format.encode(value)):
            registers[channel.address + offset] = word
    return SlaveImage(registers, {a: a % 3 == 0 for a in range(IMAGE_SIZE)})


# --- the ideal ------------------------------------------------------------------------


def request_time(wire: Wire, function: Function, count: int) -> float:
    """One transaction on the wire: request, t3.5, turnaround, reply, t3.5."""
    data = (count + 7) // 8 if function.is_bit else 2 * count
    return wire.time(8) + wire.silence + TURNAROUND_S + wire.time(5 + data) + wire.silence


def optimal_cycle(wire: Wire, profile: DeviceProfile) -> tuple[float, int]:
    """Shortest time to read every channel once, and its request count.

    Requests are contiguous ranges of at most 125 registers; a dynamic programme over
    the channels of each table in address order chooses where to cut.
    """
    total, requests = 0.0, 0
    for function in Function:
        chans = sorted(
            (c for c in profile.channels if c.function is function), key=lambda c: c.address
        )
        best: list[tuple[float, int]] = [(0.0, 0)]
        for i in range(1, len(chans) + 1):
            options = []
            for j in range(i):
                span = chans[i - 1].end - chans[j].address
                if span <= function.max_read:
                    t, n = best[j]
                    options.append((t + request_time(wire, function, span), n + 1))
            best.append(min(options))
        total += best[-1][0]
        requests += best[-1][1]
    return total, requests


def planner_cycle(wire: Wire, device: ModbusDevice) -> tuple[float, int, int]:
    requests = [r for plan in device.schedule.plans for r in plan.requests]
    return (
        sum(request_time(wire, r.function, r.count) for r in requests),
        len(requests),
        sum(r.count for r in requests),
    )


# --- one run --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Run:
    seconds: float
    samples: dict[int, int]
    polls: dict[int, int]
    frames: list[Frame]
    wire: Wire
    timeouts: int
    skipped: int
    host_tx: list[float]  # pymodbus handed a request to the port (monotonic)
    host_rx: list[float]  # pymodbus received reply bytes

    def breakdown(self) -> tuple[float, float, float, float]:
        """Medians (s) of where a reply-to-next-request gap goes, and the simulator's lateness.

        up: reply written by the simulator -> bytes seen by pymodbus (pty + event loop);
        host: those bytes -> next request handed to the port (parse, bus lock, t3.5 wait,
        poll loop); down: handed to the port -> seen by the simulator; late: the
        simulator's reply write after its modelled wire end.
        """
        up, host, down, late = [], [], [], []
        requests = [f for f in self.frames if f.direction == "req"]
        starts = [f.start for f in requests]
        previous: Frame | None = None
        for frame in self.frames:
            if frame.direction == "rsp" and previous is not None:
                ideal = (
                    previous.end + self.wire.silence + TURNAROUND_S + self.wire.time(frame.octets)
                )
                late.append(frame.end - ideal)
                i = bisect.bisect_left(self.host_rx, frame.end)
                if i < len(self.host_rx):
                    rx = self.host_rx[i]
                    j = bisect.bisect_left(self.host_tx, rx)
                    if j < len(self.host_tx):
                        tx = self.host_tx[j]
                        k = bisect.bisect_left(starts, tx)
                        if k < len(starts):
                            up.append(rx - frame.end)
                            host.append(tx - rx)
                            down.append(starts[k] - tx)
            previous = frame
        if not up:
            return (float("nan"),) * 4  # type: ignore[return-value]
        return (
            statistics.median(up),
            statistics.median(host),
            statistics.median(down),
            statistics.median(late),
        )

    def readings_per_s(self, slaves: tuple[int, ...]) -> float:
        return sum(self.samples[s] for s in slaves) / self.seconds

    @property
    def utilisation(self) -> float:
        busy = sum(f.end - f.start + self.wire.silence for f in self.frames)
        return busy / self.seconds

    @property
    def ignored(self) -> int:
        return sum(1 for f in self.frames if f.ignored)

    @property
    def requests(self) -> int:
        return sum(1 for f in self.frames if f.direction == "req")

    def host_gap(self) -> float:
        """Median end of a reply on the wire -> start of the next request (s)."""
        gaps = [
            b.start - a.end
            for a, b in zip(self.frames, self.frames[1:], strict=False)
            if a.direction == "rsp" and b.direction == "req"
        ]
        return statistics.median(gaps) if gaps else float("nan")


async def _poll_all(
    settings: ModbusBusSettings,
    profiles: list[DeviceProfile],
    seconds: float,
    host_tx: list[float],
    host_rx: list[float],
) -> tuple[float, float, dict[int, int], dict[int, int], int, int]:
    bus = ModbusBus(settings)
    devices = [ModbusDevice(bus, p) for p in profiles]
    for device in devices:
        await device.open()
    # Timestamp raw frames inside pymodbus (instrumentation only, bus.py is unchanged).
    transaction = getattr(bus._client, "ctx", None)
    if transaction is not None:

        def trace(sending: bool, data: bytes) -> bytes:
            (host_tx if sending else host_rx).append(time.monotonic())
            return data

        transaction.trace_packet = trace
    samples = {d.slave_id: 0 for d in devices}
    polls = {d.slave_id: 0 for d in devices}
    t0 = time.monotonic()
    until = t0 + seconds

    async def loop(device: ModbusDevice) -> None:
        while (now := time.monotonic()) < until:
            got = await device.poll()
            if time.monotonic() > until:
                break
            samples[device.slave_id] += len(got)
            polls[device.slave_id] += 1 if got else 0
            due = device.next_due()
            now = time.monotonic()
            if due is not None and due > now:
                await asyncio.sleep(min(due, until) - now)

    await asyncio.gather(*(loop(d) for d in devices))
    for device in devices:
        await device.close()
    return t0, until, samples, polls, bus.counters.timeouts, bus.counters.skipped


def run_once(
    line: Line,
    map_name: str,
    polled: tuple[int, ...],
    dead: frozenset[int],
    seconds: float,
    log_dir: Path | None,
) -> Run:
    make = MAPS[map_name]
    profiles = {s: make(s) for s in SLAVES}
    images = {s: image_of(profiles[s]) for s in SLAVES}
    ctx = multiprocessing.get_context("fork")
    host_tx: list[float] = []
    host_rx: list[float] = []
    # One kernel pty, no relay: the simulator holds the master, the NCAP opens the slave
    # device by its path (a socat pair would add two relay hops to every frame).
    master, slave = os.openpty()
    tty.setraw(slave)
    slave_path = os.ttyname(slave)
    try:
        stop, ready = ctx.Event(), ctx.Event()
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=rtu_slave.serve,
            args=(master, line.wire, images, dead, TURNAROUND_S, stop, ready, send),
            daemon=True,
        )
        proc.start()
        send.close()
        try:
            if not ready.wait(10):
                raise RuntimeError("simulator did not start")
            settings = ModbusBusSettings(kind="rtu", port=slave_path, baudrate=line.baud)
            t0, t1, samples, polls, timeouts, skipped = asyncio.run(
                _poll_all(settings, [profiles[s] for s in polled], seconds, host_tx, host_rx)
            )
        finally:
            stop.set()
            frames, _resyncs = receive.recv() if receive.poll(10) else ([], 0)
            proc.join(10)
    finally:
        os.close(slave)
        os.close(master)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        name = f"{line.label}_{map_name}_{'-'.join(map(str, polled))}_dead{len(dead)}"
        with (log_dir / (name.replace(" ", "_") + ".csv")).open("w") as out:
            out.write("direction,slave,function,octets,start,end,ignored,idle_before\n")
            for f in frames:
                out.write(
                    f"{f.direction},{f.slave},{f.function},{f.octets},{f.start:.6f},"
                    f"{f.end:.6f},{int(f.ignored)},{f.idle_before:.6f}\n"
                )
    inside = [f for f in frames if f.start >= t0 and f.end <= t1]
    return Run(t1 - t0, samples, polls, inside, line.wire, timeouts, skipped, host_tx, host_rx)


# --- report ---------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per run (default 10)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; medians shown")
    parser.add_argument("--log-dir", type=Path, help="write every run's frame log as CSV")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    started = time.monotonic()

    head = (
        f"{'wire':<11} {'map':<16} {'plan req/regs':>13} {'opt req':>7} {'req/s':>7} "
        f"{'readings/s':>10} {'optimal/s':>9} {'delivered':>9} {'util':>6} {'ignored':>7} "
        f"{'host gap':>8} {'t3.5':>6}"
    )
    dead_head = (
        f"{'wire':<11} {'map':<16} {'live alone/s':>12} {'live+dead/s':>11} {'% alone':>7} "
        f"{'all live/s':>10} {'% all live':>10} {'dead reqs':>9} {'timeouts':>8}"
    )
    gap_head = (
        f"{'wire':<11} {'map':<16} {'host gap':>8} {'t3.5':>6} {'pty up':>7} "
        f"{'host':>7} {'pty down':>8} {'host-t3.5':>9} {'sim late':>8}"
    )
    rows, dead_rows, gap_rows = [], [], []
    live = tuple(s for s in SLAVES if s != DEAD)
    for line in LINES:
        for map_name, make in MAPS.items():
            wire = line.wire
            cycle = 0.0
            opt_requests = plan_requests = plan_regs = 0
            channels = 0
            for s in SLAVES:
                profile = make(s)
                t, n = optimal_cycle(wire, profile)
                cycle += t
                opt_requests += n
                channels += len(profile.channels)
                probe_bus = ModbusBus(ModbusBusSettings(kind="rtu", port="x", baudrate=line.baud))
                probe = ModbusDevice(probe_bus, profile)
                _, pr, pg = planner_cycle(wire, probe)
                plan_requests += pr
                plan_regs += pg
            optimal = channels / cycle
            full, alone, dead = [], [], []
            for _ in range(args.repeat):
                full.append(
                    run_once(line, map_name, SLAVES, frozenset(), args.seconds, args.log_dir)
                )
                alone.append(
                    run_once(line, map_name, live, frozenset(), args.seconds, args.log_dir)
                )
                dead.append(
                    run_once(line, map_name, SLAVES, frozenset({DEAD}), args.seconds, args.log_dir)
                )
            readings = med([r.readings_per_s(SLAVES) for r in full])
            rows.append(
                f"{line.label:<11} {map_name:<16} {f'{plan_requests}/{plan_regs}':>13} "
                f"{opt_requests:>7} {med([r.requests / r.seconds for r in full]):>7.1f} "
                f"{readings:>10.1f} {optimal:>9.1f} {readings / optimal:>9.1%} "
                f"{med([r.utilisation for r in full]):>6.1%} "
                f"{max(r.ignored for r in full + alone + dead):>7} "
                f"{med([r.host_gap() for r in full]) * 1e3:>6.2f}ms {wire.silence * 1e3:>4.2f}ms"
            )
            parts = [r.breakdown() for r in full]
            up, host, down, late = (med([p[i] for p in parts]) * 1e3 for i in range(4))
            gap_rows.append(
                f"{line.label:<11} {map_name:<16} "
                f"{med([r.host_gap() for r in full]) * 1e3:>6.2f}ms {wire.silence * 1e3:>4.2f}ms "
                f"{up:>5.2f}ms {host:>5.2f}ms {down:>6.2f}ms {host - wire.silence * 1e3:>7.2f}ms "
                f"{late:>6.3f}ms"
            )
            alone_rate = med([r.readings_per_s(live) for r in alone])
            dead_rate = med([r.readings_per_s(live) for r in dead])
            all_live = med([r.readings_per_s(live) for r in full])
            dead_reqs = med(
                [sum(1 for f in r.frames if f.direction == "req" and f.slave == DEAD) for r in dead]
            )
            dead_rows.append(
                f"{line.label:<11} {map_name:<16} {alone_rate:>12.1f} {dead_rate:>11.1f} "
                f"{dead_rate / alone_rate:>7.1%} {all_live:>10.1f} {dead_rate / all_live:>10.1%} "
                f"{dead_reqs:>9.0f} {med([r.timeouts for r in dead]):>8.0f}"
            )
    print(
        f"Modbus RTU over a pty, wire-timed simulator, turnaround {TURNAROUND_S * 1e3:.0f} ms, "
        f"{args.seconds:g} s per run, {args.repeat} run(s) per case (medians)"
    )
    print(head)
    print("\n".join(rows))
    print(f"\nDead slave (slave {DEAD} never answers; live = slaves {live}):")
    print(dead_head)
    print("\n".join(dead_rows))
    print("\nWhere the host gap (reply end on the wire -> next request) goes, medians:")
    print(gap_head)
    print("\n".join(gap_rows))
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
