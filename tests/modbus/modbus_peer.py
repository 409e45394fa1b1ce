"""Real pymodbus servers for the Modbus tests: a dict datastore with holes and a request log.

``Store`` replaces pymodbus's datastore through the documented context hook: reads and
writes go to ``Store.tables[slave][(table, address)]``; an address listed in
``Store.holes`` makes any request touching it fail with exception 02 (illegal data
address), like a device whose map has gaps.  A slave id without a table gets no answer
at all (``ignore_missing_devices``), which is how a dead RS-485 slave looks.

Every request PDU the server receives is logged (function code, slave, address, count)
through the server's ``trace_pdu`` hook; every frame is timestamped through
``trace_packet`` (for the RTU silence measurement).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

_GROUPS = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 3: "holding", 6: "holding"}
_GROUPS.update({16: "holding", 23: "holding", 4: "input"})


@dataclasses.dataclass(frozen=True, slots=True)
class Logged:
    function: int
    slave: int
    address: int
    count: int


class Store(ModbusServerContext):
    """A datastore of plain dicts (see the module docstring)."""

    def __init__(self, slaves: Sequence[int]) -> None:  # no super(): nothing of it is used
        self.old_simulator = True
        self.simdevices = []
        self.tables: dict[int, dict[tuple[str, int], int]] = {s: {} for s in slaves}
        self.holes: dict[int, set[tuple[str, int]]] = {s: set() for s in slaves}

    def put(self, slave: int, table: str, address: int, values: Sequence[int | bool]) -> None:
        for offset, value in enumerate(values):
            self.tables[slave][(table, address + offset)] = int(value)

    def get(self, slave: int, table: str, address: int, count: int) -> list[int]:
        return [self.tables[slave].get((table, address + i), 0) for i in range(count)]

    def _table(self, device_id: int) -> dict[tuple[str, int], int]:
        if device_id not in self.tables:
            raise NoSuchIdException(f"no slave {device_id}")
        return self.tables[device_id]

    def _refused(self, device_id: int, group: str, address: int, count: int) -> bool:
        return any((group, address + i) in self.holes[device_id] for i in range(count))

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        table = self._table(device_id)
        group = _GROUPS[func_code]
        if self._refused(device_id, group, address, count):
            return ExcCodes.ILLEGAL_ADDRESS
        values = [table.get((group, address + i), 0) for i in range(count)]
        if group in ("coil", "discrete"):
            return [bool(v) for v in values]
        return values

    async def async_setValues(
        self,
        device_id: int,
        func_code: int,
        address: int,
        values: Sequence[int] | Sequence[bool],
    ) -> ExcCodes | None:
        self._table(device_id)
        group = _GROUPS[func_code]
        if self._refused(device_id, group, address, len(values)):
            return ExcCodes.ILLEGAL_ADDRESS
        self.put(device_id, group, address, list(values))
        return None

    def device_ids(self) -> list[int]:
        return list(self.tables)


class Peer:
    """A running server plus what it saw."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.requests: list[Logged] = []
        self.packets: list[tuple[bool, float, bytes]] = []  # (sent, monotonic, bytes)
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.port = 0

    def trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            count = pdu.count if pdu.function_code in (1, 2, 3, 4) else 0
            self.requests.append(Logged(pdu.function_code, pdu.dev_id, pdu.address, count))
        return pdu

    def trace_packet(self, sending: bool, data: bytes) -> bytes:
        self.packets.append((sending, time.monotonic(), data))
        return data

    def reset(self) -> None:
        self.requests.clear()
        self.packets.clear()


async def start_tcp(store: Store, framer: FramerType = FramerType.SOCKET) -> Peer:
    peer = Peer(store)
    server = ModbusTcpServer(
        store,
        framer=framer,
        address=("127.0.0.1", 0),
        ignore_missing_devices=True,
        trace_pdu=peer.trace_pdu,
        trace_packet=peer.trace_packet,
    )
    await asyncio.wait_for(server.serve_forever(background=True), 5)
    listener = server.transport
    assert listener is not None
    peer.port = listener.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    peer.server = server
    return peer


async def start_rtu(store: Store, port: str, baudrate: int) -> Peer:
    peer = Peer(store)
    server = ModbusSerialServer(
        store,
        framer=FramerType.RTU,
        port=port,
        baudrate=baudrate,
        ignore_missing_devices=True,
        trace_pdu=peer.trace_pdu,
        trace_packet=peer.trace_packet,
    )
    await asyncio.wait_for(server.serve_forever(background=True), 5)
    peer.server = server
    return peer


async def stop(peer: Peer) -> None:
    if peer.server is not None:
        await asyncio.wait_for(peer.server.shutdown(), 5)
        peer.server = None
