"""ModbusDevice against a real pymodbus TCP server: decoding, planning, exception 02, writes."""

from __future__ import annotations

import math
import time

import pytest
from modbus_peer import Peer

from tim_drivers.drivers.p1451_serial import ChannelKind
from tim_drivers.errors import ModbusExceptionReply, WriteRefused
from tim_drivers.modbus.bus import ModbusBus, ModbusBusSettings
from tim_drivers.modbus.device import ModbusDevice
from tim_drivers.modbus.planner import plan_device
from tim_drivers.modbus.profile import DeviceProfile, parse_profile

pytestmark = pytest.mark.integration

# (type, byte_order, word_order, value) -- every numeric type in every order it allows
_CASES: list[tuple[str, str, str, float]] = []
for _type, _value in [
    ("u16", 54321),
    ("i16", -1234),
    ("u32", 3_000_000_000),
    ("i32", -2_000_000_000),
    ("u64", 18_000_000_000_000_000_000),
    ("i64", -9_000_000_000_000_000_000),
    ("f32", 1.5),
    ("f64", -12345.0625),
]:
    for _bo in ("big", "little"):
        for _wo in ("big", "little") if _type not in ("u16", "i16") else ("big",):
            _CASES.append((_type, _bo, _wo, _value))


def _profile(channels: list[dict[str, object]], **device: object) -> DeviceProfile:
    return parse_profile(
        {
            "device": {"name": "testdev", "slave_id": 1, "poll_interval_s": 1.0} | device,
            "channels": channels,
        },
        "test",
    )


async def _device(peer: Peer, profile: DeviceProfile, slave: int = 1) -> ModbusDevice:
    bus = ModbusBus(ModbusBusSettings("tcp", tcp_port=peer.port, timeout_s=0.3, retries=0))
    device = ModbusDevice(bus, profile, slave_id=slave)
    await device.open()
    return device


def _fill(peer: Peer, profile: DeviceProfile, values: dict[str, object], slave: int = 1) -> None:
    for channel in profile.channels:
        if channel.name in values:
            registers = channel.format.encode(values[channel.name])  # type: ignore[arg-type]
            peer.store.put(slave, channel.function.value, channel.address, registers)


async def test_every_type_and_order_decodes_through_the_wire(tcp_peer: Peer) -> None:
    channels: list[dict[str, object]] = []
    expected: dict[str, object] = {}
    address = 0
    for index, (kind, byte_order, word_order, value) in enumerate(_CASES):
        name = f"c{index}_{kind}_{byte_order}_{word_order}"
        channels.append(
            {
                "name": name,
                "function": "holding",
                "address": address,
                "type": kind,
                "byte_order": byte_order,
                "word_order": word_order,
            }
        )
        expected[name] = value
        address += {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2}.get(kind, 4)
    channels += [
        {
            "name": "scaled",
            "function": "input",
            "address": 0,
            "type": "i16",
            "scale": 0.1,
            "offset": -40.0,
            "precision": 1,
            "unit": "°C",
        },
        {"name": "text", "function": "input", "address": 1, "type": "string", "length": 3},
        {"name": "flags", "function": "input", "address": 4, "type": "bitfield"},
        {"name": "relay", "function": "coil", "address": 3},
        {"name": "door", "function": "discrete", "address": 17},
    ]
    expected |= {"scaled": 21.5, "text": "ABCDE", "flags": 0xA5A5, "relay": True, "door": True}
    profile = _profile(channels)
    _fill(tcp_peer, profile, expected)
    device = await _device(tcp_peer, profile)
    try:
        samples = {s.channel: s for s in await device.poll()}
        for number, channel in enumerate(profile.channels, 1):
            if channel.name == "text":
                assert number not in samples
                assert device.text(number) == "ABCDE"
                continue
            want = expected[channel.name]
            assert samples[number].value == pytest.approx(float(want), rel=1e-15), channel.name
        assert samples[len(_CASES) + 1].unit == "°C"
        assert device.bus.counters.requests == len(tcp_peer.requests)
    finally:
        await device.close()


async def test_request_count_is_what_the_planner_planned(tcp_peer: Peer) -> None:
    channels: list[dict[str, object]] = [
        {"name": f"h{a}", "function": "holding", "address": a} for a in (0, 1, 2, 30, 31, 200)
    ]
    channels += [
        {"name": f"i{a}", "function": "input", "address": a, "type": "f32"} for a in (0, 2, 8)
    ]
    channels += [{"name": f"c{a}", "function": "coil", "address": a} for a in (0, 5, 900)]
    channels.append({"name": "slow", "function": "holding", "address": 3, "poll_interval_s": 60.0})
    profile = _profile(channels, max_gap=10)
    plans = plan_device(profile.channels)
    planned = [(p.function.read_code, r.address, r.count) for p in plans for r in p.requests]
    device = await _device(tcp_peer, profile)
    try:
        samples = await device.poll()
        assert len(samples) == len(channels)
        served = [(r.function, r.address, r.count) for r in tcp_peer.requests]
        assert sorted(served) == sorted(planned)
        assert len(served) == 7  # h0-2 | h30-31 | h200 | slow h3 | i0-9 | c0-5 | c900
    finally:
        await device.close()


async def test_exception_02_splits_and_is_remembered(tcp_peer: Peer) -> None:
    channels: list[dict[str, object]] = [
        {"name": f"h{a}", "function": "holding", "address": a} for a in (0, 1, 6, 7, 9)
    ]
    profile = _profile(channels, max_gap=10)
    store = tcp_peer.store
    store.put(1, "holding", 0, [10, 11, 0, 0, 0, 0, 16, 17, 0, 19])
    store.holes[1] |= {("holding", 3), ("holding", 9)}  # a hole in the map, and a bad register
    now = [0.0]
    bus = ModbusBus(ModbusBusSettings("tcp", tcp_port=tcp_peer.port, timeout_s=0.3, retries=0))
    device = ModbusDevice(bus, profile, clock=lambda: now[0])
    await device.open()
    try:
        samples = await device.poll()
        assert {s.channel: s.value for s in samples} == {1: 10.0, 2: 11.0, 3: 16.0, 4: 17.0}
        first = [(r.address, r.count) for r in tcp_peer.requests]
        # 0+10 refused -> cut at the widest hole: 0+2 ok, 6+4 refused -> 6+2 ok, 9+1 refused
        assert first == [(0, 10), (0, 2), (6, 4), (6, 2), (9, 1)]
        with pytest.raises(ModbusExceptionReply):
            await device.read(5)
        tcp_peer.reset()
        now[0] += 1.0  # the next poll slot
        assert len(await device.poll()) == 4
        assert [(r.address, r.count) for r in tcp_peer.requests] == [(0, 2), (6, 2)]
        assert device.bus.counters.exceptions == 3
    finally:
        await device.close()


async def test_read_serves_fresh_values_from_the_cache(tcp_peer: Peer) -> None:
    profile = _profile(
        [
            {"name": "a", "function": "holding", "address": 0, "poll_interval_s": 10.0},
            {"name": "b", "function": "holding", "address": 1, "poll_interval_s": 10.0},
        ]
    )
    tcp_peer.store.put(1, "holding", 0, [5, 6])
    now = [100.0]
    bus = ModbusBus(ModbusBusSettings("tcp", tcp_port=tcp_peer.port, timeout_s=0.3, retries=0))
    device = ModbusDevice(bus, profile, clock=lambda: now[0])
    await device.open()
    try:
        first = await device.read(1)
        assert first.value == 5.0
        assert (await device.read(2)).value == 6.0  # same request: from the cache
        assert len(tcp_peer.requests) == 1
        tcp_peer.store.put(1, "holding", 0, [50])
        now[0] += 4.9  # younger than half the interval
        assert await device.read(1) == first
        now[0] += 0.2  # older
        assert (await device.read(1)).value == 50.0
        assert len(tcp_peer.requests) == 2
    finally:
        await device.close()


async def test_discover_describes_the_profile(tcp_peer: Peer) -> None:
    profile = _profile(
        [
            {
                "name": "temp",
                "function": "input",
                "address": 0,
                "type": "i16",
                "scale": 0.1,
                "precision": 1,
                "unit": "°C",
                "low_limit": -40.0,
                "high_limit": 85.0,
            },
            {
                "name": "setpoint",
                "function": "holding",
                "address": 0,
                "type": "f32",
                "writable": True,
                "unit": "°C",
                "precision": 2,
            },
            {"name": "count", "function": "holding", "address": 2, "type": "u32"},
        ]
    )
    device = await _device(tcp_peer, profile, slave=2)
    try:
        info = await device.discover()
        assert info.name == "testdev"
        assert len(info.uuid) == 10
        assert [c.kind for c in info.channels] == [
            ChannelKind.SENSOR,
            ChannelKind.ACTUATOR,
            ChannelKind.SENSOR,
        ]
        temp = info.channels[0]
        assert (temp.unit, temp.low_limit, temp.high_limit, temp.decimals) == ("°C", -40.0, 85.0, 1)
        assert info.channels[1].decimals == 2
        assert math.isnan(info.channels[2].low_limit)
        assert info.channels[2].decimals == 0
        assert tcp_peer.requests == []  # discovery is the profile, not the wire
    finally:
        await device.close()


async def test_writes_obey_the_profile_and_read_back(tcp_peer: Peer) -> None:
    profile = _profile(
        [
            {"name": "measured", "function": "holding", "address": 0, "type": "f32"},
            {
                "name": "setpoint",
                "function": "holding",
                "address": 2,
                "type": "f32",
                "word_order": "little",
                "writable": True,
            },
            {"name": "mode", "function": "holding", "address": 4, "writable": True},
            {"name": "relay", "function": "coil", "address": 0, "writable": True},
            {"name": "door", "function": "discrete", "address": 0},
        ]
    )
    device = await _device(tcp_peer, profile)
    try:
        for channel in (1, 5):
            with pytest.raises(WriteRefused):
                await device.write(channel, 1.0)
        with pytest.raises(WriteRefused):
            await device.write(4, 0.5)  # a bit is 0 or 1
        with pytest.raises(WriteRefused):
            await device.write(3, 70000.0)  # does not fit u16
        assert tcp_peer.requests == []  # nothing refused went on the wire
        await device.write(2, 21.25)
        await device.write(3, 7.0)
        await device.write(4, 1.0)
        assert [r.function for r in tcp_peer.requests] == [16, 3, 6, 3, 5, 1]
        assert (await device.read(2)).value == 21.25  # from the cache, filled by the read-back
        assert (await device.read(4)).value == 1.0
        assert profile.channels[1].decode(tcp_peer.store.get(1, "holding", 2, 2)) == 21.25
        assert len(tcp_peer.requests) == 6
    finally:
        await device.close()


async def test_tcp_throughput_figure(tcp_peer: Peer) -> None:
    bus = ModbusBus(ModbusBusSettings("tcp", tcp_port=tcp_peer.port, timeout_s=1.0))
    await bus.open()
    try:
        count = 300
        start = time.perf_counter()
        for _ in range(count):
            await bus.read(3, 0, 10, 1)
        rate = count / (time.perf_counter() - start)
        print(f"Modbus/TCP loopback: {rate:.0f} requests/s (10 registers, sequential)")
        assert rate > 100
    finally:
        await bus.close()
