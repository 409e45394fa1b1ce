"""A Modbus TCP device on 127.0.0.1 for `ncap demo`: an XY-MD02-style climate sensor
(input registers 1 and 2: temperature and humidity, i16 scaled by 0.1; holding 0x0101..0x0104)."""

from __future__ import annotations

import asyncio

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusTcpServer

from ncap.errors import RigError

SLAVE_ID = 1
START_TIMEOUT_S = 5.0


class DemoModbusDevice:
    """Started with :meth:`start`, stopped with :meth:`stop`; ``port`` is where it listens."""

    def __init__(self, temperature_c: float = 22.4, humidity_pct: float = 41.0) -> None:
        # pymodbus data blocks are addressed one above the wire address: block address 1
        # holds wire address 0.
        temperature = round(temperature_c * 10) & 0xFFFF
        inputs = ModbusSequentialDataBlock(  # type: ignore[no-untyped-call]
            1, [0, temperature, round(humidity_pct * 10), 0]
        )
        holding = ModbusSequentialDataBlock(  # type: ignore[no-untyped-call]
            1, [0] * 0x101 + [SLAVE_ID, 0, 0, 0]
        )
        device = ModbusDeviceContext(ir=inputs, hr=holding)
        self._server = ModbusTcpServer(
            ModbusServerContext(devices={SLAVE_ID: device}, single=False),
            address=("127.0.0.1", 0),
        )
        self.port = 0

    async def start(self) -> None:
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await self._server.serve_forever(background=True)
        except (OSError, TimeoutError) as err:
            raise RigError(f"demo Modbus device did not start: {err}") from err
        listener = self._server.transport
        if listener is None:
            raise RigError("demo Modbus device has no listening socket")
        self.port = listener.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        await self._server.shutdown()  # type: ignore[no-untyped-call]
