"""One Modbus line (RS-485 port, TCP connection or RTU-over-TCP gateway) on pymodbus 3.16.

:class:`ModbusBus` wraps exactly one pymodbus async client and adds what pymodbus leaves
to the application (gateway-peers.md §7):

* one request in flight per bus (an :class:`asyncio.Lock`; half-duplex RS-485 allows
  one transaction at a time);
* on RTU lines, the inter-frame silence of 3.5 character times (1.75 ms above 19200
  baud) before every request, measured on the monotonic clock from the end of the
  previous transaction, so only the remainder is waited;
* typed errors: an exception response becomes :class:`ModbusExceptionReply`, no answer
  :class:`TimTimeout`, a broken link :class:`TimUnavailable`;
* per-slave backoff: after consecutive timeouts a slave id is skipped for 1, 2, 4 ... up to
  60 s (:class:`SlaveSilent` is raised without touching the wire), so a dead slave costs
  the live ones on the same line at most one timeout budget per backoff step;
* pymodbus's "close the connection after retries+3 silent requests" is switched off, so
  a dead slave never closes the shared port or connection.

A bus may be shared by several devices: :meth:`ModbusBus.open` and :meth:`close` count
their users and only the first open connects, only the last close disconnects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from tim_drivers.errors import (
    BusSettingsError,
    ModbusExceptionReply,
    SlaveSilent,
    TimError,
    TimTimeout,
    TimUnavailable,
    UnexpectedReply,
)

_LOGGER = logging.getLogger(__name__)

BusKind = Literal["rtu", "tcp", "rtu-over-tcp"]
LostCallback = Callable[[Exception | None], None]
AsyncClient = AsyncModbusSerialClient | AsyncModbusTcpClient

FIXED_SILENCE_S = 0.00175  # t3.5 above 19200 baud
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
_NEVER_DISCONNECT = 1 << 30  # pymodbus's silent-request count before it closes the link

# A slave answering slower than this after the request is treated as silent (RTU default).
TURNAROUND_BUDGET_S = 0.1
ASSUMED_TURNAROUND_S = 0.001  # what a typical slave takes, for the gap rule
REQUEST_OCTETS = 8  # a read request: slave, function, address, count, CRC
REPLY_OVERHEAD_OCTETS = 5  # a read reply besides its data: slave, function, count, CRC
MAX_FRAME_OCTETS = 256
SILENCE_SPIN_S = 0.001  # the last part of the silence is waited precisely, not by a timer

READ_FUNCTIONS = (1, 2, 3, 4)
WRITE_FUNCTIONS = (5, 6, 15, 16)


@dataclasses.dataclass(frozen=True, slots=True)
class ModbusBusSettings:
    kind: BusKind
    port: str = ""  # serial device (or any pyserial URL) for kind "rtu"
    host: str = "127.0.0.1"  # for "tcp" and "rtu-over-tcp"
    tcp_port: int = 502
    baudrate: int = 9600  # of the serial line (behind the gateway for "rtu-over-tcp")
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    rs485: bool = False  # kernel RS-485 mode (RTS direction control) on the serial port
    timeout_s: float | None = None
    """Per-attempt reply timeout; None derives it from the wire (RTU) or uses 1 s (TCP)."""
    retries: int = 0
    """Immediate retries; a slave that stays silent is backed off and polled again later."""

    def __post_init__(self) -> None:
        if self.kind not in ("rtu", "tcp", "rtu-over-tcp"):
            raise BusSettingsError(f"kind must be rtu, tcp or rtu-over-tcp, not {self.kind!r}")
        if self.kind == "rtu" and not self.port:
            raise BusSettingsError("an rtu bus needs a serial port")
        if self.kind != "rtu" and not 0 < self.tcp_port < 65536:
            raise BusSettingsError(f"tcp_port {self.tcp_port} outside 1..65535")
        if self.parity not in ("N", "E", "O"):
            raise BusSettingsError(f"parity must be N, E or O, not {self.parity!r}")
        if self.stopbits not in (1, 2) or self.bytesize not in (7, 8):
            raise BusSettingsError("stopbits must be 1 or 2 and bytesize 7 or 8")
        if self.baudrate <= 0 or (self.timeout_s is not None and self.timeout_s <= 0):
            raise BusSettingsError("baudrate and timeout_s must be positive")
        if self.retries < 0:
            raise BusSettingsError("retries must be >= 0")
        if self.rs485 and self.kind != "rtu":
            raise BusSettingsError("rs485 only applies to a local serial port (kind rtu)")

    def wire_s(self, octets: int) -> float:
        """How long *octets* take on the serial line."""
        return octets * self.char_bits / self.baudrate

    @property
    def reply_timeout_s(self) -> float:
        """The configured timeout, else the longest request and reply on the wire plus a
        generous slave turnaround (0.4 s at 9600 baud, 0.15 s at 115200)."""
        if self.timeout_s is not None:
            return self.timeout_s
        if self.kind == "tcp":
            return 1.0
        wire = self.wire_s(REQUEST_OCTETS + MAX_FRAME_OCTETS)
        return wire + self.silence_s + TURNAROUND_BUDGET_S

    @property
    def break_even_gap(self) -> int:
        """The largest gap of registers worth reading rather than starting a new request:
        reading 2 octets more costs less than another request, its reply header and the two
        silences around them (10 registers at 9600 8N1, about 30 at 115200 8E1)."""
        if self.kind == "tcp":
            return 32  # the cost of a request on TCP dwarfs a few registers
        request = self.wire_s(REQUEST_OCTETS + REPLY_OVERHEAD_OCTETS)
        cost = request + 2 * self.silence_s + ASSUMED_TURNAROUND_S
        return max(1, int(cost / self.wire_s(2)))

    @property
    def name(self) -> str:
        """How logs name the bus: the port, or host:port."""
        return self.port if self.kind == "rtu" else f"{self.host}:{self.tcp_port}"

    @property
    def char_bits(self) -> int:
        """Bits per character: start + data + parity + stop (10 for 8N1, 11 for 8E1/8N2)."""
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def silence_s(self) -> float:
        """The inter-frame silence kept before each request (0 for Modbus/TCP)."""
        if self.kind == "tcp":
            return 0.0
        if self.baudrate > 19200:
            return FIXED_SILENCE_S
        return 3.5 * self.char_bits / self.baudrate


@dataclasses.dataclass(slots=True)
class BusCounters:
    requests: int = 0  # transactions put on the wire (pymodbus retries not counted)
    replies: int = 0  # normal responses
    exceptions: int = 0  # exception responses
    timeouts: int = 0  # no response, retries included
    garbage: int = 0  # a reply for the wrong slave / transaction
    connection_errors: int = 0
    skipped: int = 0  # requests refused because their slave is backed off
    silence_waits: int = 0  # requests that had to wait for the inter-frame silence
    silence_wait_s: float = 0.0


@dataclasses.dataclass(slots=True)
class _SlaveHealth:
    failures: int = 0
    skip_until: float = 0.0


class ModbusBus:
    """One pymodbus client, one request at a time (see the module docstring)."""

    def __init__(
        self,
        settings: ModbusBusSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.counters = BusCounters()
        self._clock = clock
        self._client: AsyncClient | None = None
        self._lock = asyncio.Lock()
        self._users = 0
        self._closing = False
        self._last_end: float | None = None
        self._received_at: float | None = None
        self._health: dict[int, _SlaveHealth] = {}
        self._lost_callbacks: list[LostCallback] = []

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._client.connected

    def add_lost_callback(self, callback: LostCallback) -> None:
        """Have ``callback`` called when an open connection drops (TCP, gone USB port)."""
        self._lost_callbacks.append(callback)

    # --- lifecycle ----------------------------------------------------------------------

    def _make_client(self) -> AsyncClient:
        s = self.settings
        if s.kind == "rtu":
            return AsyncModbusSerialClient(
                s.port,
                framer=FramerType.RTU,
                baudrate=s.baudrate,
                bytesize=s.bytesize,
                parity=s.parity,
                stopbits=s.stopbits,
                timeout=s.reply_timeout_s,
                retries=s.retries,
                trace_connect=self._trace_connect,
                trace_packet=self._trace_packet,
            )
        return AsyncModbusTcpClient(
            s.host,
            port=s.tcp_port,
            framer=FramerType.RTU if s.kind == "rtu-over-tcp" else FramerType.SOCKET,
            timeout=s.reply_timeout_s,
            retries=s.retries,
            trace_connect=self._trace_connect,
            trace_packet=self._trace_packet,
        )

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # The silence runs from when the reply arrived, not from when it was parsed and
        # its caller woke up: that time overlaps the silence instead of adding to it.
        if not sending:
            self._received_at = self._clock()
        return data

    async def open(self) -> None:
        """Connect on the first call; later calls only count another user."""
        async with self._lock:
            if self._client is None:
                client = self._make_client()
                self._closing = False
                try:
                    connected = await client.connect()
                except (OSError, ModbusException) as err:
                    client.close()
                    raise TimUnavailable(f"bus={self.name}: cannot open: {err}") from err
                if not connected:
                    client.close()
                    raise TimUnavailable(f"bus={self.name}: cannot open")
                client.set_max_no_responses(_NEVER_DISCONNECT)
                if self.settings.rs485:
                    self._enable_rs485(client)
                self._client = client
                _LOGGER.info("bus=%s open (%s)", self.name, self.settings.kind)
            self._users += 1

    def _enable_rs485(self, client: AsyncClient) -> None:
        import serial.rs485

        transport = getattr(getattr(client, "ctx", None), "transport", None)
        port = getattr(transport, "sync_serial", None)
        if port is None:
            client.close()
            raise TimUnavailable(f"bus={self.name}: no serial port to put in RS-485 mode")
        try:
            port.rs485_mode = serial.rs485.RS485Settings()
        except (OSError, ValueError) as err:
            client.close()
            raise TimUnavailable(f"bus={self.name}: RS-485 mode refused: {err}") from err

    async def close(self) -> None:
        """Drop one user; the last one disconnects."""
        async with self._lock:
            if self._users > 0:
                self._users -= 1
            if self._users == 0 and self._client is not None:
                self._closing = True
                self._client.close()
                self._client = None
                _LOGGER.info("bus=%s closed", self.name)

    def _trace_connect(self, connected: bool) -> None:
        if connected or self._closing or self._client is None:
            return
        _LOGGER.warning("bus=%s connection lost", self.name)
        for callback in list(self._lost_callbacks):
            callback(TimUnavailable(f"bus={self.name}: connection lost"))

    # --- slave health -------------------------------------------------------------------

    def backed_off(self, slave: int) -> bool:
        """Whether requests to ``slave`` are currently skipped after timeouts."""
        health = self._health.get(slave)
        return health is not None and health.failures > 0 and self._clock() < health.skip_until

    def backoff_remaining(self, slave: int) -> float:
        health = self._health.get(slave)
        if health is None or health.failures == 0:
            return 0.0
        return max(0.0, health.skip_until - self._clock())

    def _slave_answered(self, slave: int) -> None:
        health = self._health.get(slave)
        if health is not None and health.failures:
            _LOGGER.info("bus=%s slave=%d answers again", self.name, slave)
            health.failures = 0
            health.skip_until = 0.0

    def _slave_silent(self, slave: int) -> None:
        health = self._health.setdefault(slave, _SlaveHealth())
        health.failures += 1
        pause = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (health.failures - 1))
        health.skip_until = self._clock() + pause
        if health.failures == 1:
            _LOGGER.error(
                "bus=%s slave=%d does not answer; skipping it for growing intervals",
                self.name,
                slave,
            )
        else:
            _LOGGER.debug(
                "bus=%s slave=%d still silent, next try in %.0f s", self.name, slave, pause
            )

    # --- transactions -------------------------------------------------------------------

    async def _keep_silence(self) -> None:
        silence = self.settings.silence_s
        if silence <= 0 or self._last_end is None:
            return
        remaining = self._last_end + silence - self._clock()
        if remaining > 0:
            self.counters.silence_waits += 1
            self.counters.silence_wait_s += remaining
            # Timers overshoot by a fraction of a millisecond: sleep most of the silence, then
            # wait out the rest precisely (yielding to the loop), never cutting it short.
            if remaining > SILENCE_SPIN_S:
                await asyncio.sleep(remaining - SILENCE_SPIN_S)
            while self._clock() < self._last_end + silence:
                await asyncio.sleep(0)

    async def _transact(
        self, slave: int, what: str, call: Callable[[AsyncClient], Awaitable[ModbusPDU]]
    ) -> ModbusPDU:
        if not 0 <= slave <= 255:
            raise BusSettingsError(f"slave id {slave} outside 0..255")
        async with self._lock:
            client = self._client
            if client is None:
                raise TimUnavailable(f"bus={self.name}: not open")
            if self.backed_off(slave):
                self.counters.skipped += 1
                raise SlaveSilent(
                    f"bus={self.name} slave={slave}: backed off for "
                    f"{self.backoff_remaining(slave):.1f} s after timeouts"
                )
            await self._keep_silence()
            self.counters.requests += 1
            self._received_at = None
            try:
                reply = await call(client)
            except ConnectionException as err:
                self.counters.connection_errors += 1
                raise TimUnavailable(f"bus={self.name} slave={slave} {what}: {err}") from err
            except ModbusIOException as err:
                text = str(err)
                if "device id" in text or "transaction id" in text:
                    self.counters.garbage += 1
                    raise UnexpectedReply(f"bus={self.name} slave={slave} {what}: {text}") from err
                self.counters.timeouts += 1
                self._slave_silent(slave)
                raise TimTimeout(f"bus={self.name} slave={slave} {what}: no response") from err
            except ModbusException as err:
                raise TimError(f"bus={self.name} slave={slave} {what}: {err}") from err
            except OSError as err:
                self.counters.connection_errors += 1
                raise TimUnavailable(f"bus={self.name} slave={slave} {what}: {err}") from err
            finally:
                self._last_end = self._received_at or self._clock()
            self._slave_answered(slave)
            if reply.isError():
                self.counters.exceptions += 1
                code = reply.exception_code
                raise ModbusExceptionReply(
                    f"bus={self.name} slave={slave} {what}: exception {code:02d}", code=code
                )
            self.counters.replies += 1
            return reply

    async def read(
        self, function: int, address: int, count: int, slave: int
    ) -> list[int] | list[bool]:
        """Read ``count`` elements with function code 1, 2, 3 or 4.

        Bit reads (FC01/02) return exactly ``count`` bools (the octet padding is cut off).
        """
        if function not in READ_FUNCTIONS:
            raise BusSettingsError(f"not a read function code: {function}")
        what = f"fc{function:02d} {address}+{count}"

        def call(client: AsyncClient) -> Awaitable[ModbusPDU]:
            if function == 1:
                return client.read_coils(address, count=count, device_id=slave)
            if function == 2:
                return client.read_discrete_inputs(address, count=count, device_id=slave)
            if function == 3:
                return client.read_holding_registers(address, count=count, device_id=slave)
            return client.read_input_registers(address, count=count, device_id=slave)

        reply = await self._transact(slave, what, call)
        if function in (1, 2):
            bits = [bool(bit) for bit in reply.bits]
            if len(bits) < count:
                raise UnexpectedReply(f"bus={self.name} {what}: {len(bits)} bits answered")
            return bits[:count]
        registers = [int(register) for register in reply.registers]
        if len(registers) != count:
            raise UnexpectedReply(f"bus={self.name} {what}: {len(registers)} registers answered")
        return registers

    async def write(
        self, function: int, address: int, values: Sequence[int] | Sequence[bool], slave: int
    ) -> None:
        """Write with function code 5 (one coil), 6 (one register), 15 or 16."""
        if function not in WRITE_FUNCTIONS:
            raise BusSettingsError(f"not a write function code: {function}")
        if not values or (function in (5, 6) and len(values) != 1):
            raise BusSettingsError(
                f"fc{function:02d} needs {'one' if function in (5, 6) else 'some'} value(s)"
            )
        what = f"fc{function:02d} {address}+{len(values)}"

        def call(client: AsyncClient) -> Awaitable[ModbusPDU]:
            if function == 5:
                return client.write_coil(address, bool(values[0]), device_id=slave)
            if function == 6:
                return client.write_register(address, int(values[0]), device_id=slave)
            if function == 15:
                return client.write_coils(address, [bool(v) for v in values], device_id=slave)
            return client.write_registers(address, [int(v) for v in values], device_id=slave)

        await self._transact(slave, what, call)


__all__ = [
    "BusCounters",
    "BusKind",
    "ModbusBus",
    "ModbusBusSettings",
]
