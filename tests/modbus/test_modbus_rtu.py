"""RTU over a socat pty pair: the 3.5-character silence, and a dead slave beside a live one."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from modbus_peer import Peer, Store, start_rtu, stop

from ncap.rig import PtyPair
from tim_drivers.modbus.bus import ModbusBus, ModbusBusSettings
from tim_drivers.modbus.device import ModbusDevice
from tim_drivers.modbus.profile import DeviceProfile, parse_profile

pytestmark = pytest.mark.integration


async def _rtu(
    pair: PtyPair, store: Store, baudrate: int, **kwargs: object
) -> tuple[Peer, ModbusBus]:
    peer = await start_rtu(store, str(pair.b_path), baudrate)
    options: dict[str, object] = {"timeout_s": 0.5, "retries": 0} | kwargs
    settings = ModbusBusSettings("rtu", port=str(pair.a_path), baudrate=baudrate, **options)  # type: ignore[arg-type]
    bus = ModbusBus(settings)
    await asyncio.wait_for(bus.open(), 5)
    return peer, bus


@pytest.mark.parametrize("baudrate", [9600, 115200])
async def test_the_silence_before_each_request_is_kept_and_no_more(
    modbus_pty: PtyPair, baudrate: int
) -> None:
    store = Store([1])
    store.put(1, "holding", 0, list(range(10)))
    peer, bus = await _rtu(modbus_pty, store, baudrate)
    try:
        for _ in range(25):
            assert await bus.read(3, 0, 10, 1) == list(range(10))
        # Server side: from the end of each reply to the start of the next request.
        gaps = []
        last_sent: float | None = None
        for sent, at, _ in peer.packets:
            if sent:
                last_sent = at
            elif last_sent is not None:
                gaps.append(at - last_sent)
                last_sent = None
        silence = bus.settings.silence_s
        assert len(gaps) == 24
        assert min(gaps) >= silence
        assert statistics.median(gaps) <= silence + 0.003
        assert bus.counters.silence_waits >= 20
        print(
            f"{baudrate} baud: t3.5 {silence * 1e3:.3f} ms, gap min "
            f"{min(gaps) * 1e3:.3f} median {statistics.median(gaps) * 1e3:.3f} ms"
        )
    finally:
        await bus.close()
        await stop(peer)


async def test_a_late_caller_waits_for_no_silence(modbus_pty: PtyPair) -> None:
    peer, bus = await _rtu(modbus_pty, Store([1]), 9600)
    try:
        await bus.read(3, 0, 1, 1)
        deadline = time.monotonic() + bus.settings.silence_s
        while time.monotonic() < deadline:  # the caller is busy elsewhere for t3.5
            await asyncio.sleep(bus.settings.silence_s / 4)
        await bus.read(3, 0, 1, 1)
        assert bus.counters.silence_waits == 0
    finally:
        await bus.close()
        await stop(peer)


def _profile(slave: int) -> DeviceProfile:
    return parse_profile(
        {
            "device": {"name": f"meter{slave}", "slave_id": slave, "poll_interval_s": 0.1},
            "channels": [{"name": "power", "function": "holding", "address": 0, "type": "u32"}],
        }
    )


async def test_a_dead_slave_does_not_stop_a_live_one(modbus_pty: PtyPair) -> None:
    store = Store([1])  # slave 2 never answers
    store.put(1, "holding", 0, [1, 2])
    peer, bus = await _rtu(modbus_pty, store, 115200, timeout_s=0.15)
    live = ModbusDevice(bus, _profile(1))
    dead = ModbusDevice(bus, _profile(2))
    got: dict[int, list[float]] = {1: [], 2: []}
    end = time.monotonic() + 2.0

    async def run(device: ModbusDevice) -> None:
        await device.open()
        while time.monotonic() < end:
            got[device.slave_id] += [s.value for s in await device.poll()]
            due = device.next_due()
            await asyncio.sleep(max(0.0, (due or end) - time.monotonic()))

    try:
        await asyncio.wait_for(asyncio.gather(run(live), run(dead)), 10)
        assert got[2] == []
        assert set(got[1]) == {65538.0}
        assert len(got[1]) >= 15  # 2 s at 0.1 s, minus at most two timeouts of 0.15 s
        to_dead = [r for r in peer.requests if r.slave == 2]
        assert len(to_dead) == 2  # t=0 and after the 1 s backoff; the next waits 2 s
        assert bus.counters.timeouts == 2
        assert bus.is_open  # the shared port stayed open
        print(f"live slave: {len(got[1])} samples in 2 s; dead slave: {len(to_dead)} requests")
    finally:
        await live.close()
        await dead.close()
        await stop(peer)
