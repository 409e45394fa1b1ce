"""End to end: the TIM simulator on one side of a real pty, SerialTim on the other."""

from __future__ import annotations

import asyncio
import os
import re
import select
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tim_ptyutil import RawPty, open_raw_pty

from tim_drivers.codec import p1451
from tim_drivers.codec.framing import FrameDecoder, FrameKind, LinkFrame
from tim_drivers.codec.teds import MetaTeds
from tim_drivers.drivers.p1451_serial import ChannelKind, SerialTim
from tim_drivers.errors import CommandFailed, ProfileError, TimError
from tim_drivers.sim import TimSimulator, load_profile, parse_profile
from tim_drivers.transport.serial_link import SerialSettings

pytestmark = pytest.mark.timeout(20)

REPO = Path(__file__).resolve().parents[2]
ENV_SENSOR = REPO / "hardware" / "tims" / "env-sensor.toml"
RELAY = REPO / "hardware" / "tims" / "relay.toml"


@pytest.fixture
def pair() -> Iterator[RawPty]:
    with open_raw_pty() as p:
        yield p


async def _serve(simulator: TimSimulator, pair: RawPty) -> AsyncIterator[SerialTim]:
    task = asyncio.create_task(simulator.serve_fd(pair.master))
    tim = SerialTim(SerialSettings(pair.path))
    await tim.open()
    try:
        yield tim
    finally:
        await tim.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def env_tim(pair: RawPty) -> AsyncIterator[SerialTim]:
    # Small TEDS segments exercise the multi-segment read loop.
    simulator = TimSimulator(load_profile(ENV_SENSOR), max_segment=16)
    async for tim in _serve(simulator, pair):
        yield tim


@pytest.mark.integration
async def test_discover_and_read(env_tim: SerialTim) -> None:
    info = await asyncio.wait_for(env_tim.discover(), 10)
    assert env_tim.info is info
    assert info.name == "env-sensor"
    assert info.uuid == bytes.fromhex("a1b2c3d4e5f600010001")
    assert info.meta.max_chan == 3
    assert [(c.number, c.name, c.kind, c.unit) for c in info.channels] == [
        (1, "temperature", ChannelKind.SENSOR, "°C"),
        (2, "humidity", ChannelKind.SENSOR, "%"),
        (3, "pressure", ChannelKind.SENSOR, "Pa"),
    ]
    temperature, humidity, pressure = info.channels
    assert (temperature.low_limit, temperature.high_limit, temperature.decimals) == (-40, 85, 1)
    assert (humidity.low_limit, humidity.high_limit, humidity.decimals) == (0, 100, 0)
    assert pressure.decimals == 0

    sample = await asyncio.wait_for(env_tim.read(1), 5)
    assert sample.channel == 1
    assert sample.unit == "°C"
    assert sample.value == pytest.approx(21.5, abs=0.3)
    assert sample.timestamp.utcoffset() == timedelta(0)
    assert abs(time.time() - sample.timestamp.timestamp()) < 5
    assert (await env_tim.read(2)).value == pytest.approx(45, abs=4)
    assert (await env_tim.read(3)).value == pytest.approx(101325, abs=200)


@pytest.mark.integration
async def test_idle_stops_triggers_until_operate(env_tim: SerialTim) -> None:
    await env_tim.discover()
    (sample,) = await env_tim.read_data_set(3)
    assert sample.unit == "Pa"
    await env_tim.idle(1)
    with pytest.raises(CommandFailed):  # a trigger is refused outside Operating
        await env_tim.read(1)
    await env_tim.operate(1)
    assert (await env_tim.read(1)).unit == "°C"


@pytest.mark.integration
async def test_address_groups_and_the_global_address(env_tim: SerialTim) -> None:
    await env_tim.discover()
    await env_tim.idle(p1451.GLOBAL_CHANNEL)
    with pytest.raises(CommandFailed):
        await env_tim.read(2)
    await env_tim.define_group(0x8001, [1, 3])
    await env_tim.operate(0x8001)
    assert (await env_tim.read(1)).unit == "°C"
    assert (await env_tim.read(3)).unit == "Pa"
    with pytest.raises(CommandFailed):  # not a member: still Idle
        await env_tim.read(2)
    await env_tim.operate(p1451.GLOBAL_CHANNEL)
    assert (await env_tim.read(2)).unit == "%"
    with pytest.raises(CommandFailed):  # a group nobody joined
        await env_tim.operate(0x8002)
    with pytest.raises(ValueError, match="not an AddressGroup"):
        p1451.define_address_group(1, 0x0042)


@pytest.mark.integration
async def test_read_before_discover_and_unknown_channel(env_tim: SerialTim) -> None:
    with pytest.raises(TimError, match="discover"):
        await env_tim.read(1)
    await env_tim.discover()
    with pytest.raises(TimError, match="no channel 9"):
        await env_tim.read(9)
    # TEDS the simulator does not have: Query TEDS says "not available".
    with pytest.raises(TimError, match="not available"):
        await env_tim.read_teds(0, p1451.TedsAccessCode.GEO_LOCATION)


@pytest.mark.integration
async def test_actuator_write(pair: RawPty) -> None:
    simulator = TimSimulator(load_profile(RELAY))
    async for tim in _serve(simulator, pair):
        info = await tim.discover()
        relay, current = info.channels
        assert relay.kind is ChannelKind.ACTUATOR
        assert relay.unit == ""
        assert current.unit == "A"
        assert current.decimals == 3
        await tim.write(1, 1.0)
        assert simulator.value(1) == 1.0
        assert (await tim.read(1)).value == 1.0
        with pytest.raises(TimError, match="not an actuator"):
            await tim.write(2, 1.0)


# --- the simulator core, without I/O ----------------------------------------------------


def _ask(simulator: TimSimulator, command: p1451.Command, seq: int = 1) -> LinkFrame:
    wire = LinkFrame(FrameKind.COMMAND, seq, command.to_bytes()).to_bytes()
    frames = FrameDecoder().feed(simulator.handle(wire))
    assert len(frames) == 1
    assert frames[0].seq == seq
    return frames[0]


def test_simulator_core() -> None:
    now = [0.0]
    simulator = TimSimulator(load_profile(ENV_SENSOR), clock=lambda: now[0])
    meta = _ask(simulator, p1451.read_teds_segment(0, p1451.TedsAccessCode.META, 0))
    segment = p1451.Segment.from_bytes(p1451.Reply.from_bytes(meta.payload).data)
    assert MetaTeds.from_bytes(segment.data).max_chan == 3
    phy = _ask(simulator, p1451.query_teds(0, p1451.TedsAccessCode.PHY), seq=2)
    assert p1451.TedsInfo.from_bytes(p1451.Reply.from_bytes(phy.payload).data).available
    # Trigger before Operate is refused; unknown commands get NAK 4.
    assert _ask(simulator, p1451.trigger(1), seq=3).payload == b"\x04"
    assert _ask(simulator, p1451.Command(0, 99, 1), seq=4).kind is FrameKind.NAK
    assert _ask(simulator, p1451.operate(1), seq=5).kind is FrameKind.ACK
    assert _ask(simulator, p1451.trigger(1), seq=6).kind is FrameKind.ACK
    # A duplicate (same seq, same payload) is replayed, not executed again.
    commands = simulator.commands
    assert _ask(simulator, p1451.trigger(1), seq=6).kind is FrameKind.ACK
    assert (simulator.commands, simulator.replays) == (commands, 1)
    # Values change with time (sinus) and stay latched by the trigger.
    before = simulator.value(1)
    now[0] = 150.0
    assert simulator.value(1) != before
    data = _ask(simulator, p1451.read_data_set(1), seq=7)
    value = p1451.Segment.from_bytes(p1451.Reply.from_bytes(data.payload).data).data
    assert struct.unpack(">f", value)[0] == pytest.approx(before, rel=1e-6)
    # Malformed message: NAK 2.
    bad = LinkFrame(FrameKind.COMMAND, 8, b"\x00\x01\x03").to_bytes()
    assert FrameDecoder().feed(simulator.handle(bad))[0].payload == b"\x02"


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"channels": [{}]}, "'tim'"),
        ({"tim": {"name": "x", "uuid": "zz"}, "channels": []}, "'tim.uuid'"),
        ({"tim": {"name": "x", "uuid": "00" * 10}}, "'channels'"),
        ({"tim": {"name": "x", "uuid": "00" * 10, "speed": 1}, "channels": [{}]}, "'tim.speed'"),
        (
            {"tim": {"name": "x", "uuid": "00" * 10}, "channels": [{"name": "t", "units": "K"}]},
            "'channels[1].low_limit'",
        ),
        (
            {
                "tim": {"name": "x", "uuid": "00" * 10},
                "channels": [{"name": "t", "low_limit": 0, "high_limit": 1, "units": "furlong"}],
            },
            "'channels[1].units'",
        ),
        (
            {
                "tim": {"name": "x", "uuid": "00" * 10},
                "channels": [{"name": "t", "low_limit": 2, "high_limit": 1}],
            },
            "'channels[1].high_limit'",
        ),
    ],
)
def test_profile_errors_name_the_key(document: dict[str, object], key: str) -> None:
    with pytest.raises(ProfileError, match=re.escape(key)):
        parse_profile(document)


def test_profile_units_table() -> None:
    profile = parse_profile(
        {
            "tim": {"name": "x", "uuid": "00" * 10},
            "channels": [
                {
                    "name": "accel",
                    "low_limit": -20,
                    "high_limit": 20,
                    "units": {"meters": 1, "seconds": -2},
                    "fixed": 9.81,
                }
            ],
        }
    )
    assert profile.channels[0].units.symbol() == "m/s²"
    assert profile.channels[0].value_at(123.0) == 9.81


# --- the command-line simulator as a subprocess ------------------------------------------


def _run_sim(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tim_drivers.sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def _read_frame(fd: int, deadline: float) -> LinkFrame:
    decoder = FrameDecoder()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            frames = decoder.feed(os.read(fd, 4096))
            if frames:
                return frames[0]
    raise AssertionError("no frame from the simulator")


@pytest.mark.integration
def test_cli_serves_a_pty(pair: RawPty) -> None:
    process = _run_sim("--port", pair.path, "--profile", str(ENV_SENSOR))
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 10)
        assert ready, "simulator did not print ready"
        assert process.stdout.readline().strip() == "ready"
        os.write(
            pair.master, LinkFrame(FrameKind.COMMAND, 5, p1451.operate(1).to_bytes()).to_bytes()
        )
        assert _read_frame(pair.master, time.monotonic() + 5) == LinkFrame(FrameKind.ACK, 5)
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0


@pytest.mark.parametrize("profile", ["missing.toml", "bad"])
def test_cli_bad_profile_exits_78(tmp_path: Path, profile: str) -> None:
    path = tmp_path / profile
    if profile == "bad":
        path.write_text('[tim]\nname = "x"\nuuid = "0011"\n[[channels]]\nname = "t"\n')
    process = _run_sim("--port", "/dev/null", "--profile", str(path))
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 78
    assert "error:" in stderr
    if profile == "bad":
        assert "'tim.uuid'" in stderr
