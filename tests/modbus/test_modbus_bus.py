"""ModbusBus: settings, silence arithmetic, and typed errors against a real pymodbus server."""

from __future__ import annotations

import asyncio
import socket

import pytest
from modbus_peer import Peer, Store, start_tcp, stop
from pymodbus.framer import FramerType

from tim_drivers.errors import (
    BusSettingsError,
    ModbusExceptionReply,
    SlaveSilent,
    TimTimeout,
    TimUnavailable,
)
from tim_drivers.modbus.bus import ModbusBus, ModbusBusSettings


@pytest.mark.parametrize(
    ("baudrate", "parity", "stopbits", "expected_ms"),
    [
        (9600, "N", 1, 3.646),
        (9600, "E", 1, 4.010),
        (9600, "N", 2, 4.010),
        (19200, "N", 1, 1.823),
        (19200, "E", 1, 2.005),
        (38400, "E", 1, 1.750),
        (115200, "N", 1, 1.750),
    ],
)
def test_silence_is_three_and_a_half_characters(
    baudrate: int, parity: str, stopbits: int, expected_ms: float
) -> None:
    settings = ModbusBusSettings(
        "rtu", port="/dev/null", baudrate=baudrate, parity=parity, stopbits=stopbits
    )
    assert settings.silence_s * 1000 == pytest.approx(expected_ms, abs=0.001)
    over_tcp = ModbusBusSettings(
        "rtu-over-tcp", baudrate=baudrate, parity=parity, stopbits=stopbits
    )
    assert over_tcp.silence_s == settings.silence_s


def test_tcp_keeps_no_silence() -> None:
    assert ModbusBusSettings("tcp").silence_s == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "udp"},
        {"kind": "rtu"},
        {"kind": "rtu", "port": "/dev/x", "parity": "X"},
        {"kind": "rtu", "port": "/dev/x", "stopbits": 3},
        {"kind": "tcp", "tcp_port": 0},
        {"kind": "tcp", "timeout_s": 0},
        {"kind": "tcp", "rs485": True},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(BusSettingsError):
        ModbusBusSettings(**kwargs)  # type: ignore[arg-type]


async def _bus(peer: Peer, **kwargs: object) -> ModbusBus:
    options: dict[str, object] = {"timeout_s": 0.3, "retries": 0} | kwargs
    bus = ModbusBus(ModbusBusSettings("tcp", tcp_port=peer.port, **options))  # type: ignore[arg-type]
    await bus.open()
    return bus


@pytest.mark.integration
async def test_reads_and_writes_every_function(tcp_peer: Peer) -> None:
    store = tcp_peer.store
    store.put(1, "holding", 10, [1, 2, 3])
    store.put(1, "input", 0, [7, 8])
    store.put(1, "coil", 3, [1, 0, 1])
    store.put(1, "discrete", 0, [0, 1])
    bus = await _bus(tcp_peer)
    try:
        assert await bus.read(3, 10, 3, 1) == [1, 2, 3]
        assert await bus.read(4, 0, 2, 1) == [7, 8]
        assert await bus.read(1, 3, 3, 1) == [True, False, True]
        assert await bus.read(2, 0, 2, 1) == [False, True]
        await bus.write(6, 20, [513], 1)
        await bus.write(16, 21, [1, 2], 1)
        await bus.write(5, 9, [True], 1)
        await bus.write(15, 10, [True, False, True], 1)
        assert store.get(1, "holding", 20, 3) == [513, 1, 2]
        assert store.get(1, "coil", 9, 4) == [1, 1, 0, 1]
        assert [r.function for r in tcp_peer.requests] == [3, 4, 1, 2, 6, 16, 5, 15]
        assert bus.counters.requests == 8
        assert bus.counters.replies == 8
    finally:
        await bus.close()


@pytest.mark.integration
async def test_exception_reply_carries_its_code(tcp_peer: Peer) -> None:
    tcp_peer.store.holes[1].add(("holding", 5))
    bus = await _bus(tcp_peer)
    try:
        with pytest.raises(ModbusExceptionReply) as caught:
            await bus.read(3, 0, 10, 1)
        assert caught.value.code == 2
        assert bus.counters.exceptions == 1
        assert await bus.read(3, 0, 5, 1) == [0] * 5  # the slave is not backed off
    finally:
        await bus.close()


@pytest.mark.integration
async def test_silent_slave_times_out_then_is_skipped_without_a_request(tcp_peer: Peer) -> None:
    bus = await _bus(tcp_peer, timeout_s=0.2)
    try:
        with pytest.raises(TimTimeout):
            await bus.read(3, 0, 1, 9)
        assert bus.backed_off(9)
        sent = len(tcp_peer.requests)
        with pytest.raises(SlaveSilent):
            await bus.read(3, 0, 1, 9)
        assert len(tcp_peer.requests) == sent
        assert bus.counters.timeouts == 1
        assert bus.counters.skipped == 1
        assert await bus.read(3, 0, 1, 1) == [0]  # the connection survived
        assert bus.is_open
    finally:
        await bus.close()


@pytest.mark.integration
async def test_nobody_listening_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bus = ModbusBus(ModbusBusSettings("tcp", tcp_port=port, timeout_s=0.3, retries=0))
    with pytest.raises(TimUnavailable):
        await asyncio.wait_for(bus.open(), 5)
    with pytest.raises(TimUnavailable):
        await bus.read(3, 0, 1, 1)


@pytest.mark.integration
async def test_a_shared_bus_is_opened_once_and_closed_by_its_last_user(tcp_peer: Peer) -> None:
    bus = await _bus(tcp_peer)
    await bus.open()
    await bus.close()
    assert bus.is_open
    await bus.close()
    assert not bus.is_open


@pytest.mark.integration
async def test_lost_connection_is_reported() -> None:
    peer = await start_tcp(Store([1]))
    bus = await _bus(peer)
    lost = asyncio.get_running_loop().create_future()
    bus.add_lost_callback(lambda err: lost.done() or lost.set_result(err))
    try:
        await stop(peer)
        assert isinstance(await asyncio.wait_for(lost, 5), TimUnavailable)
    finally:
        await bus.close()


@pytest.mark.integration
async def test_rtu_over_tcp_reads_and_writes() -> None:
    """A serial server on TCP: RTU frames with their CRC, no MBAP header."""
    peer = await start_tcp(Store([4]), framer=FramerType.RTU)
    peer.store.put(4, "holding", 100, [11, 22])
    settings = ModbusBusSettings(
        kind="rtu-over-tcp", tcp_port=peer.port, baudrate=19200, timeout_s=1.0
    )
    bus = ModbusBus(settings)
    await bus.open()
    try:
        assert await bus.read(3, 100, 2, 4) == [11, 22]
        await bus.write(6, 101, [33], 4)
        assert peer.store.get(4, "holding", 100, 2) == [11, 33]
        assert settings.silence_s > 0  # the serial line behind the server keeps its silence
    finally:
        await bus.close()
        await stop(peer)
