"""Uplink benchmarks through a private Prosody on loopback: readings in, journal, PubSub out.

    .venv/bin/python bench/uplink.py [--runs 3] [--only throughput,drain,rss,startup]
        [--readings 100000] [--backlog 600000] [--sweep] [--prosody-read-size BYTES]

Every figure is the median of --runs runs (range in brackets), each run with a fresh thing
account (an empty PEP node) and a fresh state directory. Prosody is one process for the
whole bench and never counted in the gateway's CPU time. --prosody-read-size sets Prosody's
``network_default_read_size`` (see BenchProsody). With BENCH_PROFILE=PREFIX in the
environment, the measured part of throughput and drain is profiled into PREFIX.throughput
and PREFIX.drain (cProfile, the event loop's thread).

throughput  A real Gateway in this process (no TIMs): synthetic ``Reading``s of NODES nodes
            by FIELDS fields, one ``uplink.record()`` per node and poll, as fast as the
            pipeline takes them (at most MAX_OUTSTANDING readings not yet acknowledged), until
            --readings were acknowledged by the server. Readings per CPU-second of this process
            (``time.process_time``: the loop, the journal's writer thread, the feeder) and
            per wall second; Prosody's CPU alongside.
drain       --backlog readings (10 minutes at 1000 readings/s: 20 nodes x 50 fields, polled
            every second) committed to the journal before the gateway starts, i.e. while it
            had no uplink; then a real Gateway starts and publishes until the journal depth is
            0. Readings drained per second from the moment the PubSub node is ready. --sweep
            repeats it (--sweep-backlog readings) over [publish] batch_max x window.
rss         ``python -m ncap run`` as a subprocess with 1000 channels: 4 Modbus TCP devices x
            250 input registers (a generated register map, polled every second) on one
            pymodbus server in this process. VmRSS from /proc after its first reading was
            acknowledged and RSS_SETTLE_S more seconds of publishing; as run from this venv,
            and as a production install runs it (without pygments, see WITHOUT_PYGMENTS).
            Beside it: the RSS of the interpreter alone and after the gateway's imports, and
            one run under tracemalloc from the first import on: the Python heap after the
            imports and after running, and the source lines that grew most in between.
startup     ``python -m ncap run`` with one small Modbus device (the demo's XY-MD02): from
            the process's start to the metrics endpoint answering, the uplink online and the
            first reading acknowledged (``ncap_readings_acknowledged`` > 0, polled every
            POLL_S).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from xml.etree.ElementTree import tostring

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pymodbus.datastore import (  # noqa: E402
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusTcpServer  # noqa: E402

from ncap.app import Gateway  # noqa: E402
from ncap.config import Config, load_config  # noqa: E402
from ncap.demo import write_config  # noqa: E402
from ncap.journal import Journal  # noqa: E402
from ncap.metrics import GatewayStatus, MetricsError, fetch_status  # noqa: E402
from ncap.pubsub_items import batch_to_xml  # noqa: E402
from ncap.rig.modbus import DemoModbusDevice  # noqa: E402
from ncap.rig.prosody import Account, PrivateProsody  # noqa: E402
from ncap.sensors import Reading  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
TIMEOUT_S = 60.0
POLL_S = 0.01

NODES = 10
FIELDS = 25
MAX_OUTSTANDING = 20_000
WARMUP_READINGS = 10_000

BACKLOG_NODES = 20
BACKLOG_FIELDS = 50

RSS_DEVICES = 4
RSS_REGISTERS = 250
RSS_SETTLE_S = 10.0

SWEEP_BATCH_MAX = (250, 500, 1000)
SWEEP_WINDOW = (4, 8, 16)

# The bench measures the uplink: no thing registry to look for on the server.
NO_REGISTRY = "\n[registry]\nenabled = false\n"


# -- the rig ------------------------------------------------------------------------------------


class BenchProsody(PrivateProsody):
    """The rig's Prosody; with *read_size*, c2s connections read that many bytes at a time.

    Prosody reads client connections in chunks of ``network_default_read_size`` (4096 bytes
    by default). When a chunk leaves TLS data buffered, its loop pauses for at least 1 ms
    (``min_wait``) before reading on, so a 25 kB item costs it several idle milliseconds.
    """

    def __init__(self, workdir: Path, read_size: int | None) -> None:
        self.read_size = read_size  # before super(): it writes the config already
        super().__init__(workdir, log_level="warn")

    def _write_config(self) -> None:
        super()._write_config()
        if self.read_size is None:
            return
        text = self.config_file.read_text(encoding="utf-8")
        anchor = "\nnetwork_settings = "  # a global option: before any VirtualHost
        assert anchor in text
        setting = f"\nnetwork_default_read_size = {self.read_size}"
        self.config_file.write_text(text.replace(anchor, setting + anchor, 1), encoding="utf-8")


class BenchRig:
    """One private Prosody for the bench; a fresh account and work directory per run."""

    def __init__(self, root: Path, read_size: int | None) -> None:
        self.root = root
        self.prosody = BenchProsody(root / "prosody", read_size)
        self._cases = itertools.count()

    def case(self) -> tuple[Path, Account]:
        number = next(self._cases)
        workdir = self.root / f"case-{number}"
        workdir.mkdir()
        return workdir, self.prosody.register(f"thing{number}")

    def prosody_cpu_s(self) -> float:
        pid = self.prosody.pid
        assert pid is not None
        return cpu_seconds(pid)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile (KiB) and Threads of a process."""
    wanted = {"VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"}
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            out[key] = int(value.split()[0])
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def publish_table(batch_max: int | None, window: int | None) -> str:
    lines = [
        f"batch_max = {batch_max}\n" if batch_max else "",
        f"window = {window}\n" if window else "",
    ]
    return "\n[publish]\n" + "".join(lines)


def gateway_config(workdir: Path, rig: BenchRig, account: Account, extra: str) -> Path:
    return write_config(workdir, rig.prosody, account, {}, extra=NO_REGISTRY + extra)


@contextlib.contextmanager
def profiled(name: str) -> Iterator[None]:
    """With BENCH_PROFILE=PREFIX in the environment: cProfile of this thread into PREFIX.NAME
    (wall time: idle is the selector's ``poll``; the journal's writer thread is not in it)."""
    prefix = os.environ.get("BENCH_PROFILE")
    if not prefix:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(f"{prefix}.{name}")


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise RuntimeError(f"not within {timeout} s: {what}") from None


@contextlib.asynccontextmanager
async def running_gateway(config: Config) -> AsyncIterator[Gateway]:
    gateway = Gateway(config)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


# -- throughput ---------------------------------------------------------------------------------


async def feed(gateway: Gateway, count: int) -> None:
    """Record *count* readings (a multiple of NODES * FIELDS) as fast as they are taken in,
    then wait until all of them were acknowledged."""
    uplink = gateway.uplink
    acked = gateway.metrics.readings_acked
    start = acked.value
    names = [f"field{n:02d}" for n in range(FIELDS)]
    nodes = [f"dev{n:02d}" for n in range(NODES)]
    fed = 0
    for poll in itertools.count():
        if fed >= count:
            break
        now = datetime.now(UTC)
        for node in nodes:
            uplink.record(
                [
                    Reading(node, name, 20.0 + (poll + i) % 100 / 10, "°C", 1, now)
                    for i, name in enumerate(names)
                ]
            )
        fed += NODES * FIELDS
        await asyncio.sleep(0)
        while fed - (acked.value - start) > MAX_OUTSTANDING:
            await asyncio.sleep(0.002)
    await wait_for(lambda: acked.value - start >= count, "every reading acknowledged")


async def throughput_run(
    rig: BenchRig, readings: int, batch_max: int | None = None, window: int | None = None
) -> dict[str, float]:
    per_poll = NODES * FIELDS
    readings = -(-readings // per_poll) * per_poll  # whole polls
    workdir, account = rig.case()
    config = load_config(gateway_config(workdir, rig, account, publish_table(batch_max, window)))
    async with running_gateway(config) as gateway:
        await gateway.wait_ready(TIMEOUT_S)
        publisher = gateway.uplink.publisher
        assert publisher is not None
        async with asyncio.timeout(TIMEOUT_S):
            await publisher.ready.wait()
        await feed(gateway, WARMUP_READINGS)
        items_before = publisher.published_items
        prosody_before = rig.prosody_cpu_s()
        cpu_before = time.process_time()
        started = time.perf_counter()
        with profiled("throughput"):
            await feed(gateway, readings)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        prosody_cpu = rig.prosody_cpu_s() - prosody_before
        items = publisher.published_items - items_before
        return {
            "per_cpu_s": readings / cpu,
            "per_wall_s": readings / wall,
            "gateway_cpu_share": cpu / wall,
            "prosody_cpu_share": prosody_cpu / wall,
            "prosody_cpu_us_per_reading": prosody_cpu / readings * 1e6,
            "readings_per_item": readings / max(items, 1),
        }


# -- backlog drain ------------------------------------------------------------------------------


def prefill(path: Path, count: int, batch_max: int) -> int:
    """*count* readings committed to the journal at *path*, as an outage of count/1000 s at
    1000 readings/s leaves them; return the payload size of an item of *batch_max* of them."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    names = [f"field{n:02d}" for n in range(BACKLOG_FIELDS)]
    nodes = [f"dev{n:02d}" for n in range(BACKLOG_NODES)]
    per_second = BACKLOG_NODES * BACKLOG_FIELDS
    began = datetime.now(UTC) - timedelta(seconds=count / per_second)

    async def fill() -> int:
        journal = Journal(path, max_memory_entries=count + 1)
        try:
            for n in range(count):
                second, index = divmod(n // BACKLOG_FIELDS, BACKLOG_NODES)
                stamp = began + timedelta(seconds=second + index / BACKLOG_NODES)
                value = f"{(second + n) % 500 / 10:.1f}"
                journal.append(
                    "reading", nodes[index], names[n % BACKLOG_FIELDS], value, "°C", stamp
                )
                if n % 100_000 == 99_999:
                    await journal.commit()
            await journal.commit()
            sample = journal.pending(0, batch_max)
            return len(tostring(batch_to_xml("thing@ncap.test", sample)[1]))
        finally:
            journal.close()

    return asyncio.run(fill())


async def drain_run(
    rig: BenchRig, backlog: int, batch_max: int | None = None, window: int | None = None
) -> dict[str, float]:
    workdir, account = rig.case()
    config = load_config(gateway_config(workdir, rig, account, publish_table(batch_max, window)))
    journal_path = config.gateway.resolved_state_dir() / "journal.sqlite"
    item_bytes = await asyncio.to_thread(prefill, journal_path, backlog, config.publish.batch_max)
    started = time.perf_counter()
    async with running_gateway(config) as gateway:
        publisher = gateway.uplink.publisher
        assert publisher is not None
        async with asyncio.timeout(TIMEOUT_S):
            await publisher.ready.wait()
        ready = time.perf_counter()
        cpu_before = time.process_time()
        prosody_before = rig.prosody_cpu_s()
        journal = gateway.uplink.journal
        assert journal.stats().depth == backlog
        with profiled("drain"):
            await wait_for(lambda: journal.stats().depth == 0, "the backlog drained", 3600)
        done = time.perf_counter()
        cpu = time.process_time() - cpu_before
        prosody_cpu = rig.prosody_cpu_s() - prosody_before
        items = publisher.published_items
    return {
        "per_s": backlog / (done - ready),
        "seconds": done - ready,
        "connect_s": ready - started,
        "gateway_cpu_share": cpu / (done - ready),
        "prosody_cpu_share": prosody_cpu / (done - ready),
        "items": items,
        "item_bytes": item_bytes,
    }


# -- subprocess gateways: RSS and start-up ------------------------------------------------------


def register_map(path: Path, registers: int) -> Path:
    """A Modbus register map of *registers* u16 input registers, polled every second."""
    channels = "".join(
        f'\n[[channels]]\nname = "r{n:03d}"\nfunction = "input"\naddress = {n}\n'
        'type = "u16"\nscale = 0.1\nprecision = 1\nunit = "°C"\n'
        for n in range(registers)
    )
    path.write_text(
        f'[device]\nname = "bench-{registers}"\nslave_id = 1\npoll_interval_s = 1.0\n{channels}',
        encoding="utf-8",
    )
    return path


class ModbusFarm:
    """One Modbus TCP server on 127.0.0.1 answering for *devices* slaves (ids 1..devices)."""

    def __init__(self, devices: int, registers: int) -> None:
        contexts: dict[int, Any] = {
            slave: ModbusDeviceContext(
                ir=ModbusSequentialDataBlock(  # type: ignore[no-untyped-call]
                    1, [200 + (slave * 7 + n) % 100 for n in range(registers)]
                )
            )
            for slave in range(1, devices + 1)
        }
        self._server = ModbusTcpServer(
            ModbusServerContext(devices=contexts, single=False), address=("127.0.0.1", 0)
        )
        self.port = 0

    async def start(self) -> None:
        await self._server.serve_forever(background=True)
        listener = self._server.transport
        assert listener is not None
        self.port = listener.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        await self._server.shutdown()  # type: ignore[no-untyped-call]


@dataclass
class GatewayProcess:
    """``python -m ncap run`` (or the traced variant) and its metrics endpoint."""

    process: subprocess.Popen[bytes]
    url: str
    started: float
    log: IO[bytes]

    async def status(self) -> GatewayStatus | None:
        try:
            return await asyncio.to_thread(fetch_status, self.url, 1.0)
        except MetricsError:
            if self.process.poll() is not None:
                self.log.flush()
                raise RuntimeError(
                    f"the gateway exited with {self.process.returncode}; see {self.log.name}"
                ) from None
            return None

    async def first(self, condition: Callable[[GatewayStatus], bool]) -> float:
        """Seconds from the start until the metrics say *condition*."""
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                status = await self.status()
                if status is not None and condition(status):
                    return time.perf_counter() - self.started
                await asyncio.sleep(POLL_S)


@contextlib.asynccontextmanager
async def gateway_process(config: Path, argv: list[str]) -> AsyncIterator[GatewayProcess]:
    """Run *argv* (a gateway on *config*, metrics on a free port); stop it by its PID (SIGTERM,
    then SIGKILL)."""
    port = free_port()
    text = config.read_text(encoding="utf-8")
    assert "[metrics]\nport = 0\n" in text
    config.write_text(text.replace("[metrics]\nport = 0\n", f"[metrics]\nport = {port}\n"))
    with (config.parent / "gateway.log").open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stderr=log)
        try:
            yield GatewayProcess(process, f"http://127.0.0.1:{port}/metrics", started, log)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)


def modbus_tables(port: int, profile: str, devices: int) -> str:
    tables = f'\n[[modbus]]\nname = "bench"\nkind = "tcp"\ntcp_port = {port}\n'
    return tables + "".join(
        f'\n[[modbus.device]]\nname = "dev{n}"\nprofile = "{profile}"\nslave_id = {n}\n'
        for n in range(1, devices + 1)
    )


def acked(status: GatewayStatus) -> bool:
    return bool(status.readings_acknowledged)


async def rss_run(
    rig: BenchRig, farm: ModbusFarm, *, production: bool = False, traced: bool = False
) -> dict[str, Any]:
    workdir, account = rig.case()
    profile = register_map(workdir / "bench-map.toml", RSS_REGISTERS)
    extra = modbus_tables(farm.port, str(profile), RSS_DEVICES)
    config = gateway_config(workdir, rig, account, extra)
    trace_file = workdir / "tracemalloc.txt"
    argv = [sys.executable, "-m", "ncap"]
    if production:
        argv = [sys.executable, "-c", WITHOUT_PYGMENTS]
    if traced:
        argv = [sys.executable, "-c", TRACED_GATEWAY, str(trace_file)]
    argv += ["run", "--config", str(config)]
    async with gateway_process(config, argv) as gateway:
        first = await gateway.first(acked)
        before = await gateway.status()
        await asyncio.sleep(RSS_SETTLE_S)
        after = await gateway.status()
        memory = memory_kib(gateway.process.pid)
        assert before is not None
        assert after is not None
        rate = ((after.readings_acknowledged or 0) - (before.readings_acknowledged or 0)) / (
            RSS_SETTLE_S
        )
        if traced:
            gateway.process.send_signal(signal.SIGUSR1)
            await wait_for(trace_file.exists, "the tracemalloc dump")
    result: dict[str, Any] = {
        "rss_mib": memory["VmRSS"] / 1024,
        "hwm_mib": memory["VmHWM"] / 1024,
        "anon_mib": memory["RssAnon"] / 1024,
        "file_mib": memory["RssFile"] / 1024,
        "first_ack_s": first,
        "acked_per_s": rate,
        "depth": after.journal_depth,
        "threads": memory["Threads"],
    }
    if traced:
        result["trace"] = trace_file.read_text(encoding="utf-8")
    return result


def import_rss_mib(code: str) -> float:
    """VmRSS of a fresh interpreter after running *code*."""
    probe = (
        f"{code}\nimport pathlib\n"
        "print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines() "
        "if l.startswith('VmRSS')][0].split()[1])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip()) / 1024


async def startup_run(rig: BenchRig, device: DemoModbusDevice) -> dict[str, float]:
    workdir, account = rig.case()
    extra = modbus_tables(device.port, "xy-md02", 1)
    config = gateway_config(workdir, rig, account, extra)
    argv = [sys.executable, "-m", "ncap", "run", "--config", str(config)]
    async with gateway_process(config, argv) as gateway:
        metrics = await gateway.first(lambda _status: True)
        online = await gateway.first(lambda status: bool(status.uplink_online))
        first = await gateway.first(acked)
    return {"metrics_s": metrics, "online_s": online, "first_ack_s": first}


# -- the traced gateway (a child process) -------------------------------------------------------

# ``ncap run`` under tracemalloc from the first import on (a -c program, so nothing of this
# file is imported first). SIGUSR1 writes: the Python heap after the imports, the heap now,
# and the lines that allocated the most since the imports.
TRACED_GATEWAY = """
import os, signal, sys, tracemalloc
tracemalloc.start()
sys.modules["pygments"] = None  # as in production (see WITHOUT_PYGMENTS)
from ncap.cli import main
import ncap.app
after_imports = tracemalloc.get_traced_memory()[0]
base = {}
for stat in tracemalloc.take_snapshot().statistics("lineno"):
    frame = stat.traceback[0]
    base[frame.filename, frame.lineno] = stat.size
def dump(_signum, _frame):
    now = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, "<string>"), tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    growth = []
    for stat in now.statistics("lineno"):
        frame = stat.traceback[0]
        growth.append((stat.size - base.get((frame.filename, frame.lineno), 0), frame))
    growth.sort(key=lambda item: -item[0])
    total = sum(stat.size for stat in now.statistics("filename"))
    lines = [f"{after_imports} {total} {len(sys.modules)}"]
    lines += [f"{size} {frame.filename}:{frame.lineno}" for size, frame in growth[:10]]
    with open(sys.argv[1] + ".part", "w") as out:
        out.write("\\n".join(lines) + "\\n")
    os.replace(sys.argv[1] + ".part", sys.argv[1])
signal.signal(signal.SIGUSR1, dump)
sys.exit(main(sys.argv[2:]))
"""

# ``ncap run`` as a production install runs it: without pygments, which only the dev extras
# bring in (pytest needs it) and which slixmpp imports when it finds it.
WITHOUT_PYGMENTS = """
import sys
sys.modules["pygments"] = None
from ncap.cli import main
sys.exit(main(sys.argv[1:]))
"""


def short_path(filename: str) -> str:
    stdlib = f"python{sys.version_info.major}.{sys.version_info.minor}/"
    for marker in ("site-packages/", f"{REPO}/", stdlib):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def format_trace(text: str) -> list[str]:
    head, *rows = text.splitlines()
    after_imports, now, modules = (int(word) for word in head.split())
    lines = [
        f"Python heap after imports {after_imports / 2**20:.1f} MiB, after running "
        f"{now / 2**20:.1f} MiB ({modules} modules); most grown since the imports:"
    ]
    for row in rows:
        size, where = row.split(" ", 1)
        lines.append(f"    {int(size) / 2**10:7.0f} KiB  {short_path(where)}")
    return lines


# -- reporting ----------------------------------------------------------------------------------


def median_range(values: list[float], unit: str, digits: int = 0) -> str:
    mid = statistics.median(values)
    if len(values) == 1:
        return f"{mid:.{digits}f} {unit}"
    return f"{mid:.{digits}f} {unit} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def report(title: str, runs: list[dict[str, Any]], units: dict[str, tuple[str, int]]) -> None:
    print(f"\n{title} ({len(runs)} runs: median [min-max])", flush=True)
    for key, (unit, digits) in units.items():
        print(f"  {key:28} {median_range([run[key] for run in runs], unit, digits)}", flush=True)


async def bench(args: argparse.Namespace, rig: BenchRig) -> None:
    only = set(args.only.split(","))
    if "throughput" in only:
        runs = [await throughput_run(rig, args.readings) for _ in range(args.runs)]
        report(
            f"throughput: {args.readings} readings, {NODES} nodes x {FIELDS} fields per poll",
            runs,
            {
                "per_cpu_s": ("readings/CPU-s", 0),
                "per_wall_s": ("readings/s", 0),
                "gateway_cpu_share": ("CPU-s/s", 2),
                "prosody_cpu_share": ("CPU-s/s", 2),
                "prosody_cpu_us_per_reading": ("µs", 1),
                "readings_per_item": ("readings", 0),
            },
        )
    if "drain" in only:
        runs = [await drain_run(rig, args.backlog) for _ in range(args.runs)]
        report(
            f"drain: {args.backlog} readings committed while offline (defaults)",
            runs,
            {
                "per_s": ("readings/s", 0),
                "seconds": ("s", 1),
                "connect_s": ("s", 2),
                "gateway_cpu_share": ("CPU-s/s", 2),
                "prosody_cpu_share": ("CPU-s/s", 2),
                "items": ("items", 0),
                "item_bytes": ("bytes/item", 0),
            },
        )
    if args.sweep:
        print(f"\ndrain sweep: {args.sweep_backlog} readings, median of {args.runs}", flush=True)
        for batch_max, window in itertools.product(SWEEP_BATCH_MAX, SWEEP_WINDOW):
            runs = [
                await drain_run(rig, args.sweep_backlog, batch_max, window)
                for _ in range(args.runs)
            ]
            rate = median_range([run["per_s"] for run in runs], "readings/s")
            gateway = statistics.median(run["gateway_cpu_share"] for run in runs)
            prosody = statistics.median(run["prosody_cpu_share"] for run in runs)
            print(
                f"  batch_max {batch_max:4} window {window:2}: {rate}, gateway {gateway:.2f} "
                f"CPU-s/s, prosody {prosody:.2f} CPU-s/s, {runs[0]['item_bytes']} bytes/item",
                flush=True,
            )
    if "rss" in only:
        farm = ModbusFarm(RSS_DEVICES, RSS_REGISTERS)
        await farm.start()
        try:
            as_here = [await rss_run(rig, farm) for _ in range(args.runs)]
            production = [await rss_run(rig, farm, production=True) for _ in range(args.runs)]
            traced = await rss_run(rig, farm, production=True, traced=True)
        finally:
            await farm.stop()
        units = {
            "rss_mib": ("MiB", 1),
            "anon_mib": ("MiB", 1),
            "file_mib": ("MiB", 1),
            "hwm_mib": ("MiB", 1),
            "threads": ("threads", 0),
            "acked_per_s": ("readings/s", 0),
            "first_ack_s": ("s", 2),
        }
        what = (
            f"{RSS_DEVICES} Modbus TCP devices x {RSS_REGISTERS} registers polled every second, "
            f"after the first ack + {RSS_SETTLE_S:.0f} s"
        )
        report(f"rss: python -m ncap run (this venv), {what}", as_here, units)
        report(f"rss: the same without pygments (a production install), {what}", production, units)
        bare = import_rss_mib("pass")
        imported = import_rss_mib(
            'import sys; sys.modules["pygments"] = None; import ncap.cli, ncap.app, ncap.config'
        )
        print(f"  {'RSS of the interpreter alone':36} {bare:.1f} MiB", flush=True)
        print(f"  {'... after the gateway imports':36} {imported:.1f} MiB", flush=True)
        print(f"  under tracemalloc (one run, RSS {traced['rss_mib']:.1f} MiB):", flush=True)
        for line in format_trace(traced["trace"]):
            print(f"  {line}", flush=True)
    if "startup" in only:
        device = DemoModbusDevice()
        await device.start()
        try:
            runs = [await startup_run(rig, device) for _ in range(args.runs)]
        finally:
            await device.stop()
        report(
            "startup: python -m ncap run, one Modbus TCP device (xy-md02)",
            runs,
            {
                "metrics_s": ("s", 2),
                "online_s": ("s", 2),
                "first_ack_s": ("s", 2),
            },
        )


def main(args: argparse.Namespace) -> None:
    # The Modbus server here warns about its deprecated datastore and dumps frames when the
    # gateway hangs up; none of that is a result.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="ncap-bench-") as tmp:
        os.chmod(tmp, 0o755)  # noqa: S103 - the private Prosody runs as its own user
        rig = BenchRig(Path(tmp), args.prosody_read_size)
        with rig.prosody:
            read_size = args.prosody_read_size or "4096 (Prosody's default)"
            print(
                f"prosody pid {rig.prosody.pid} on {rig.prosody.host}, c2s read size {read_size}",
                flush=True,
            )
            asyncio.run(bench(args, rig))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="throughput,drain,rss,startup")
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--backlog", type=int, default=600_000)
    parser.add_argument("--sweep", action="store_true", help="drain over batch_max x window")
    parser.add_argument("--sweep-backlog", type=int, default=100_000)
    parser.add_argument(
        "--prosody-read-size",
        type=int,
        help="set Prosody's network_default_read_size (bytes per c2s read; default 4096)",
    )
    main(parser.parse_args())
