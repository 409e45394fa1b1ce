"""Simulator fault injection, statistics, event sensors and the new profiles."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tim_ptyutil import RawPty, open_raw_pty

from tim_drivers.codec import p1451
from tim_drivers.codec.framing import FrameDecoder, FrameKind, LinkFrame
from tim_drivers.drivers.p1451_serial import ChannelKind, SerialTim
from tim_drivers.errors import CommandFailed, ProfileError, TimError
from tim_drivers.sim import TimSimulator, load_profile, parse_profile
from tim_drivers.sim.simulator import FaultConfig
from tim_drivers.transport.serial_link import SerialSettings, TimLink

pytestmark = pytest.mark.timeout(20)

REPO = Path(__file__).resolve().parents[2]
TIMS = REPO / "hardware" / "tims"


@pytest.fixture
def pair() -> Iterator[RawPty]:
    with open_raw_pty() as p:
        yield p


def _wire(command: p1451.Command, seq: int) -> bytes:
    return LinkFrame(FrameKind.COMMAND, seq, command.to_bytes()).to_bytes()


def _frames(data: bytes) -> list[LinkFrame]:
    return FrameDecoder().feed(data)


def _env(faults: FaultConfig | None = None, now: list[float] | None = None) -> TimSimulator:
    clock = (lambda: now[0]) if now is not None else time.monotonic
    return TimSimulator(load_profile(TIMS / "env-sensor.toml"), clock=clock, faults=faults)


def _prepare_read(simulator: TimSimulator) -> None:
    """Operate and trigger channel 1 (seq 1 and 2), answers checked."""
    assert _frames(simulator.handle(_wire(p1451.operate(1), 1)))[0].kind is FrameKind.ACK
    assert _frames(simulator.handle(_wire(p1451.trigger(1), 2)))[0].kind is FrameKind.ACK


# --- fault configuration --------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"drop": -0.1},
        {"drop": 1.5},
        {"corrupt": 2.0},
        {"corrupt_mode": "bit"},
        {"delay": -1.0},
        {"reboot_after": 0},
    ],
)
def test_tim_fault_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        FaultConfig(**kwargs)  # type: ignore[arg-type]


def test_tim_no_faults_by_default() -> None:
    simulator = _env()
    _prepare_read(simulator)
    answer = _frames(simulator.handle(_wire(p1451.read_data_set(1), 3)))
    assert answer[0].kind is FrameKind.REPLY
    stats = simulator.stats
    assert (stats.frames_received, stats.frames_sent, stats.frames_dropped) == (3, 3, 0)
    assert (stats.frames_corrupted, stats.octets_corrupted, stats.reboots) == (0, 0, 0)
    assert (stats.readings_sent, stats.readings_delivered) == (1, 1)


def test_tim_drop_all_and_reproducible_drops() -> None:
    simulator = _env(FaultConfig(drop=1.0))
    assert simulator.handle(_wire(p1451.operate(1), 1)) == b""
    assert simulator.operating == frozenset()  # a dropped frame changes nothing
    assert (simulator.stats.frames_received, simulator.stats.frames_dropped) == (1, 1)

    def run(seed: int) -> list[bool]:
        sim = _env(FaultConfig(drop=0.5, seed=seed))
        return [bool(sim.handle(_wire(p1451.operate(1), seq))) for seq in range(40)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert 5 < run(7).count(True) < 35


def test_tim_corrupt_every_byte() -> None:
    simulator = _env(FaultConfig(corrupt=1.0, seed=1))
    clean = _env()
    wire = _wire(p1451.operate(1), 1)
    sent, expected = simulator.handle(wire), clean.handle(wire)
    assert len(sent) == len(expected)
    assert all(a != b for a, b in zip(sent, expected, strict=True))
    assert simulator.stats.octets_corrupted == len(sent)
    assert simulator.stats.frames_corrupted == 1
    assert _frames(sent) == []  # nothing decodable


def test_tim_corrupt_per_frame_flips_one_octet() -> None:
    simulator = _env(FaultConfig(corrupt=1.0, corrupt_mode="frame", seed=3))
    clean = _env()
    for seq in range(1, 20):
        wire = _wire(p1451.query_teds(0, p1451.TedsAccessCode.META), seq)
        sent, expected = simulator.handle(wire), clean.handle(wire)
        assert sum(a != b for a, b in zip(sent, expected, strict=True)) == 1
    assert (simulator.stats.frames_corrupted, simulator.stats.octets_corrupted) == (19, 19)


def test_tim_corruption_is_reproducible_and_near_the_rate() -> None:
    def run(seed: int) -> bytes:
        sim = _env(FaultConfig(corrupt=0.01, seed=seed))
        return b"".join(
            sim.handle(_wire(p1451.read_teds_segment(0, p1451.TedsAccessCode.META), seq % 256))
            for seq in range(200)
        )

    assert run(5) == run(5)
    sim = _env(FaultConfig(corrupt=0.01, seed=5))
    sent = 0
    for seq in range(300):
        sent += len(sim.handle(_wire(p1451.read_teds_segment(1, 3), seq % 256)))
    assert 0.005 < sim.stats.octets_corrupted / sent < 0.02


# --- delivered readings ---------------------------------------------------------------


def test_tim_delivered_reading_counted_once_with_replays() -> None:
    simulator = _env()
    _prepare_read(simulator)
    read = _wire(p1451.read_data_set(1), 3)
    first = simulator.handle(read)
    assert simulator.handle(read) == first  # replay
    stats = simulator.stats
    assert (stats.readings_sent, stats.readings_delivered, stats.replays) == (1, 1, 1)
    # A failed read (NAK: channel 2 not Operating) is no reading.
    assert _frames(simulator.handle(_wire(p1451.read_data_set(2), 4)))[0].kind is FrameKind.NAK
    assert (stats.readings_sent, stats.readings_delivered) == (1, 1)


def test_tim_corrupted_reading_not_delivered_until_a_clean_in_sync_replay() -> None:
    simulator = _env()
    _prepare_read(simulator)
    read = _wire(p1451.read_data_set(1), 3)
    simulator.faults = FaultConfig(corrupt=1.0)  # every octet, the delimiter included
    assert _frames(simulator.handle(read)) == []
    stats = simulator.stats
    assert (stats.readings_sent, stats.readings_delivered) == (1, 0)
    assert stats.reading_transmissions_corrupted == 1
    simulator.faults = FaultConfig()
    # Intact, but the receiver still holds the garbage of the corrupted frame whose
    # delimiter was flipped: not counted as delivered.
    replay = simulator.handle(read)
    assert len(_frames(replay)) == 1
    assert stats.readings_delivered == 0
    simulator.handle(read)
    assert (stats.readings_sent, stats.readings_delivered, stats.replays) == (1, 1, 2)


# --- reboot ---------------------------------------------------------------------------


def test_tim_reboot_after_n_frames_forgets_state() -> None:
    simulator = _env(FaultConfig(reboot_after=3))
    _prepare_read(simulator)
    read = _wire(p1451.read_data_set(1), 3)
    assert _frames(simulator.handle(read))[0].kind is FrameKind.REPLY
    assert simulator.stats.reboots == 1
    assert simulator.operating == frozenset()
    # The last-reply cache is gone: the duplicate is executed again, and refused.
    answer = _frames(simulator.handle(read))[0]
    assert (answer.kind, answer.payload) == (
        FrameKind.NAK,
        bytes((p1451.NakReason.UNKNOWN_COMMAND,)),
    )
    assert simulator.stats.replays == 0
    # Once only; the TIM works again after Operate.
    _prepare_read(simulator)
    assert _frames(simulator.handle(_wire(p1451.read_data_set(1), 9)))[0].kind is FrameKind.REPLY
    assert simulator.stats.reboots == 1


@pytest.mark.integration
async def test_tim_reboot_over_pty_reads_fail_typed_until_rediscovered(pair: RawPty) -> None:
    simulator = _env()
    task = asyncio.create_task(simulator.serve_fd(pair.master))
    try:
        async with SerialTim(SerialSettings(pair.path)) as tim:
            await tim.discover()
            await tim.read(1)
            simulator.reboot()
            with pytest.raises(CommandFailed) as failure:
                await tim.read(1)
            assert failure.value.reason == p1451.NakReason.UNKNOWN_COMMAND
            await tim.discover()  # puts the channels back in Operating
            assert (await tim.read(1)).unit == "°C"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- delay ----------------------------------------------------------------------------


@pytest.mark.integration
async def test_tim_delay_applies_to_answers(pair: RawPty) -> None:
    simulator = _env(FaultConfig(delay=0.15))
    task = asyncio.create_task(simulator.serve_fd(pair.master))
    link = TimLink(SerialSettings(pair.path), retries=0)
    await link.open()
    try:
        started = time.monotonic()
        assert await link.request(p1451.operate(1), timeout=1.0, expect_reply=False) is None
        assert time.monotonic() - started >= 0.14
        simulator.faults = FaultConfig()
        started = time.monotonic()
        await link.request(p1451.operate(2), timeout=1.0, expect_reply=False)
        assert time.monotonic() - started < 0.15  # no longer held back
    finally:
        await link.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- event sensor ---------------------------------------------------------------------


def _door(now: list[float]) -> TimSimulator:
    return TimSimulator(load_profile(TIMS / "door.toml"), clock=lambda: now[0])


def _event(frame: LinkFrame) -> tuple[int, float]:
    assert frame.kind is FrameKind.TIM_INITIATED
    message = p1451.TimInitiated.from_bytes(frame.payload)
    assert (message.cmd_class, message.function) == (
        p1451.CommandClass.XDCR_OPERATE,
        p1451.XdcrOperateCmd.READ_DATA_SET_SEGMENT,
    )
    segment = p1451.Segment.from_bytes(message.args)
    assert segment.offset == 0
    return message.channel, struct.unpack(">f", segment.data)[0]


def test_tim_event_sensor_threshold_and_period() -> None:
    now = [0.0]
    simulator = _door(now)  # t = 0 is the simulator's start
    now[0] = 1.0
    assert simulator.poll_events() == b""  # Idle: no events
    simulator.handle(_wire(p1451.operate(1), 1))
    assert simulator.poll_events() == b""  # first look: state known, nothing to report
    now[0] = 29.0
    assert simulator.poll_events() == b""
    now[0] = 31.0  # the door closes at t = 30 s
    frames = _frames(simulator.poll_events())
    assert [_event(f) for f in frames] == [(1, 0.0)]
    assert simulator.poll_events() == b""
    now[0] = 45.0
    assert simulator.poll_events() == b""
    now[0] = 61.5  # opens at 60 s; the 60 s heartbeat is due too: one message
    frames += _frames(simulator.poll_events())
    assert [_event(f) for f in frames] == [(1, 0.0), (1, 1.0)]
    assert frames[0].seq != frames[1].seq
    now[0] = 75.0
    assert simulator.poll_events() == b""
    now[0] = 121.7  # heartbeat at 121 s (and another opening at 120 s)
    assert [_event(f) for f in _frames(simulator.poll_events())] == [(1, 1.0)]
    assert simulator.stats.events_sent == 3
    simulator.handle(_wire(p1451.idle(1), 2))
    now[0] = 200.0
    assert simulator.poll_events() == b""


@pytest.mark.integration
async def test_tim_events_reach_the_link_callback(pair: RawPty) -> None:
    now = [0.0]
    simulator = _door(now)
    now[0] = 1.0
    received: list[p1451.TimInitiated] = []
    got = asyncio.Event()

    def on_event(message: p1451.TimInitiated) -> None:
        received.append(message)
        got.set()

    task = asyncio.create_task(simulator.serve_fd(pair.master))
    async with SerialTim(SerialSettings(pair.path)) as tim:
        info = await tim.discover()
        assert info.channels[0].kind is ChannelKind.EVENT_SENSOR
        assert info.channels[1].unit == "V"
    link = TimLink(SerialSettings(pair.path), on_tim_initiated=on_event)
    await link.open()
    try:
        await link.request(p1451.operate(1), timeout=1.0, expect_reply=False)
        # Let the simulator note the door's state at t=1 now, not when its poller next runs.
        assert simulator.poll_events() == b""
        now[0] = 31.0
        await asyncio.wait_for(got.wait(), 5)
        assert received[0].channel == 1
        segment = p1451.Segment.from_bytes(received[0].args)
        assert struct.unpack(">f", segment.data)[0] == 0.0
    finally:
        await link.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- profiles -------------------------------------------------------------------------


_TIM = {"name": "x", "uuid": "00" * 10}


@pytest.mark.parametrize(
    ("channel", "key"),
    [
        ({"event_threshold": 1.0}, "'channels[1].event_threshold'"),
        ({"event_period": 5.0}, "'channels[1].event_period'"),
        ({"kind": "event"}, "'channels[1].kind'"),
        ({"kind": "event", "event_period": 0}, "'channels[1].event_period'"),
        ({"waveform": "triangle"}, "'channels[1].waveform'"),
    ],
)
def test_tim_event_profile_errors(channel: dict[str, object], key: str) -> None:
    document = {
        "tim": _TIM,
        "channels": [{"name": "c", "low_limit": 0, "high_limit": 1, "base": 0, **channel}],
    }
    with pytest.raises(ProfileError, match=re.escape(key)):
        parse_profile(document)


def test_tim_square_waveform() -> None:
    profile = parse_profile(
        {
            "tim": _TIM,
            "channels": [
                {
                    "name": "c",
                    "low_limit": 0,
                    "high_limit": 1,
                    "waveform": "square",
                    "base": 0.5,
                    "amplitude": 0.5,
                    "period": 10,
                }
            ],
        }
    )
    channel = profile.channels[0]
    assert [channel.value_at(t) for t in (1, 4, 6, 9, 11)] == [1.0, 1.0, 0.0, 0.0, 1.0]


@pytest.mark.integration
async def test_tim_weather_profile_discovers_five_channels(pair: RawPty) -> None:
    simulator = TimSimulator(load_profile(TIMS / "weather.toml"))
    task = asyncio.create_task(simulator.serve_fd(pair.master))
    try:
        async with SerialTim(SerialSettings(pair.path)) as tim:
            info = await tim.discover()
            assert [(c.name, c.unit) for c in info.channels] == [
                ("air-temperature", "°C"),
                ("relative-humidity", "%"),
                ("barometric-pressure", "Pa"),
                ("wind-speed", "m/s"),
                ("illuminance", "lx"),
            ]
            for channel in info.channels:
                sample = await tim.read(channel.number)
                assert channel.low_limit <= sample.value <= channel.high_limit
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- command line ---------------------------------------------------------------------


def _run_sim(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tim_drivers.sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


@pytest.mark.integration
def test_tim_cli_fault_options_and_stats_file(pair: RawPty, tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    process = _run_sim(
        "--port", pair.path, "--profile", str(TIMS / "env-sensor.toml"),
        "--drop", "0", "--corrupt", "0", "--delay-ms", "5", "--reboot-after", "100",
        "--seed", "4", "--stats", str(stats_file),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 10)
        assert ready
        assert process.stdout.readline().strip() == "ready"
        decoder = FrameDecoder()
        answers: list[LinkFrame] = []
        for seq in range(3):
            os.write(pair.master, _wire(p1451.operate(1), seq))
        while len(answers) < 3:  # every frame answered, so every frame was counted
            readable, _, _ = select.select([pair.master], [], [], 10)
            assert readable, "the simulator did not answer"
            answers.extend(decoder.feed(os.read(pair.master, 4096)))
        assert [a.kind for a in answers] == [FrameKind.ACK] * 3
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    stats = json.loads(stats_file.read_text())
    assert stats["frames_received"] == stats["frames_sent"] == 3
    assert stats["frames_dropped"] == 0
    line = next(line for line in stderr.splitlines() if line.startswith("stats "))
    assert json.loads(line[len("stats ") :]) == stats


@pytest.mark.parametrize("option", [["--drop", "2"], ["--corrupt-mode", "bit"]])
def test_tim_cli_bad_fault_option_exits_2(option: list[str]) -> None:
    process = _run_sim("--port", "/dev/null", "--profile", "x.toml", *option)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 2
    assert "error" in stderr


def test_tim_error_is_the_base() -> None:
    assert issubclass(CommandFailed, TimError)
