"""TimNode over a real pty and the TIM simulator process: discovery, recovery after a TIM reset."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ncap.demo import find_profile, start_simulator, stop_process
from ncap.rig.pty import PtyPair
from ncap.sensors import NodeUnavailable, Reading, TimNode
from tim_drivers.drivers.p1451_serial import SerialTim
from tim_drivers.transport.serial_link import SerialSettings

pytestmark = pytest.mark.integration

TIMEOUT = 20.0
PROFILE = find_profile("env-sensor.toml")


@pytest.fixture
async def pty() -> AsyncIterator[PtyPair]:
    pair = PtyPair()
    await asyncio.to_thread(pair.start)
    try:
        yield pair
    finally:
        await asyncio.to_thread(pair.stop)


@contextlib.asynccontextmanager
async def running(node: TimNode) -> AsyncIterator[TimNode]:
    task = asyncio.create_task(node.run())
    try:
        yield node
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await node.close()


async def test_node_reads_all_sensor_channels(pty: PtyPair) -> None:
    simulator = await start_simulator(pty.a_path, PROFILE)
    try:
        async with running(TimNode("env", SerialTim(SerialSettings(port=str(pty.b_path))))) as node:
            info = await node.wait_ready(TIMEOUT)
            assert [c.name for c in info.channels] == ["temperature", "humidity", "pressure"]
            readings = await node.read()
            assert [(r.field, r.unit) for r in readings] == [
                ("temperature", "°C"),
                ("humidity", "%"),
                ("pressure", "Pa"),
            ]
            assert [r.field for r in await node.read(["humidity"])] == ["humidity"]
    finally:
        await stop_process(simulator)


async def test_node_waits_for_a_tim_that_is_not_there_yet(pty: PtyPair) -> None:
    node = TimNode("env", SerialTim(SerialSettings(port=str(pty.b_path))), first_retry_s=0.05)
    async with running(node):
        with pytest.raises(NodeUnavailable, match="not available"):
            await node.read()
        simulator = await start_simulator(pty.a_path, PROFILE)
        try:
            await node.wait_ready(TIMEOUT)
            assert len(await node.read()) == 3
        finally:
            await stop_process(simulator)


async def test_node_rediscovers_a_tim_that_reset_behind_an_open_port(pty: PtyPair) -> None:
    simulator = await start_simulator(pty.a_path, PROFILE)
    node = TimNode("env", SerialTim(SerialSettings(port=str(pty.b_path))), first_retry_s=0.05)
    try:
        async with running(node):
            await node.wait_ready(TIMEOUT)
            # The TIM restarts: its channels are back in Idle, the NCAP's port never closed.
            await stop_process(simulator)
            simulator = await start_simulator(pty.a_path, PROFILE)
            with pytest.raises(NodeUnavailable):
                await node.read()
            assert node.info is None
            await node.wait_ready(TIMEOUT)
            assert len(await node.read()) == 3
    finally:
        await stop_process(simulator)


async def test_node_comes_back_within_5_s_of_an_unplugged_adapter_returning(
    tmp_path: Path,
) -> None:
    """Unplug: the pty pair (both device nodes) disappears; replug: it is back by the same name."""
    pair = PtyPair(tmp_path / "usb")
    await asyncio.to_thread(pair.start)
    simulator = await start_simulator(pair.a_path, PROFILE)
    node = TimNode("env", SerialTim(SerialSettings(port=str(pair.b_path))))
    try:
        async with running(node):
            await node.wait_ready(TIMEOUT)
            await stop_process(simulator)
            await asyncio.to_thread(pair.stop)
            await node.wait_lost(TIMEOUT)
            assert node.info is None
            with pytest.raises(NodeUnavailable):
                await node.read()

            await asyncio.to_thread(pair.start)
            replugged = asyncio.get_running_loop().time()
            simulator = await start_simulator(pair.a_path, PROFILE)
            await node.wait_ready(5.0)
            assert asyncio.get_running_loop().time() - replugged < 5.0
            assert len(await node.read()) == 3
    finally:
        await stop_process(simulator)
        await asyncio.to_thread(pair.stop)


def test_profile_is_in_the_source_tree() -> None:
    assert PROFILE.is_relative_to(Path(__file__).resolve().parents[2])


async def test_event_sensor_reports_reach_the_node_and_its_readouts(
    pty: PtyPair, tmp_path: Path
) -> None:
    door = (PROFILE.parent / "door.toml").read_text()
    fast = tmp_path / "door-fast.toml"
    fast.write_text(door.replace("event_period = 60.0", "event_period = 0.1"))
    simulator = await start_simulator(pty.a_path, fast)
    node = TimNode("door", SerialTim(SerialSettings(port=str(pty.b_path))))
    reported: asyncio.Queue[list[Reading]] = asyncio.Queue()
    node.on_readings = reported.put_nowait
    try:
        async with running(node):
            await node.wait_ready(TIMEOUT)
            (event,) = await asyncio.wait_for(reported.get(), TIMEOUT)
            assert event.field == "door-contact"
            assert event.value in (0.0, 1.0)
            readings = {r.field: r for r in await node.read()}
            assert set(readings) == {"door-contact", "supply"}
            assert readings["supply"].unit == "V"
    finally:
        await stop_process(simulator)
