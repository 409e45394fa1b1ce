"""Modbus device profiles: TOML files describing one device model (see hardware/devices/).

A profile holds what is true of every unit of a model: its register map and default
slave id.  Bus settings (port, baud rate, parity, timeouts) belong to the caller's
configuration, not here.  Addresses are 0-based protocol addresses (what goes on the
wire); a manual's "30001" input register is address 0, "40001" holding register is 0.

Format::

    [device]
    name = "sdm120"                 # required, non-empty
    manufacturer = "Eastron"        # default ""
    model = "SDM120-Modbus"         # default ""
    slave_id = 1                    # default 1, 1..247
    poll_interval_s = 10.0          # default interval of the channels, > 0
    max_gap = 10                    # planner: largest unused gap read inside a request
    max_registers = 125             # planner: device cap per register read, 1..125
    max_bits = 2000                 # planner: device cap per bit read, 1..2000
    source = "..."                  # the document the map follows (free text)

    [[channels]]                    # numbered 1, 2, ... in file order
    name = "voltage"                # required, unique
    function = "input"              # coil | discrete | input | holding (required)
    address = 0                     # required, 0..65535 (the whole value must fit)
    type = "f32"                    # bool (default for coil/discrete), u16 (default for
                                    # input/holding), i16, u32, i32, u64, i64, f32, f64,
                                    # string, bitfield
    length = 8                      # registers; string only (required there)
    byte_order = "big"              # big | little (inside a register)
    word_order = "big"              # big | little (across registers)
    scale = 1.0                     # value = raw * scale + offset  (numbers only)
    offset = 0.0
    precision = 1                   # decimals kept after scaling (numbers only)
    unit = "V"                      # display unit, see tim_drivers.modbus.units.UNITS
    writable = false                # only for coil and holding
    poll_interval_s = 10.0          # default: the device's
    low_limit = 0.0                 # optional, in the display unit (go to the TEDS)
    high_limit = 300.0
    description = "..."             # optional free text

Errors raise :class:`DeviceProfileError` (a ``TimError`` and ``ValueError``) whose
message names the key, e.g. ``channels[3].address``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from tim_drivers.errors import DeviceProfileError, RegisterCodecError
from tim_drivers.modbus.registers import (
    MAX_ADDRESS,
    DataType,
    Function,
    Order,
    RegisterFormat,
    Value,
)
from tim_drivers.modbus.units import UNITS
from tim_drivers.tomlcheck import TableReader

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_GAP = 10
DEFAULT_POLL_INTERVAL = 10.0

_DEVICE_KEYS = {
    "name",
    "manufacturer",
    "model",
    "slave_id",
    "poll_interval_s",
    "max_gap",
    "max_registers",
    "max_bits",
    "source",
}
_CHANNEL_KEYS = {
    "name",
    "function",
    "address",
    "type",
    "length",
    "byte_order",
    "word_order",
    "scale",
    "offset",
    "precision",
    "unit",
    "writable",
    "poll_interval_s",
    "low_limit",
    "high_limit",
    "description",
}


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelProfile:
    """One value of a device: where it lives and how it is decoded."""

    name: str
    function: Function
    address: int
    format: RegisterFormat
    unit: str = ""
    writable: bool = False
    poll_interval_s: float = DEFAULT_POLL_INTERVAL
    low_limit: float | None = None
    high_limit: float | None = None
    description: str = ""

    @property
    def size(self) -> int:
        """Registers (or bits) the channel occupies."""
        return self.format.size

    @property
    def end(self) -> int:
        """First address after the channel."""
        return self.address + self.size

    def decode(self, registers: Sequence[int]) -> Value:
        return self.format.decode(registers)

    def encode(self, value: Value) -> list[int]:
        """Registers (or one bit) to write; refuses a channel that is not writable."""
        if not self.writable:
            raise RegisterCodecError(f"channel {self.name!r} is not writable")
        return self.format.encode(value)


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceProfile:
    name: str
    manufacturer: str
    model: str
    slave_id: int
    poll_interval_s: float
    max_gap: int
    max_registers: int
    max_bits: int
    source: str
    channels: tuple[ChannelProfile, ...]
    max_gap_set: bool = False
    """True when the profile chose max_gap; else the bus derives it from its wire."""

    def channel(self, name: str) -> ChannelProfile:
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(name)

    def max_count(self, function: Function) -> int:
        """The device's cap on one read of ``function``."""
        return self.max_bits if function.is_bit else self.max_registers


def _reader(source: str, table: Mapping[str, object], path: str) -> TableReader:
    return TableReader(DeviceProfileError, source, table, path)


def _format(reader: TableReader, function: Function) -> RegisterFormat:
    bit_types = (DataType.BOOL.value,)
    register_types = tuple(t.value for t in DataType if t is not DataType.BOOL)
    if function.is_bit:
        data_type = DataType(reader.choice("type", bit_types, DataType.BOOL.value))
    else:
        data_type = DataType(reader.choice("type", register_types, DataType.U16.value))
    length: int | None = None
    if data_type is DataType.STRING:
        length = reader.integer("length", 1, function.max_read)
    elif "length" in reader.table:
        raise reader.error("length", 'only allowed with type = "string"')
    orders = tuple(o.value for o in Order)
    byte_order = Order(reader.choice("byte_order", orders, Order.BIG.value))
    word_order = Order(reader.choice("word_order", orders, Order.BIG.value))
    if data_type is DataType.STRING and word_order is not Order.BIG:
        raise reader.error("word_order", "has no meaning for a string (characters in order)")
    if not data_type.is_numeric:
        for key in ("scale", "offset", "precision"):
            if key in reader.table:
                raise reader.error(key, f"not allowed with type {data_type.value!r}")
    scale = reader.number("scale", 1.0)
    if scale == 0:
        raise reader.error("scale", "must not be 0")
    precision = None if "precision" not in reader.table else reader.integer("precision", 0, 15)
    try:
        return RegisterFormat(
            data_type,
            length,
            byte_order,
            word_order,
            scale,
            reader.number("offset", 0.0),
            precision,
        )
    except RegisterCodecError as err:  # pragma: no cover - the checks above come first
        raise reader.error("type", str(err)) from None


def _channel(source: str, table: object, index: int, defaults: DeviceProfile) -> ChannelProfile:
    path = f"channels[{index}]"
    if not isinstance(table, dict):
        raise DeviceProfileError(f"{source}: key '{path}': must be a table")
    reader = _reader(source, table, path)
    reader.check_keys(_CHANNEL_KEYS)
    name = reader.text("name")
    function = Function(reader.choice("function", tuple(f.value for f in Function)))
    address = reader.integer("address", 0, MAX_ADDRESS)
    fmt = _format(reader, function)
    if fmt.size > defaults.max_count(function):
        raise reader.error(
            "length", f"{fmt.size} registers exceed the device's max_registers for one read"
        )
    if address + fmt.size - 1 > MAX_ADDRESS:
        raise reader.error(
            "address", f"{address} + {fmt.size} elements runs past address {MAX_ADDRESS}"
        )
    unit = reader.text("unit", "", empty=True)
    if unit not in UNITS:
        known = ", ".join(repr(u) for u in UNITS)
        raise reader.error("unit", f"unknown unit {unit!r} (known: {known})")
    writable = reader.flag("writable", False)
    if writable and not function.writable:
        raise reader.error("writable", f"a {function.value} table cannot be written")
    low = reader.optional_number("low_limit")
    high = reader.optional_number("high_limit")
    if low is not None and high is not None and low >= high:
        raise reader.error("high_limit", "must be greater than low_limit")
    return ChannelProfile(
        name=name,
        function=function,
        address=address,
        format=fmt,
        unit=unit,
        writable=writable,
        poll_interval_s=reader.number("poll_interval_s", defaults.poll_interval_s, positive=True),
        low_limit=low,
        high_limit=high,
        description=reader.text("description", "", empty=True),
    )


def _check_overlaps(source: str, channels: Sequence[ChannelProfile]) -> None:
    seen_names: dict[str, int] = {}
    for index, channel in enumerate(channels, 1):
        if channel.name in seen_names:
            raise DeviceProfileError(
                f"{source}: key 'channels[{index}].name': {channel.name!r} already used by "
                f"channels[{seen_names[channel.name]}]"
            )
        seen_names[channel.name] = index
    for function in Function:
        numbered = sorted(
            (
                (channel.address, index, channel)
                for index, channel in enumerate(channels, 1)
                if channel.function is function
            ),
            key=lambda item: (item[0], item[1]),
        )
        for (_, first_index, first), (_, index, second) in itertools.pairwise(numbered):
            if second.address < first.end:
                later, earlier = max(index, first_index), min(index, first_index)
                other = first if earlier == first_index else second
                raise DeviceProfileError(
                    f"{source}: key 'channels[{later}].address': overlaps channels[{earlier}] "
                    f"{other.name!r} ({function.value} {other.address}..{other.end - 1})"
                )


def parse_profile(data: Mapping[str, object], source: str = "profile") -> DeviceProfile:
    """Validate a decoded TOML document; raise :class:`DeviceProfileError` naming the key."""
    top = _reader(source, data, "")
    top.check_keys({"device", "channels"})
    device_table = data.get("device")
    if not isinstance(device_table, dict):
        raise top.error("device", "missing [device] table")
    device = _reader(source, device_table, "device")
    device.check_keys(_DEVICE_KEYS)
    defaults = DeviceProfile(
        name=device.text("name"),
        manufacturer=device.text("manufacturer", "", empty=True),
        model=device.text("model", "", empty=True),
        slave_id=device.integer("slave_id", 1, 247, 1),
        poll_interval_s=device.number("poll_interval_s", DEFAULT_POLL_INTERVAL, positive=True),
        max_gap=device.integer("max_gap", 0, Function.INPUT.max_read - 1, DEFAULT_MAX_GAP),
        max_registers=device.integer("max_registers", 1, Function.INPUT.max_read, 125),
        max_bits=device.integer("max_bits", 1, Function.COIL.max_read, 2000),
        source=device.text("source", "", empty=True),
        channels=(),
        max_gap_set="max_gap" in device_table,
    )
    tables = data.get("channels")
    if not isinstance(tables, list) or not tables:
        raise top.error("channels", "missing or empty [[channels]] array")
    channels = tuple(_channel(source, table, i, defaults) for i, table in enumerate(tables, 1))
    _check_overlaps(source, channels)
    return dataclasses.replace(defaults, channels=channels)


def load_profile(path: str | Path) -> DeviceProfile:
    """Read and validate a profile file."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except OSError as err:
        raise DeviceProfileError(f"{path}: cannot read: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise DeviceProfileError(f"{path}: not valid TOML: {err}") from err
    return parse_profile(data, str(path))
