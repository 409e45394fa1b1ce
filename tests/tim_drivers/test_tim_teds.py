"""TEDS codec: the §15 vectors byte for byte, typed fields, units, samples, round-trips."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tim_drivers.codec import teds as t
from tim_drivers.codec.teds import (
    ChannelTeds,
    MetaTeds,
    PhysicalUnits,
    SampleDef,
    TedsBlock,
    TedsId,
    Tlv,
    UserNameTeds,
)
from tim_drivers.errors import FrameError, TedsError


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()).replace("|", ""))


VECTOR_A = _hex("""0000002A 030400030104 040A93CC201AF4C1F7442ACC 0A043F800000
0B043F800000 0C043F800000 0D020007 | F7B9""")
VECTOR_B = _hex("""00000031 030500FF010201 041086258A0B72F612D68707E8054911DCF0
0A043F99999A 0B043FB33333 0C0440A66666 0D020001 | F22C""")
VECTOR_C = _hex("""0000005E 030500FF030201 0A0100 0B0100 0C0B0080808080808082808080
0D0443692666 0E0443C71333 0F0440000000 100100 110101
120A2801012901042A02000E 140440A00000 15043F800000 17044396000018043F800000
190440A00000 | F0F8""")


def _f32(value: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


@pytest.mark.parametrize("vector", [VECTOR_A, VECTOR_B, VECTOR_C], ids=["A", "B", "C"])
def test_vectors_checksum_and_block_round_trip(vector: bytes) -> None:
    assert t.checksum(vector[:-2]) == int.from_bytes(vector[-2:], "big")
    assert TedsBlock.from_bytes(vector).to_bytes() == vector


def test_vector_a_meta() -> None:
    meta = MetaTeds.from_bytes(VECTOR_A)
    assert meta.to_bytes() == VECTOR_A
    assert meta.teds_id == TedsId(0, 3, 1, 4)  # the published (odd) identifier, kept as is
    assert meta.uuid == bytes.fromhex("93CC201AF4C1F7442ACC")
    assert (meta.ohold_off, meta.shold_off, meta.test_time, meta.max_chan) == (1.0, 1.0, 1.0, 7)
    assert meta.unknown == ()


def test_vector_b_meta_2024() -> None:
    meta = MetaTeds.from_bytes(VECTOR_B)
    assert meta.to_bytes() == VECTOR_B
    assert meta.teds_id == TedsId(0, 1, 2, 1, subfamily=0xFF)
    assert meta.uuid is not None
    assert len(meta.uuid) == 16
    assert meta.ohold_off == _f32(1.2)
    assert meta.shold_off == _f32(1.4)
    assert meta.test_time == _f32(5.2)
    assert meta.max_chan == 1


def test_vector_c_channel() -> None:
    chan = ChannelTeds.from_bytes(VECTOR_C)
    assert chan.to_bytes() == VECTOR_C
    assert chan.cal_key == t.CalKey.CAL_NONE
    assert chan.chan_type == t.ChanType.SENSOR
    assert chan.phy_units is not None
    assert chan.phy_units.is_kelvin
    assert chan.phy_units.symbol() == "K"
    assert chan.low_limit == _f32(233.15)
    assert chan.high_limit == _f32(398.15)
    assert chan.o_error == 2.0
    assert chan.sample == SampleDef(t.DataModel.FLOAT32, 4, 14)
    assert chan.update_time == 5.0
    assert chan.read_delay == 5.0
    assert [tlv.type for tlv in chan.unknown] == [16, 17, 21, 23, 24]


def test_changed_field_is_re_encoded_in_place() -> None:
    chan = dataclasses.replace(ChannelTeds.from_bytes(VECTOR_C), low_limit=200.0)
    rebuilt = ChannelTeds.from_bytes(chan.to_bytes())
    assert rebuilt.low_limit == 200.0
    assert [tlv.type for tlv in rebuilt.raw] == [tlv.type for tlv in chan.raw]
    assert rebuilt.unknown == chan.unknown
    # Clearing a field removes its tuple; a new field is appended.
    chan = dataclasses.replace(chan, o_error=None, cal_key=None, read_delay=None)
    assert [x.type for x in ChannelTeds.from_bytes(chan.to_bytes()).raw][:3] == [3, 11, 12]


def test_bad_blocks() -> None:
    corrupt = bytearray(VECTOR_A)
    corrupt[10] ^= 1
    with pytest.raises(TedsError, match="checksum"):
        TedsBlock.from_bytes(bytes(corrupt))
    with pytest.raises(TedsError, match="length"):
        TedsBlock.from_bytes(VECTOR_A[:-1])
    with pytest.raises(TedsError, match="length"):
        TedsBlock.from_bytes(VECTOR_A + b"\x00")
    with pytest.raises(TedsError):
        TedsBlock.from_bytes(b"\x00\x00")
    overrun = TedsBlock((Tlv(3, bytes(4)),)).to_bytes()[:-2] + b"\x0a\x05\x01"
    overrun = (len(overrun) - 2).to_bytes(4, "big") + overrun[4:]
    with pytest.raises(TedsError, match="runs past"):
        TedsBlock.from_bytes(overrun + t.checksum(overrun).to_bytes(2, "big"))
    no_id = TedsBlock((Tlv(10, bytes(4)),)).to_bytes()
    with pytest.raises(TedsError, match="identifier"):
        MetaTeds.from_bytes(no_id)
    bad_float = TedsBlock((Tlv(3, bytes(4)), Tlv(10, bytes(3)))).to_bytes()
    with pytest.raises(TedsError, match="Float32"):
        MetaTeds.from_bytes(bad_float)


def test_tuple_length_two() -> None:
    block = TedsBlock((Tlv(3, bytes((0, 1, 1, 2))), Tlv(4, bytes(300))), length_size=2)
    wire = block.to_bytes()
    assert wire[4:13] == bytes.fromhex("0304 00010102 04 012c")
    assert TedsBlock.from_bytes(wire) == block


@pytest.mark.parametrize(
    "value",
    [
        "32 01 00 39 01 82",  # nested, DIGI2 editor form
        "00 80 80 80 80 80 80 82 80 80",  # raw, 10 octets
        "00 80 80 80 80 80 80 82 80 80 00",  # raw, 11 octets
    ],
)
def test_units_forms(value: str) -> None:
    assert PhysicalUnits.from_tlv_value(bytes.fromhex(value)) == t.KELVIN


def test_units_emit_nested() -> None:
    assert t.KELVIN.to_tlv_value() == bytes.fromhex("320100 390182")
    assert t.PASCAL.to_tlv_value() == bytes.fromhex("320100 35017e 360182 37017c")
    assert PhysicalUnits(meters=0.5).octets()[3] == 129
    with pytest.raises(TedsError):
        PhysicalUnits.from_tlv_value(b"\x00" * 7)
    with pytest.raises(TedsError):
        PhysicalUnits.from_tlv_value(bytes.fromhex("3d0100"))
    with pytest.raises(ValueError, match="exponent"):
        PhysicalUnits(meters=0.25)


@pytest.mark.parametrize(
    ("units", "symbol"),
    [
        (t.KELVIN, "K"),
        (t.PASCAL, "Pa"),
        (PhysicalUnits(meters=1), "m"),
        (PhysicalUnits(meters=1, seconds=-2), "m/s²"),
        (PhysicalUnits(kilograms=1, meters=2, seconds=-3, amperes=-1), "V"),
        (t.DIMENSIONLESS, ""),
        (t.RATIO, "%"),
        (PhysicalUnits(interpretation=1, kilograms=1, meters=-1, seconds=-2), "%"),
        (PhysicalUnits(meters=1, kelvins=-1), "m·K⁻¹"),
        (PhysicalUnits(meters=1.5), "m^1.5"),
        (PhysicalUnits(interpretation=2, kilograms=1, meters=-1, seconds=-2), "log10(Pa)"),
        (PhysicalUnits(interpretation=5, meters=1), ""),
    ],
)
def test_symbols(units: PhysicalUnits, symbol: str) -> None:
    assert units.symbol() == symbol


@pytest.mark.parametrize(("format_type", "name_type"), [(4, 5), (10, 11)])
def test_user_name_types(format_type: int, name_type: int) -> None:
    wire = TedsBlock(
        (Tlv(3, bytes((0, 12, 1, 1))), Tlv(format_type, b"\x00"), Tlv(name_type, b"temp \xc2\xb0"))
    ).to_bytes()
    name = UserNameTeds.from_bytes(wire)
    assert (name.format, name.name) == (0, "temp °")
    assert name.to_bytes() == wire


def test_user_name_emits_4_and_5() -> None:
    wire = UserNameTeds(name="pump").to_bytes()
    assert [x.type for x in TedsBlock.from_bytes(wire).tuples] == [3, 4, 5]


def test_decode_samples() -> None:
    assert t.decode_samples(bytes.fromhex("0102 fffe"), SampleDef(0, 2, 12)) == [258.0, 65534.0]
    assert t.decode_samples(bytes.fromhex("3fc00000 c0000000"), t.FLOAT32_SAMPLE) == [1.5, -2.0]
    assert t.decode_samples(struct.pack(">d", 0.1), SampleDef(2, 8, 64)) == [0.1]
    assert t.decode_samples(b"", t.FLOAT32_SAMPLE) == []
    with pytest.raises(FrameError):
        t.decode_samples(b"\x00\x00\x00", t.FLOAT32_SAMPLE)
    with pytest.raises(TedsError):
        t.decode_samples(b"\x00", SampleDef(3, 1, 8))
    with pytest.raises(TedsError):
        t.decode_samples(b"\x00", SampleDef(1, 2, 16))


@given(st.lists(st.floats(width=32, allow_nan=False), max_size=5))
def test_float32_samples_round_trip(values: list[float]) -> None:
    encoded = t.encode_samples(values, t.FLOAT32_SAMPLE)
    assert t.decode_samples(encoded, t.FLOAT32_SAMPLE) == values


@given(st.integers(1, 8), st.data())
def test_unsigned_samples_round_trip(size: int, data: st.DataObject) -> None:
    top = min((1 << (8 * size)) - 1, 1 << 53)  # floats hold integers exactly up to 2**53
    values = data.draw(st.lists(st.integers(0, top), max_size=4))
    sample = SampleDef(0, size, 8 * size)
    assert t.decode_samples(t.encode_samples(values, sample), sample) == values


f32 = st.floats(width=32, allow_nan=False)
half = st.integers(-64, 63).map(lambda n: n / 2)
units_st = st.builds(
    PhysicalUnits,
    st.integers(0, 5),
    half, half, half, half, half, half, half, half, half,
    st.integers(0, 255),
)  # fmt: skip
teds_id_st = st.builds(
    TedsId,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.just(1),
    st.none() | st.integers(0, 255),
)
unknown_st = st.lists(
    st.builds(Tlv, st.integers(128, 255), st.binary(max_size=20)), max_size=3
).map(tuple)


@given(
    st.builds(
        MetaTeds,
        teds_id=teds_id_st,
        uuid=st.none() | st.binary(min_size=1, max_size=16),
        ohold_off=st.none() | f32,
        shold_off=st.none() | f32,
        test_time=st.none() | f32,
        max_chan=st.none() | st.integers(0, 0xFFFF),
        raw=unknown_st,
    )
)
def test_meta_round_trip(meta: MetaTeds) -> None:
    wire = meta.to_bytes()
    parsed = MetaTeds.from_bytes(wire)
    assert dataclasses.replace(parsed, raw=()) == dataclasses.replace(meta, raw=())
    assert parsed.unknown == meta.raw
    assert parsed.to_bytes() == wire


@given(
    st.builds(
        ChannelTeds,
        teds_id=teds_id_st,
        cal_key=st.none() | st.integers(0, 255),
        chan_type=st.none() | st.integers(0, 2),
        phy_units=st.none() | units_st,
        low_limit=st.none() | f32,
        high_limit=st.none() | f32,
        o_error=st.none() | f32,
        sample=st.none()
        | st.builds(SampleDef, st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF)),
        update_time=st.none() | f32,
        read_delay=st.none() | f32,
        raw=unknown_st,
    )
)
def test_channel_round_trip(chan: ChannelTeds) -> None:
    wire = chan.to_bytes()
    parsed = ChannelTeds.from_bytes(wire)
    assert dataclasses.replace(parsed, raw=()) == dataclasses.replace(chan, raw=())
    assert parsed.to_bytes() == wire


@given(st.none() | st.integers(0, 255), st.none() | st.text(max_size=40))
def test_user_name_round_trip(fmt: int | None, name: str | None) -> None:
    teds = UserNameTeds(format=fmt, name=name)
    parsed = UserNameTeds.from_bytes(teds.to_bytes())
    assert (parsed.format, parsed.name) == (fmt, name)


tlv_st = st.builds(Tlv, st.integers(0, 255), st.binary(max_size=16))


@given(teds_id_st, st.lists(tlv_st, max_size=12))
def test_any_block_parses_exactly_or_raises_teds_error(teds_id: TedsId, tuples: list[Tlv]) -> None:
    """Typed parsing either fails with TedsError or rebuilds the very same octets."""
    wire = TedsBlock((Tlv(3, teds_id.to_bytes()), *tuples)).to_bytes()
    for cls in (MetaTeds, ChannelTeds, UserNameTeds):
        try:
            parsed = cls.from_bytes(wire)
        except TedsError:
            continue
        assert parsed.to_bytes() == wire


def test_nan_payload_preserved() -> None:
    wire = TedsBlock((Tlv(3, bytes((0, 3, 1, 1))), Tlv(13, bytes.fromhex("7fffffff")))).to_bytes()
    chan = ChannelTeds.from_bytes(wire)
    assert chan.low_limit is not None
    assert math.isnan(chan.low_limit)
    assert chan.to_bytes() == wire


@given(st.binary(max_size=80))
def test_fuzz_raises_only_teds_errors(data: bytes) -> None:
    for parse in (TedsBlock.from_bytes, MetaTeds.from_bytes, ChannelTeds.from_bytes):
        with contextlib.suppress(TedsError):  # anything else propagates
            parse(data)


def _framed(body: bytes) -> bytes:
    """A TEDS image with a correct length and checksum around an arbitrary data block."""
    head = (len(body) + 2).to_bytes(4, "big") + body
    return head + t.checksum(head).to_bytes(2, "big")


@given(
    st.one_of(
        st.binary(max_size=120),
        st.binary(max_size=60).map(lambda rest: bytes((3, 5)) + rest),
        st.binary(max_size=60).map(lambda rest: bytes((3, 4)) + rest),
    )
)
def test_fuzz_past_the_checksum_raises_only_teds_errors(body: bytes) -> None:
    """Garbage that passes the checksum reaches the tuple parser and must still fail cleanly."""
    data = _framed(body)
    for parse in (
        TedsBlock.from_bytes,
        MetaTeds.from_bytes,
        ChannelTeds.from_bytes,
        UserNameTeds.from_bytes,
    ):
        with contextlib.suppress(TedsError):  # anything else propagates
            parse(data)


def test_six_octet_identifier_with_tuple_length_past_the_end() -> None:
    with pytest.raises(TedsError):
        TedsBlock.from_bytes(_framed(bytes((3, 5, 0, 0, 0, 0))))


def test_serial_phy_teds() -> None:
    block = TedsBlock.from_bytes(t.serial_phy_teds(115200).to_bytes())
    assert block.teds_id == TedsId(2, 13, 1, 1)
    assert block.find(t.PHY_BAUD_RATE) == Tlv(128, (115200).to_bytes(4, "big"))
