"""Register codec: literal frame tables and hypothesis round-trips."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tim_drivers.errors import RegisterCodecError, TimError
from tim_drivers.modbus.registers import (
    DataType,
    Function,
    Order,
    RegisterFormat,
    order_from_code,
    pack_bits,
    unpack_bits,
)

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")

# (type, order, registers, value): literal registers as a device would send them.
TABLE = [
    # The classic float32 example, 123.456 = 0x42F6E979, in the four layouts.
    (DataType.F32, "ABCD", [0x42F6, 0xE979], struct.unpack(">f", bytes.fromhex("42F6E979"))[0]),
    (DataType.F32, "CDAB", [0xE979, 0x42F6], struct.unpack(">f", bytes.fromhex("42F6E979"))[0]),
    (DataType.F32, "BADC", [0xF642, 0x79E9], struct.unpack(">f", bytes.fromhex("42F6E979"))[0]),
    (DataType.F32, "DCBA", [0x79E9, 0xF642], struct.unpack(">f", bytes.fromhex("42F6E979"))[0]),
    (DataType.F32, "ABCD", [0x4366, 0x0000], 230.0),
    (DataType.F32, "ABCD", [0xBF80, 0x0000], -1.0),
    (DataType.F32, "CDAB", [0x0000, 0xBF80], -1.0),
    (DataType.F64, "ABCD", [0x3FF0, 0, 0, 0], 1.0),
    (DataType.F64, "CDAB", [0, 0, 0, 0x3FF0], 1.0),
    (DataType.F64, "BADC", [0xF03F, 0, 0, 0], 1.0),
    (DataType.F64, "ABCD", [0x4059, 0x0CCC, 0xCCCC, 0xCCCD], 100.2),
    (DataType.U16, "ABCD", [0xFF9C], 65436),
    (DataType.I16, "ABCD", [0xFF9C], -100),
    (DataType.I16, "BADC", [0x9CFF], -100),
    (DataType.U32, "ABCD", [0x1234, 0x5678], 0x12345678),
    (DataType.U32, "CDAB", [0x5678, 0x1234], 0x12345678),
    (DataType.U32, "BADC", [0x3412, 0x7856], 0x12345678),
    (DataType.U32, "DCBA", [0x7856, 0x3412], 0x12345678),
    (DataType.I32, "ABCD", [0xFFFF, 0xFFFE], -2),
    (DataType.I32, "CDAB", [0xFFFE, 0xFFFF], -2),
    (DataType.U64, "ABCD", [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    (DataType.U64, "DCBA", [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
    (DataType.I64, "ABCD", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], -1),
    (DataType.BITFIELD, "ABCD", [0x8001], 0x8001),
    (DataType.BITFIELD, "BADC", [0x0180], 0x8001),
]


@pytest.mark.parametrize(("data_type", "code", "registers", "value"), TABLE)
def test_frame_table(data_type: DataType, code: str, registers: list[int], value: float) -> None:
    fmt = RegisterFormat.with_order(data_type, code)
    assert fmt.decode(registers) == value
    assert fmt.encode(value) == registers


def test_order_codes() -> None:
    assert order_from_code("cdab") == (Order.BIG, Order.LITTLE)
    assert order_from_code("BADC") == (Order.LITTLE, Order.BIG)
    with pytest.raises(RegisterCodecError):
        order_from_code("ACBD")


def test_string_table() -> None:
    fmt = RegisterFormat(DataType.STRING, length=4)
    registers = [0x5344, 0x4D31, 0x3230, 0x0000]  # "SDM120" padded with NULs
    assert fmt.decode(registers) == "SDM120"
    assert fmt.encode("SDM120") == registers
    swapped = RegisterFormat(DataType.STRING, length=2, byte_order=Order.LITTLE)
    assert swapped.decode([0x4453, 0x314D]) == "SDM1"
    with pytest.raises(RegisterCodecError):
        fmt.encode("too long for 4 registers")
    with pytest.raises(RegisterCodecError):
        fmt.encode("€uro")


def test_scaling_table() -> None:
    temperature = RegisterFormat(DataType.I16, scale=0.1, precision=1)
    assert temperature.decode([0x00FB]) == 25.1
    assert temperature.decode([0xFF9C]) == -10.0
    assert temperature.encode(-10.0) == [0xFF9C]
    assert temperature.encode(25.1) == [0x00FB]
    offset = RegisterFormat(DataType.U16, scale=0.01, offset=-40.0, precision=2)
    assert offset.decode([6500]) == 25.0
    assert offset.encode(25.0) == [6500]
    scaled_float = RegisterFormat(DataType.F32, scale=1000.0)
    assert scaled_float.decode([0x3F80, 0]) == 1000.0
    assert scaled_float.encode(2000.0) == [0x4000, 0]


def test_unscaled_integer_stays_int() -> None:
    value = RegisterFormat(DataType.U32).decode([0, 7])
    assert value == 7
    assert isinstance(value, int)


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        (RegisterFormat(DataType.U16), -1),
        (RegisterFormat(DataType.U16), 65536),
        (RegisterFormat(DataType.I16), 32768),
        (RegisterFormat(DataType.I16, scale=0.1), 3276.8),
        (RegisterFormat(DataType.U32), math.inf),
        (RegisterFormat(DataType.F32), 1e39),
        (RegisterFormat(DataType.U16), "12"),
        (RegisterFormat(DataType.BOOL), 2),
    ],
)
def test_encode_refuses(fmt: RegisterFormat, value: float | str) -> None:
    with pytest.raises(RegisterCodecError) as info:
        fmt.encode(value)
    assert isinstance(info.value, TimError)
    assert isinstance(info.value, ValueError)


def test_decode_refuses_wrong_count_and_range() -> None:
    with pytest.raises(RegisterCodecError):
        RegisterFormat(DataType.F32).decode([1])
    with pytest.raises(RegisterCodecError):
        RegisterFormat(DataType.U16).decode([0x10000])
    with pytest.raises(RegisterCodecError):
        RegisterFormat(DataType.BOOL).decode([1, 0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data_type": DataType.STRING},
        {"data_type": DataType.STRING, "length": 126},
        {"data_type": DataType.STRING, "length": 2, "word_order": Order.LITTLE},
        {"data_type": DataType.U32, "length": 1},
        {"data_type": DataType.BITFIELD, "scale": 2.0},
        {"data_type": DataType.U16, "scale": 0.0},
        {"data_type": DataType.U16, "precision": 16},
    ],
)
def test_bad_formats(kwargs: dict[str, object]) -> None:
    with pytest.raises(RegisterCodecError):
        RegisterFormat(**kwargs)  # type: ignore[arg-type]


def test_bits() -> None:
    # Modbus application protocol example: coils 20..38 answered with CD 6B 05.
    bits = unpack_bits(bytes.fromhex("CD6B05"), 19)
    assert bits[:8] == [True, False, True, True, False, False, True, True]
    assert pack_bits(bits) == bytes.fromhex("CD6B05")
    coil = RegisterFormat(DataType.BOOL)
    assert coil.decode([1]) is True
    assert coil.encode(False) == [0]
    assert Function.COIL.is_bit
    assert Function.COIL.read_code == 1
    assert Function.INPUT.read_code == 4
    assert Function.HOLDING.max_read == 125
    with pytest.raises(RegisterCodecError):
        unpack_bits(b"\x00", 9)


@given(st.lists(st.booleans(), max_size=2000))
def test_bits_round_trip(bits: list[bool]) -> None:
    assert unpack_bits(pack_bits(bits), len(bits)) == bits


# --- hypothesis round-trips, every type and order -----------------------------------------

REGISTER_TYPES = [t for t in DataType if t not in (DataType.BOOL, DataType.STRING)]


@given(
    data_type=st.sampled_from(REGISTER_TYPES),
    code=st.sampled_from(ORDERS),
    data=st.data(),
)
def test_registers_round_trip(data_type: DataType, code: str, data: st.DataObject) -> None:
    fmt = RegisterFormat.with_order(data_type, code)
    registers = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=fmt.size, max_size=fmt.size))
    value = fmt.decode(registers)
    if isinstance(value, float) and math.isnan(value):
        return  # NaN payloads need not survive a trip through a Python float
    assert fmt.encode(value) == registers


@given(code=st.sampled_from(ORDERS), value=st.floats(width=32, allow_nan=False))
def test_f32_value_round_trip(code: str, value: float) -> None:
    fmt = RegisterFormat.with_order(DataType.F32, code)
    assert fmt.decode(fmt.encode(value)) == value


@given(code=st.sampled_from(ORDERS), value=st.floats(allow_nan=False))
def test_f64_value_round_trip(code: str, value: float) -> None:
    fmt = RegisterFormat.with_order(DataType.F64, code)
    assert fmt.decode(fmt.encode(value)) == value


@pytest.mark.parametrize("code", ORDERS)
@pytest.mark.parametrize(
    ("data_type", "bits", "signed"),
    [
        (DataType.U16, 16, False),
        (DataType.I16, 16, True),
        (DataType.U32, 32, False),
        (DataType.I32, 32, True),
        (DataType.U64, 64, False),
        (DataType.I64, 64, True),
    ],
)
@given(data=st.data())
def test_integer_value_round_trip(
    code: str, data_type: DataType, bits: int, signed: bool, data: st.DataObject
) -> None:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    value = data.draw(st.integers(low, high))
    fmt = RegisterFormat.with_order(data_type, code)
    assert fmt.decode(fmt.encode(value)) == value


@given(
    byte_order=st.sampled_from(list(Order)),
    text=st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=16),
)
def test_string_round_trip(byte_order: Order, text: str) -> None:
    fmt = RegisterFormat(DataType.STRING, length=8, byte_order=byte_order)
    assert fmt.decode(fmt.encode(text)) == text


@given(
    data_type=st.sampled_from([DataType.U16, DataType.I16, DataType.U32, DataType.I32]),
    code=st.sampled_from(ORDERS),
    scale=st.sampled_from([0.1, 0.01, 0.5, 10.0, -0.1]),
    offset=st.sampled_from([0.0, -40.0, 273.15]),
    data=st.data(),
)
def test_scaled_round_trip(
    data_type: DataType, code: str, scale: float, offset: float, data: st.DataObject
) -> None:
    fmt = RegisterFormat.with_order(data_type, code, scale=scale, offset=offset)
    registers = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=fmt.size, max_size=fmt.size))
    assert fmt.encode(fmt.decode(registers)) == registers
