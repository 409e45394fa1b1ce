"""Modbus register codec: typed values <-> 16-bit registers (pure, no I/O).

A value of ``n`` registers is first turned into ``2n`` octets in big-endian ("ABCD")
order, then unpacked.  Two independent knobs describe how a device lays those octets out:

* ``byte_order``: the order of the two octets *inside* one register.  ``big`` is the
  Modbus standard (high octet first); ``little`` swaps them.
* ``word_order``: the order of the registers *across* a multi-register value.  ``big``
  puts the most significant register at the lowest address; ``little`` reverses the
  register list.

For a 32-bit value with octets ``A B C D`` (``A`` most significant):

========  ===========  ===========  ======================
code      byte_order   word_order   registers (low address first)
========  ===========  ===========  ======================
ABCD      big          big          ``AB``, ``CD``
CDAB      big          little       ``CD``, ``AB``
BADC      little       big          ``BA``, ``DC``
DCBA      little       little       ``DC``, ``BA``
========  ===========  ===========  ======================

Scaling: ``value = raw * scale + offset``, then rounded to ``precision`` decimals when
``precision`` is set.  Without scale, offset and precision an integer type decodes to an
``int``.  Strings, bitfields and coil bits are never scaled.

Coils and discrete inputs are bits: a ``bool`` format decodes one element (0 or 1) of the
bit list a read returns.  :func:`pack_bits`/:func:`unpack_bits` convert between bit lists
and the LSB-first octets of the Modbus PDU.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from tim_drivers.errors import RegisterCodecError

_LOGGER = logging.getLogger(__name__)

Value = bool | int | float | str

MAX_READ_REGISTERS = 125  # FC03/FC04
MAX_READ_BITS = 2000  # FC01/FC02
MAX_WRITE_REGISTERS = 123  # FC16
MAX_ADDRESS = 0xFFFF


class Function(StrEnum):
    """The four Modbus data tables."""

    COIL = "coil"
    DISCRETE = "discrete"
    INPUT = "input"
    HOLDING = "holding"

    @property
    def is_bit(self) -> bool:
        return self in (Function.COIL, Function.DISCRETE)

    @property
    def writable(self) -> bool:
        """Whether the table can be written at all (FC05/15 coils, FC06/16 holding)."""
        return self in (Function.COIL, Function.HOLDING)

    @property
    def max_read(self) -> int:
        """Most elements one read request may cover (Modbus application protocol)."""
        return MAX_READ_BITS if self.is_bit else MAX_READ_REGISTERS

    @property
    def read_code(self) -> int:
        """The read function code (1, 2, 4 or 3)."""
        return {"coil": 1, "discrete": 2, "input": 4, "holding": 3}[self.value]


class DataType(StrEnum):
    BOOL = "bool"  # one coil / discrete input
    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    U64 = "u64"
    I64 = "i64"
    F32 = "f32"
    F64 = "f64"
    STRING = "string"  # ``length`` registers, two characters each
    BITFIELD = "bitfield"  # one register returned as an unscaled int

    @property
    def is_numeric(self) -> bool:
        """Types that take scale, offset and precision."""
        return self not in (DataType.BOOL, DataType.STRING, DataType.BITFIELD)


class Order(StrEnum):
    BIG = "big"
    LITTLE = "little"


# data type -> (registers, signed)
_INTEGERS: dict[DataType, tuple[int, bool]] = {
    DataType.U16: (1, False),
    DataType.I16: (1, True),
    DataType.U32: (2, False),
    DataType.I32: (2, True),
    DataType.U64: (4, False),
    DataType.I64: (4, True),
    DataType.BITFIELD: (1, False),
}
_FLOATS: dict[DataType, tuple[int, str]] = {DataType.F32: (2, ">f"), DataType.F64: (4, ">d")}
_ORDER_CODES = {
    "ABCD": (Order.BIG, Order.BIG),
    "CDAB": (Order.BIG, Order.LITTLE),
    "BADC": (Order.LITTLE, Order.BIG),
    "DCBA": (Order.LITTLE, Order.LITTLE),
}


def order_from_code(code: str) -> tuple[Order, Order]:
    """``"CDAB"`` -> ``(byte_order, word_order)``; raises :class:`RegisterCodecError`."""
    try:
        return _ORDER_CODES[code.upper()]
    except KeyError:
        raise RegisterCodecError(f"unknown order code {code!r} (ABCD, CDAB, BADC, DCBA)") from None


@dataclass(frozen=True, slots=True)
class RegisterFormat:
    """How one value is laid out in registers (or one bit), and how it is scaled."""

    data_type: DataType = DataType.U16
    length: int | None = None  # registers; STRING only (required there)
    byte_order: Order = Order.BIG
    word_order: Order = Order.BIG
    scale: float = 1.0
    offset: float = 0.0
    precision: int | None = None  # decimals kept after scaling

    def __post_init__(self) -> None:
        kind = self.data_type
        if kind is DataType.STRING:
            if self.length is None or not 1 <= self.length <= MAX_READ_REGISTERS:
                raise RegisterCodecError(
                    f"a string needs a length of 1..{MAX_READ_REGISTERS} registers"
                )
            if self.word_order is not Order.BIG:
                raise RegisterCodecError("word_order has no meaning for a string")
        elif self.length is not None and self.length != self.size:
            raise RegisterCodecError(f"{kind.value} is {self.size} register(s), not {self.length}")
        if not kind.is_numeric and (
            self.scale != 1.0 or self.offset != 0.0 or self.precision is not None
        ):
            raise RegisterCodecError(f"{kind.value} takes no scale, offset or precision")
        if not math.isfinite(self.scale) or self.scale == 0:
            raise RegisterCodecError("scale must be a finite non-zero number")
        if not math.isfinite(self.offset):
            raise RegisterCodecError("offset must be a finite number")
        if self.precision is not None and not 0 <= self.precision <= 15:
            raise RegisterCodecError("precision must be 0..15 decimals")

    @classmethod
    def with_order(
        cls,
        data_type: DataType,
        code: str,
        *,
        length: int | None = None,
        scale: float = 1.0,
        offset: float = 0.0,
        precision: int | None = None,
    ) -> RegisterFormat:
        """A format from an order code such as ``"CDAB"`` (see the module docstring)."""
        byte_order, word_order = order_from_code(code)
        return cls(data_type, length, byte_order, word_order, scale, offset, precision)

    @property
    def size(self) -> int:
        """Registers (or bits, for ``bool``) one value occupies."""
        kind = self.data_type
        if kind is DataType.BOOL:
            return 1
        if kind is DataType.STRING:
            return self.length or 0
        if kind in _FLOATS:
            return _FLOATS[kind][0]
        return _INTEGERS[kind][0]

    @property
    def scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0 or self.precision is not None

    # --- octets <-> registers -----------------------------------------------------------

    def _octets(self, registers: Sequence[int]) -> bytes:
        if len(registers) != self.size:
            raise RegisterCodecError(
                f"{self.data_type.value} needs {self.size} register(s), got {len(registers)}"
            )
        words = list(registers)
        if self.word_order is Order.LITTLE:
            words.reverse()
        out = bytearray()
        for word in words:
            if not 0 <= word <= 0xFFFF:
                raise RegisterCodecError(f"register value {word} outside 0..65535")
            out += word.to_bytes(2, self.byte_order.value)
        return bytes(out)

    def _registers(self, octets: bytes) -> list[int]:
        words = [
            int.from_bytes(octets[pos : pos + 2], self.byte_order.value)
            for pos in range(0, len(octets), 2)
        ]
        if self.word_order is Order.LITTLE:
            words.reverse()
        return words

    # --- decode -------------------------------------------------------------------------

    def decode_raw(self, registers: Sequence[int]) -> Value:
        """The unscaled value held by ``registers`` (bits for ``bool``)."""
        kind = self.data_type
        if kind is DataType.BOOL:
            if len(registers) != 1:
                raise RegisterCodecError(f"bool needs 1 bit, got {len(registers)}")
            return bool(registers[0])
        octets = self._octets(registers)
        if kind is DataType.STRING:
            return octets.decode("latin-1").rstrip("\x00")
        if kind in _FLOATS:
            return float(struct.unpack(_FLOATS[kind][1], octets)[0])
        return int.from_bytes(octets, "big", signed=_INTEGERS[kind][1])

    def decode(self, registers: Sequence[int]) -> Value:
        """The value held by ``registers``, scaled (see the module docstring)."""
        raw = self.decode_raw(registers)
        if not self.data_type.is_numeric or not self.scaled:
            return raw
        assert isinstance(raw, int | float)
        value = raw * self.scale + self.offset
        if self.precision is not None and math.isfinite(value):
            value = round(value, self.precision)
        return value

    # --- encode -------------------------------------------------------------------------

    def encode(self, value: Value) -> list[int]:
        """Registers (or one bit) for ``value``; the inverse of :meth:`decode`.

        Integer types round the unscaled value to the nearest integer and refuse values
        outside their range.
        """
        kind = self.data_type
        if kind is DataType.BOOL:
            if not isinstance(value, bool | int) or value not in (0, 1):
                raise RegisterCodecError(f"bool value must be True/False/0/1, not {value!r}")
            return [int(value)]
        if kind is DataType.STRING:
            return self._encode_string(value)
        if isinstance(value, str) or (isinstance(value, bool) and self.scaled):
            raise RegisterCodecError(f"{kind.value} needs a number, not {value!r}")
        raw: int | float = value
        if self.scaled:
            raw = (value - self.offset) / self.scale
        if kind in _FLOATS:
            try:
                return self._registers(struct.pack(_FLOATS[kind][1], raw))
            except (OverflowError, struct.error) as err:
                raise RegisterCodecError(f"{value!r} does not fit {kind.value}: {err}") from None
        return self._encode_integer(raw, value)

    def _encode_integer(self, raw: int | float, value: Value) -> list[int]:
        kind = self.data_type
        size, signed = _INTEGERS[kind]
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise RegisterCodecError(f"{value!r} is not finite ({kind.value})")
            raw = math.floor(raw + 0.5)
        bits = 16 * size
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not low <= raw <= high:
            raise RegisterCodecError(f"{value!r} gives raw {raw}, outside {kind.value} range")
        return self._registers(int(raw).to_bytes(2 * size, "big", signed=signed))

    def _encode_string(self, value: Value) -> list[int]:
        if not isinstance(value, str):
            raise RegisterCodecError(f"string needs a str, not {value!r}")
        try:
            octets = value.encode("latin-1")
        except UnicodeEncodeError:
            raise RegisterCodecError(f"{value!r} is not Latin-1 text") from None
        room = 2 * self.size
        if len(octets) > room:
            raise RegisterCodecError(f"{len(octets)} characters do not fit {room}")
        return self._registers(octets.ljust(room, b"\x00"))


def pack_bits(bits: Sequence[bool | int]) -> bytes:
    """Bits -> PDU octets: the first bit is the least significant bit of the first octet."""
    out = bytearray((len(bits) + 7) // 8)
    for index, bit in enumerate(bits):
        if bit:
            out[index // 8] |= 1 << (index % 8)
    return bytes(out)


def unpack_bits(octets: bytes, count: int) -> list[bool]:
    """PDU octets -> the first ``count`` bits (inverse of :func:`pack_bits`)."""
    if not 0 <= count <= 8 * len(octets):
        raise RegisterCodecError(f"{len(octets)} octets cannot hold {count} bits")
    return [bool(octets[index // 8] >> (index % 8) & 1) for index in range(count)]
