"""IEEE 1451.0-2007 TEDS: block codec, typed Meta/Channel/User's-name TEDS, sample decoding.

Block layout (ieee1451.md §4.1)::

    UInt32 length (= data-block octets + 2) | TLV tuples | UInt16 checksum

The checksum is the one's complement of the 16-bit sum of every octet from the length
field through the last data-block octet.

The typed classes (:class:`MetaTeds`, :class:`ChannelTeds`, :class:`UserNameTeds`) keep
the tuples they were parsed from in ``raw``.  ``to_bytes()`` re-emits each raw tuple
verbatim unless the typed value for it was changed, so ``parse(x).to_bytes() == x`` for
every TEDS we can parse, unknown and manufacturer tuples included, in their original
order.  Typed values that were absent from ``raw`` are appended.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from tim_drivers.codec.p1451 import TedsAccessCode
from tim_drivers.errors import FrameError, TedsError

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")

TEDS_ID_TYPE = 3
MAX_TEDS_SIZE = 0x10000  # refuse to hold larger TEDS images (they come from a small MCU)


class ChanType(IntEnum):
    """Table 50."""

    SENSOR = 0
    ACTUATOR = 1
    EVENT_SENSOR = 2


class CalKey(IntEnum):
    """Table 49."""

    CAL_NONE = 0
    CAL_SUPPLIED = 1
    CAL_CUSTOM = 3
    TIM_CAL_SUPPLIED = 4
    TIM_CAL_SELF = 5
    TIM_CAL_CUSTOM = 6


class DataModel(IntEnum):
    """Table 52 (only 0-2 are decoded by :func:`decode_samples`)."""

    UNSIGNED = 0
    FLOAT32 = 1
    FLOAT64 = 2
    FRACTION = 3
    BIT_SEQUENCE = 4
    LONG_INTEGER = 5
    LONG_FRACTION = 6
    TIME_INSTANCE = 7


class UnitsInterpretation(IntEnum):
    """Table 3."""

    SI_UNITS = 0
    RATIO_SI_UNITS = 1
    LOG10_SI_UNITS = 2
    LOG10_RATIO_SI_UNITS = 3
    DIGITAL_DATA = 4
    ARBITRARY = 5


# --- generic block layer ---------------------------------------------------------------


def checksum(data: bytes) -> int:
    """TEDS checksum of ``data`` (length field + data block)."""
    return (~sum(data)) & 0xFFFF


@dataclass(frozen=True, slots=True)
class Tlv:
    """One TEDS tuple."""

    type: int
    value: bytes


def _parse_tuples(data: bytes, length_size: int) -> tuple[Tlv, ...]:
    tuples: list[Tlv] = []
    pos = 0
    while pos < len(data):
        # The TEDS identifier tuple is read before the tuple length is known: 1 octet.
        size = 1 if (pos == 0 and data[0] == TEDS_ID_TYPE) else length_size
        start = pos + 1 + size
        if start > len(data):
            raise TedsError(f"tuple header at offset {pos} runs past the data block")
        end = start + int.from_bytes(data[pos + 1 : start], "big")
        if end > len(data):
            raise TedsError(f"tuple type {data[pos]} at offset {pos} runs past the data block")
        tuples.append(Tlv(data[pos], data[start:end]))
        pos = end
    return tuple(tuples)


def _build_tuples(tuples: Sequence[Tlv], length_size: int) -> bytes:
    out = bytearray()
    for index, tlv in enumerate(tuples):
        size = 1 if (index == 0 and tlv.type == TEDS_ID_TYPE) else length_size
        if not 0 <= tlv.type <= 0xFF:
            raise ValueError(f"tuple type {tlv.type} outside 0..255")
        if len(tlv.value) >= 1 << (8 * size):
            raise ValueError(f"tuple type {tlv.type}: {len(tlv.value)} octets do not fit")
        out.append(tlv.type)
        out += len(tlv.value).to_bytes(size, "big")
        out += tlv.value
    return bytes(out)


@dataclass(frozen=True, slots=True)
class TedsId:
    """TEDS identifier (type 3): 4 octets in 2007, 5 in 2024 (with a sub-family)."""

    family: int = 0
    access_code: int = 0
    version: int = 1
    tuple_length: int = 1
    subfamily: int | None = None

    def to_bytes(self) -> bytes:
        if self.subfamily is None:
            return bytes((self.family, self.access_code, self.version, self.tuple_length))
        return bytes(
            (self.family, self.subfamily, self.access_code, self.version, self.tuple_length)
        )

    @classmethod
    def from_bytes(cls, value: bytes) -> TedsId:
        if len(value) == 4:
            return cls(value[0], value[1], value[2], value[3])
        if len(value) == 5:
            return cls(value[0], value[2], value[3], value[4], subfamily=value[1])
        raise TedsError(f"TEDS identifier of {len(value)} octets (expected 4 or 5)")


@dataclass(frozen=True, slots=True)
class TedsBlock:
    """A whole TEDS as a list of tuples (length, checksum and tuple-length handled here)."""

    tuples: tuple[Tlv, ...]
    length_size: int = 1

    @property
    def teds_id(self) -> TedsId | None:
        tlv = self.find(TEDS_ID_TYPE)
        return None if tlv is None else TedsId.from_bytes(tlv.value)

    def find(self, tlv_type: int) -> Tlv | None:
        return next((t for t in self.tuples if t.type == tlv_type), None)

    def to_bytes(self) -> bytes:
        body = _build_tuples(self.tuples, self.length_size)
        head = (len(body) + 2).to_bytes(4, "big") + body
        return head + checksum(head).to_bytes(2, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> TedsBlock:
        """Parse exactly one TEDS image (``4 + length`` octets)."""
        if len(data) < 6:
            raise TedsError(f"TEDS of {len(data)} octets is shorter than length + checksum")
        length = int.from_bytes(data[:4], "big")
        if length < 2 or len(data) != 4 + length:
            raise TedsError(f"TEDS length field {length} but {len(data) - 4} octets follow")
        expected = checksum(data[:-2])
        found = int.from_bytes(data[-2:], "big")
        if found != expected:
            raise TedsError(f"TEDS checksum {found:#06x} != computed {expected:#06x}")
        body = data[4:-2]
        declared = 1
        if len(body) > 1 + 5 and body[0] == TEDS_ID_TYPE and body[1] in (4, 5):
            declared = body[1 + body[1]]  # last octet of the identifier: tuple length
        # Some published TEDS declare a tuple length they do not use: fall back to 1.
        for size in dict.fromkeys((declared, 1)):
            if not 1 <= size <= 4:
                continue
            try:
                return cls(_parse_tuples(body, size), size)
            except TedsError:
                if size == 1:
                    raise
        raise TedsError("unreachable")  # pragma: no cover


# --- value codecs ----------------------------------------------------------------------


def _fixed(value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise TedsError(f"{what}: {len(value)} octets, expected {size}")
    return value


def _dec_uint(size: int) -> Callable[[bytes], int]:
    return lambda value: int.from_bytes(_fixed(value, size, f"UInt{8 * size}"), "big")


def _enc_uint(size: int) -> Callable[[int], bytes]:
    return lambda number: number.to_bytes(size, "big")


def _dec_f32(value: bytes) -> float:
    return float(struct.unpack(">f", _fixed(value, 4, "Float32"))[0])


def _enc_f32(number: float) -> bytes:
    return struct.pack(">f", number)


def _dec_text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _enc_text(text: str) -> bytes:
    return text.encode("utf-8")


def _identity(value: bytes) -> bytes:
    return value


def _dec_teds_id(value: bytes) -> TedsId:
    return TedsId.from_bytes(value)


def _enc_teds_id(teds_id: TedsId) -> bytes:
    return teds_id.to_bytes()


# --- physical units ----------------------------------------------------------------------

_UNIT_NAMES = (
    "radians",
    "steradians",
    "meters",
    "kilograms",
    "seconds",
    "amperes",
    "kelvins",
    "moles",
    "candelas",
)
_UNITS_FIRST_SUBTYPE = 50  # 50 interpretation, 51..59 exponents, 60 extension code
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
# Base symbols in display order: (index into the exponent tuple, symbol).
_BASE_SYMBOLS = (
    (2, "m"),
    (3, "kg"),
    (4, "s"),
    (5, "A"),
    (6, "K"),
    (7, "mol"),
    (8, "cd"),
    (0, "rad"),
    (1, "sr"),
)


def _units_key(**exponents: float) -> tuple[float, ...]:
    return tuple(float(exponents.get(name, 0)) for name in _UNIT_NAMES)


_NAMED_UNITS: dict[tuple[float, ...], str] = {
    _units_key(): "",
    _units_key(kelvins=1): "K",
    _units_key(kilograms=1, meters=-1, seconds=-2): "Pa",
    _units_key(meters=1): "m",
    _units_key(meters=1, seconds=-1): "m/s",
    _units_key(meters=1, seconds=-2): "m/s²",
    _units_key(kilograms=1, meters=2, seconds=-3, amperes=-1): "V",
    _units_key(amperes=1): "A",
    _units_key(seconds=1): "s",
    _units_key(seconds=-1): "Hz",
    _units_key(kilograms=1): "kg",
    _units_key(kilograms=1, meters=1, seconds=-2): "N",
    _units_key(kilograms=1, meters=2, seconds=-2): "J",
    _units_key(kilograms=1, meters=2, seconds=-3): "W",
    _units_key(kilograms=1, meters=2, seconds=-3, amperes=-2): "Ω",
    _units_key(amperes=1, seconds=1): "C",
    _units_key(meters=2): "m²",
    _units_key(meters=3): "m³",
    _units_key(kilograms=1, meters=-3): "kg/m³",
    _units_key(moles=1): "mol",
    _units_key(candelas=1): "cd",
    _units_key(candelas=1, steradians=1, meters=-2): "lx",
    _units_key(radians=1): "rad",
    _units_key(radians=1, seconds=-1): "rad/s",
    _units_key(steradians=1): "sr",
}


def _exponent_symbol(symbol: str, exponent: float) -> str:
    if exponent == 1:
        return symbol
    if exponent.is_integer():
        return symbol + str(int(exponent)).translate(_SUPERSCRIPT)
    return f"{symbol}^{exponent:g}"


@dataclass(frozen=True, slots=True)
class PhysicalUnits:
    """UNITS (ieee1451.md §6.2): interpretation, nine SI base exponents, extension code.

    Exponents may be half-integers; on the wire each is ``2 * exponent + 128``.
    """

    interpretation: int = UnitsInterpretation.SI_UNITS
    radians: float = 0
    steradians: float = 0
    meters: float = 0
    kilograms: float = 0
    seconds: float = 0
    amperes: float = 0
    kelvins: float = 0
    moles: float = 0
    candelas: float = 0
    extension: int = 0

    def __post_init__(self) -> None:
        for number in (self.interpretation, self.extension):
            if not 0 <= number <= 0xFF:
                raise ValueError(f"units octet {number} outside 0..255")
        for name, exponent in zip(_UNIT_NAMES, self.exponents, strict=True):
            encoded = 2 * exponent + 128
            if not (float(encoded).is_integer() and 0 <= encoded <= 0xFF):
                raise ValueError(f"{name} exponent {exponent} not encodable")

    @property
    def exponents(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, name)) for name in _UNIT_NAMES)

    @property
    def is_kelvin(self) -> bool:
        """Exactly kelvin: SI interpretation, kelvins exponent 1, every other exponent 0."""
        return self.interpretation == UnitsInterpretation.SI_UNITS and self.exponents == _units_key(
            kelvins=1
        )

    def octets(self) -> bytes:
        """The 11-octet raw form (interpretation, 9 exponents, extension)."""
        exps = bytes(int(2 * e + 128) for e in self.exponents)
        return bytes((self.interpretation,)) + exps + bytes((self.extension,))

    @classmethod
    def from_octets(cls, raw: bytes) -> PhysicalUnits:
        """Parse the raw 10- or 11-octet form (10: no extension octet)."""
        if len(raw) not in (10, 11):
            raise TedsError(f"raw UNITS of {len(raw)} octets (expected 10 or 11)")
        exps = {name: (raw[1 + i] - 128) / 2 for i, name in enumerate(_UNIT_NAMES)}
        return cls(raw[0], **exps, extension=raw[10] if len(raw) == 11 else 0)

    def to_tlv_value(self) -> bytes:
        """Nested-TLV form (sub-types 50-60), the form our TIMs emit: the interpretation
        always, then only the exponents that are not 0, then the extension code if set."""
        raw = self.octets()
        out = bytearray((_UNITS_FIRST_SUBTYPE, 1, raw[0]))
        for index in range(1, 11):
            if raw[index] != (128 if index < 10 else 0):
                out += bytes((_UNITS_FIRST_SUBTYPE + index, 1, raw[index]))
        return bytes(out)

    @classmethod
    def from_tlv_value(cls, value: bytes) -> PhysicalUnits:
        """Accept both wire forms: 10/11 octets = raw struct, multiple of 3 = nested TLV."""
        if len(value) in (10, 11):
            return cls.from_octets(value)
        if len(value) % 3:
            raise TedsError(f"UNITS value of {len(value)} octets is neither raw nor nested")
        raw = bytearray(bytes((0,)) + bytes((128,)) * 9 + bytes((0,)))
        for pos in range(0, len(value), 3):
            sub_type, length, octet = value[pos : pos + 3]
            index = sub_type - _UNITS_FIRST_SUBTYPE
            if length != 1 or not 0 <= index <= 10:
                raise TedsError(f"bad UNITS sub-field type {sub_type} length {length}")
            raw[index] = octet
        return cls.from_octets(bytes(raw))

    def symbol(self) -> str:
        """Display symbol.

        * SI units: a conventional symbol when one exists ("K", "Pa", "m", "m/s²", "V",
          "" for dimensionless ...), else a product of base symbols such as "kg·m⁻¹".
        * Ratio of SI units (interpretation 1, U/U): "%".  Our choice: a ratio is shown as
          a percentage, so whoever displays it multiplies the value by 100 (the
          ``p1451_serial`` driver does).
        * log10 interpretations: "log10(<unit>)" / "log10(ratio)".
        * Digital data and arbitrary units: "".
        """
        interpretation = self.interpretation
        if interpretation == UnitsInterpretation.RATIO_SI_UNITS:
            return "%"
        if interpretation == UnitsInterpretation.LOG10_RATIO_SI_UNITS:
            return "log10(ratio)"
        if interpretation not in (
            UnitsInterpretation.SI_UNITS,
            UnitsInterpretation.LOG10_SI_UNITS,
        ):
            return ""
        exps = self.exponents
        base = _NAMED_UNITS.get(exps)
        if base is None:
            base = "·".join(
                _exponent_symbol(symbol, exps[index])
                for index, symbol in _BASE_SYMBOLS
                if exps[index] != 0
            )
        if interpretation == UnitsInterpretation.LOG10_SI_UNITS:
            return f"log10({base})" if base else "log10"
        return base


ZERO_CELSIUS = 273.15  # 0 °C in kelvin: temperatures travel in K, people read °C
KELVIN = PhysicalUnits(kelvins=1)
PASCAL = PhysicalUnits(kilograms=1, meters=-1, seconds=-2)
RATIO = PhysicalUnits(interpretation=UnitsInterpretation.RATIO_SI_UNITS)
DIMENSIONLESS = PhysicalUnits()


def _dec_units(value: bytes) -> PhysicalUnits:
    return PhysicalUnits.from_tlv_value(value)


def _enc_units(units: PhysicalUnits) -> bytes:
    return units.to_tlv_value()


# --- sample definition and data sets ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleDef:
    """Sample sub-block (type 18): 40 DatModel, 41 ModLenth, 42 SigBits."""

    dat_model: int = DataModel.FLOAT32
    mod_length: int = 4
    sig_bits: int = 32

    def to_tlv_value(self) -> bytes:
        return _build_tuples(
            (
                Tlv(40, bytes((self.dat_model,))),
                Tlv(41, bytes((self.mod_length,))),
                Tlv(42, self.sig_bits.to_bytes(2, "big")),
            ),
            1,
        )

    @classmethod
    def from_tlv_value(cls, value: bytes) -> SampleDef:
        found: dict[int, int] = {}
        for tlv in _parse_tuples(value, 1):
            if tlv.type in (40, 41):
                found[tlv.type] = _dec_uint(1)(tlv.value)
            elif tlv.type == 42:
                found[tlv.type] = _dec_uint(2)(tlv.value)
        default = cls()
        return cls(
            found.get(40, default.dat_model),
            found.get(41, default.mod_length),
            found.get(42, default.sig_bits),
        )


FLOAT32_SAMPLE = SampleDef(DataModel.FLOAT32, 4, 32)


def _dec_sample(value: bytes) -> SampleDef:
    return SampleDef.from_tlv_value(value)


def _enc_sample(sample: SampleDef) -> bytes:
    return sample.to_tlv_value()


def _sample_format(sample: SampleDef) -> str:
    model, size = sample.dat_model, sample.mod_length
    if model == DataModel.UNSIGNED and 1 <= size <= 8:
        return ""
    if model == DataModel.FLOAT32 and size == 4:
        return ">f"
    if model == DataModel.FLOAT64 and size == 8:
        return ">d"
    raise TedsError(f"unsupported sample encoding DatModel={model} ModLenth={size}")


def decode_samples(data: bytes, sample: SampleDef) -> list[float]:
    """Decode a data set packed back-to-back, big-endian (DatModel 0, 1 and 2).

    Unsigned values above 2**53 (7- and 8-octet integers) lose precision as floats.
    """
    fmt = _sample_format(sample)
    size = sample.mod_length
    if len(data) % size:
        raise FrameError(f"data set of {len(data)} octets is not a multiple of {size}")
    chunks = [data[pos : pos + size] for pos in range(0, len(data), size)]
    if not fmt:
        return [float(int.from_bytes(chunk, "big")) for chunk in chunks]
    return [float(struct.unpack(fmt, chunk)[0]) for chunk in chunks]


def encode_samples(values: Sequence[float], sample: SampleDef) -> bytes:
    """Inverse of :func:`decode_samples` (unsigned values are rounded and range-checked)."""
    fmt = _sample_format(sample)
    if not fmt:
        limit = 1 << (8 * sample.mod_length)
        out = bytearray()
        for value in values:
            number = round(value)
            if not 0 <= number < limit:
                raise ValueError(f"{value} does not fit {sample.mod_length} unsigned octets")
            out += number.to_bytes(sample.mod_length, "big")
        return bytes(out)
    return b"".join(struct.pack(fmt, value) for value in values)


# --- typed TEDS ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    types: tuple[int, ...]  # wire types accepted; the first is emitted for new tuples
    current: bytes | None  # encoding of the typed value, None = absent
    normalize: Callable[[bytes], bytes]  # raw value -> canonical encoding


def _field(
    types: tuple[int, ...],
    value: _T | None,
    decode: Callable[[bytes], _T],
    encode: Callable[[_T], bytes],
) -> _Field:
    return _Field(types, None if value is None else encode(value), lambda raw: encode(decode(raw)))


def _claim(raw: Sequence[Tlv], type_sets: Sequence[tuple[int, ...]]) -> list[int | None]:
    """For each raw tuple, the index of the typed field it holds (first occurrence wins)."""
    used: set[int] = set()
    owners: list[int | None] = []
    for tlv in raw:
        owner = next(
            (i for i, types in enumerate(type_sets) if i not in used and tlv.type in types),
            None,
        )
        if owner is not None:
            used.add(owner)
        owners.append(owner)
    return owners


def _rebuild(raw: Sequence[Tlv], specs: Sequence[_Field]) -> tuple[Tlv, ...]:
    owners = _claim(raw, [spec.types for spec in specs])
    out: list[Tlv] = []
    for tlv, owner in zip(raw, owners, strict=True):
        if owner is None:
            out.append(tlv)
            continue
        spec = specs[owner]
        if spec.current is None:
            continue
        try:
            unchanged = spec.normalize(tlv.value) == spec.current
        except (TedsError, ValueError):
            unchanged = False
        out.append(tlv if unchanged else Tlv(tlv.type, spec.current))
    claimed = set(owners)
    for index, spec in enumerate(specs):
        if index not in claimed and spec.current is not None:
            out.append(Tlv(spec.types[0], spec.current))
    return tuple(out)


def _pick(
    raw: Sequence[Tlv], type_sets: Sequence[tuple[int, ...]]
) -> tuple[list[bytes | None], tuple[Tlv, ...]]:
    """Values of the typed fields (None when absent) and the tuples no field claims."""
    values: list[bytes | None] = [None] * len(type_sets)
    unknown: list[Tlv] = []
    for tlv, owner in zip(raw, _claim(raw, type_sets), strict=True):
        if owner is None:
            unknown.append(tlv)
        else:
            values[owner] = tlv.value
    return values, tuple(unknown)


def _opt(value: bytes | None, decode: Callable[[bytes], _T]) -> _T | None:
    return None if value is None else decode(value)


def _block(data: bytes, what: str) -> tuple[TedsBlock, TedsId]:
    block = TedsBlock.from_bytes(data)
    teds_id = block.teds_id
    if teds_id is None:
        raise TedsError(f"{what} without a TEDS identifier (type 3)")
    return block, teds_id


_U8 = (_dec_uint(1), _enc_uint(1))
_U16 = (_dec_uint(2), _enc_uint(2))
_F32 = (_dec_f32, _enc_f32)


@dataclass(frozen=True, slots=True)
class MetaTeds:
    """Meta-TEDS (access code 1, Table 43).  Times are in seconds."""

    teds_id: TedsId = TedsId(0, TedsAccessCode.META, 1, 1)
    uuid: bytes | None = None
    ohold_off: float | None = None
    shold_off: float | None = None
    test_time: float | None = None
    max_chan: int | None = None
    raw: tuple[Tlv, ...] = ()  # the parsed tuples in wire order (see module docstring)
    length_size: int = 1

    _TYPES = ((3,), (4,), (10,), (11,), (12,), (13,))

    @property
    def unknown(self) -> tuple[Tlv, ...]:
        """Tuples no typed field holds (reserved, sub-blocks, manufacturer 128-255)."""
        return _pick(self.raw, self._TYPES)[1]

    @classmethod
    def from_bytes(cls, data: bytes) -> MetaTeds:
        block, teds_id = _block(data, "Meta-TEDS")
        values, _ = _pick(block.tuples, cls._TYPES)
        return cls(
            teds_id=teds_id,
            uuid=values[1],
            ohold_off=_opt(values[2], _dec_f32),
            shold_off=_opt(values[3], _dec_f32),
            test_time=_opt(values[4], _dec_f32),
            max_chan=_opt(values[5], _U16[0]),
            raw=block.tuples,
            length_size=block.length_size,
        )

    def to_bytes(self) -> bytes:
        specs = (
            _field(self._TYPES[0], self.teds_id, _dec_teds_id, _enc_teds_id),
            _field(self._TYPES[1], self.uuid, _identity, _identity),
            _field(self._TYPES[2], self.ohold_off, *_F32),
            _field(self._TYPES[3], self.shold_off, *_F32),
            _field(self._TYPES[4], self.test_time, *_F32),
            _field(self._TYPES[5], self.max_chan, *_U16),
        )
        return TedsBlock(_rebuild(self.raw, specs), self.length_size).to_bytes()


@dataclass(frozen=True, slots=True)
class ChannelTeds:
    """TransducerChannel TEDS (access code 3, Table 48).

    Limits and OError are in the channel's ``phy_units``; times are in seconds.
    """

    teds_id: TedsId = TedsId(0, TedsAccessCode.CHANNEL, 1, 1)
    cal_key: int | None = None
    chan_type: int | None = None
    phy_units: PhysicalUnits | None = None
    low_limit: float | None = None
    high_limit: float | None = None
    o_error: float | None = None
    sample: SampleDef | None = None
    update_time: float | None = None
    read_delay: float | None = None
    raw: tuple[Tlv, ...] = ()
    length_size: int = 1

    _TYPES = ((3,), (10,), (11,), (12,), (13,), (14,), (15,), (18,), (20,), (25,))

    @property
    def unknown(self) -> tuple[Tlv, ...]:
        return _pick(self.raw, self._TYPES)[1]

    @classmethod
    def from_bytes(cls, data: bytes) -> ChannelTeds:
        block, teds_id = _block(data, "TransducerChannel TEDS")
        values, _ = _pick(block.tuples, cls._TYPES)
        return cls(
            teds_id=teds_id,
            cal_key=_opt(values[1], _U8[0]),
            chan_type=_opt(values[2], _U8[0]),
            phy_units=_opt(values[3], _dec_units),
            low_limit=_opt(values[4], _dec_f32),
            high_limit=_opt(values[5], _dec_f32),
            o_error=_opt(values[6], _dec_f32),
            sample=_opt(values[7], _dec_sample),
            update_time=_opt(values[8], _dec_f32),
            read_delay=_opt(values[9], _dec_f32),
            raw=block.tuples,
            length_size=block.length_size,
        )

    def to_bytes(self) -> bytes:
        types = self._TYPES
        specs = (
            _field(types[0], self.teds_id, _dec_teds_id, _enc_teds_id),
            _field(types[1], self.cal_key, *_U8),
            _field(types[2], self.chan_type, *_U8),
            _field(types[3], self.phy_units, _dec_units, _enc_units),
            _field(types[4], self.low_limit, *_F32),
            _field(types[5], self.high_limit, *_F32),
            _field(types[6], self.o_error, *_F32),
            _field(types[7], self.sample, _dec_sample, _enc_sample),
            _field(types[8], self.update_time, *_F32),
            _field(types[9], self.read_delay, *_F32),
        )
        return TedsBlock(_rebuild(self.raw, specs), self.length_size).to_bytes()


@dataclass(frozen=True, slots=True)
class UserNameTeds:
    """User's transducer name TEDS (access code 12, Table 73).

    Emits Format/TCName as types 4/5; also accepts 10/11 (ieee1451.md §7.1).
    """

    teds_id: TedsId = TedsId(0, TedsAccessCode.USER_NAME, 1, 1)
    format: int | None = 0
    name: str | None = None
    raw: tuple[Tlv, ...] = ()
    length_size: int = 1

    _TYPES = ((3,), (4, 10), (5, 11))

    @property
    def unknown(self) -> tuple[Tlv, ...]:
        return _pick(self.raw, self._TYPES)[1]

    @classmethod
    def from_bytes(cls, data: bytes) -> UserNameTeds:
        block, teds_id = _block(data, "User's name TEDS")
        values, _ = _pick(block.tuples, cls._TYPES)
        return cls(
            teds_id=teds_id,
            format=_opt(values[1], _U8[0]),
            name=_opt(values[2], _dec_text),
            raw=block.tuples,
            length_size=block.length_size,
        )

    def to_bytes(self) -> bytes:
        specs = (
            _field(self._TYPES[0], self.teds_id, _dec_teds_id, _enc_teds_id),
            _field(self._TYPES[1], self.format, *_U8),
            _field(self._TYPES[2], self.name, _dec_text, _enc_text),
        )
        return TedsBlock(_rebuild(self.raw, specs), self.length_size).to_bytes()


# Our serial TIMs' PHY TEDS [O] (ieee1451.md §7.2): family 2, manufacturer-range fields.
PHY_BAUD_RATE = 128
PHY_LINK_VERSION = 129
PHY_MAX_PAYLOAD = 130


def serial_phy_teds(baudrate: int, link_version: int = 1, max_payload: int = 1024) -> TedsBlock:
    """Build the PHY TEDS of a TLF-1 serial TIM."""
    return TedsBlock(
        (
            Tlv(TEDS_ID_TYPE, TedsId(2, TedsAccessCode.PHY, 1, 1).to_bytes()),
            Tlv(PHY_BAUD_RATE, baudrate.to_bytes(4, "big")),
            Tlv(PHY_LINK_VERSION, bytes((link_version,))),
            Tlv(PHY_MAX_PAYLOAD, max_payload.to_bytes(2, "big")),
        )
    )


__all__ = [
    "DIMENSIONLESS",
    "FLOAT32_SAMPLE",
    "KELVIN",
    "MAX_TEDS_SIZE",
    "PASCAL",
    "RATIO",
    "CalKey",
    "ChanType",
    "ChannelTeds",
    "DataModel",
    "MetaTeds",
    "PhysicalUnits",
    "TedsBlock",
    "TedsId",
    "Tlv",
    "UnitsInterpretation",
    "UserNameTeds",
    "checksum",
    "decode_samples",
    "encode_samples",
    "serial_phy_teds",
]
