"""Modbus device profiles: the shipped files, validation errors naming the key, TEDS."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest

from tim_drivers.codec.teds import (
    KELVIN,
    RATIO,
    ChannelTeds,
    ChanType,
    DataModel,
    MetaTeds,
    UnitsInterpretation,
    UserNameTeds,
)
from tim_drivers.errors import DeviceProfileError, ProfileError, RegisterCodecError, TimError
from tim_drivers.modbus.describe import channel_teds, describe_device, device_uuid
from tim_drivers.modbus.planner import Limits, plan_device
from tim_drivers.modbus.profile import load_profile, parse_profile
from tim_drivers.modbus.registers import DataType, Function, Order

DEVICES = Path(__file__).resolve().parents[2] / "hardware" / "devices"
SHIPPED = sorted(DEVICES.glob("*.toml"))


def test_three_profiles_are_shipped() -> None:
    assert {p.name for p in SHIPPED} >= {
        "xy-md02.toml",
        "eastron-sdm120.toml",
        "eastron-sdm630.toml",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_profiles_validate_and_describe(path: Path) -> None:
    profile = load_profile(path)
    assert profile.channels
    assert "check" in path.read_text().lower()  # the "check against the manual" note
    description = describe_device(profile)
    assert description.meta.max_chan == len(profile.channels)
    assert MetaTeds.from_bytes(description.meta.to_bytes()).uuid == description.meta.uuid
    for item in description.channels:
        parsed = ChannelTeds.from_bytes(item.teds.to_bytes())
        assert parsed.chan_type == item.teds.chan_type
        assert parsed.phy_units == item.teds.phy_units
        assert UserNameTeds.from_bytes(item.name_teds.to_bytes()).name == item.channel.name
    limits = Limits(profile.max_gap, profile.max_registers, profile.max_bits)
    for plan in plan_device(profile.channels, limits):
        assert all(r.count <= 125 for r in plan.requests)


def test_xy_md02_map() -> None:
    profile = load_profile(DEVICES / "xy-md02.toml")
    temperature = profile.channel("temperature")
    assert (temperature.function, temperature.address) == (Function.INPUT, 1)
    assert temperature.format.data_type is DataType.I16
    assert temperature.decode([0xFF9C]) == -10.0
    assert profile.channel("humidity").decode([456]) == 45.6
    assert profile.channel("temperature_correction").encode(-1.5) == [0xFFF1]
    with pytest.raises(RegisterCodecError):
        temperature.encode(20.0)  # not writable
    teds = channel_teds(temperature)
    assert teds.phy_units == KELVIN
    assert teds.low_limit is not None
    assert teds.high_limit is not None
    assert math.isclose(teds.low_limit, 233.15)
    assert math.isclose(teds.high_limit, 333.15)
    assert teds.o_error is not None
    assert math.isclose(teds.o_error, 0.1)
    assert teds.chan_type == ChanType.SENSOR
    humidity = channel_teds(profile.channel("humidity"))
    assert humidity.phy_units == RATIO
    assert humidity.high_limit == 1.0
    assert channel_teds(profile.channel("slave_address")).chan_type == ChanType.ACTUATOR


def test_sdm120_map() -> None:
    profile = load_profile(DEVICES / "eastron-sdm120.toml")
    voltage = profile.channel("voltage")
    assert (voltage.address, voltage.format.data_type) == (0, DataType.F32)
    assert voltage.format.byte_order is Order.BIG
    assert voltage.format.word_order is Order.BIG
    assert voltage.decode([0x4366, 0x0000]) == 230.0
    assert profile.channel("frequency").address == 70  # 30071
    assert profile.channel("total_active_energy").address == 342  # 30343
    energy = channel_teds(profile.channel("total_active_energy"))
    assert energy.phy_units is not None
    assert energy.phy_units.symbol() == "J"
    assert energy.sample is not None
    assert energy.sample.dat_model == DataModel.FLOAT32


def test_sdm630_map() -> None:
    profile = load_profile(DEVICES / "eastron-sdm630.toml")
    assert [profile.channel(f"l{i}_voltage").address for i in (1, 2, 3)] == [0, 2, 4]
    assert [profile.channel(f"l{i}_current").address for i in (1, 2, 3)] == [6, 8, 10]
    assert profile.channel("total_active_power").address == 52  # 30053
    assert channel_teds(profile.channel("l1_active_power")).phy_units is not None


def test_device_uuid_is_stable_and_per_slave() -> None:
    profile = load_profile(DEVICES / "eastron-sdm120.toml")
    assert device_uuid(profile, 1) == device_uuid(profile, 1)
    assert device_uuid(profile, 1) != device_uuid(profile, 2)
    assert len(device_uuid(profile, 1)) == 10
    assert describe_device(profile, uuid=b"0123456789").meta.uuid == b"0123456789"
    with pytest.raises(ValueError, match="10 octets"):
        describe_device(profile, uuid=b"short")


def test_non_numeric_channels_are_digital_data() -> None:
    profile = parse_profile(
        {
            "device": {"name": "d"},
            "channels": [
                {
                    "name": "serial",
                    "function": "holding",
                    "address": 0,
                    "type": "string",
                    "length": 4,
                },
                {"name": "relay", "function": "coil", "address": 0, "writable": True},
                {"name": "flags", "function": "input", "address": 0, "type": "bitfield"},
            ],
        }
    )
    serial, relay, flags = (channel_teds(c) for c in profile.channels)
    for teds in (serial, relay, flags):
        assert teds.phy_units is not None
        assert teds.phy_units.interpretation == UnitsInterpretation.DIGITAL_DATA
    assert serial.sample is not None
    assert serial.sample.mod_length == 8
    assert relay.chan_type == ChanType.ACTUATOR
    assert profile.channel("relay").format.data_type is DataType.BOOL
    assert profile.channel("relay").size == 1


# --- validation: every error names its key ---------------------------------------------

BASE: dict[str, Any] = {
    "device": {"name": "dev", "slave_id": 3},
    "channels": [
        {"name": "a", "function": "holding", "address": 0, "type": "u32"},
        {"name": "b", "function": "holding", "address": 10, "type": "f32", "writable": True},
        {"name": "c", "function": "input", "address": 0, "type": "i16", "scale": 0.1},
    ],
}


def test_base_document_is_valid() -> None:
    profile = parse_profile(BASE)
    assert profile.slave_id == 3
    assert profile.max_gap == 10
    assert [c.size for c in profile.channels] == [2, 2, 1]
    assert profile.max_count(Function.COIL) == 2000


def _mutated(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()

BAD = [
    (("device",), _DELETE, "'device'"),
    (("device", "name"), "", "'device.name'"),
    (("device", "slave_id"), 0, "'device.slave_id'"),
    (("device", "slave_id"), 248, "'device.slave_id'"),
    (("device", "max_registers"), 126, "'device.max_registers'"),
    (("device", "color"), "red", "'device.color'"),
    (("channels",), [], "'channels'"),
    (("channels", 2), "not a table", "'channels[3]'"),
    (("channels", 0, "function"), "analog", "'channels[1].function'"),
    (("channels", 1, "address"), -1, "'channels[2].address'"),
    (("channels", 1, "address"), 65535, "'channels[2].address'"),  # f32 needs 2
    (("channels", 1, "address"), 1, "'channels[2].address'"),  # overlaps a (0..1)
    (("channels", 1, "address"), 1.5, "'channels[2].address'"),
    (("channels", 1, "type"), "f16", "'channels[2].type'"),
    (("channels", 1, "byte_order"), "middle", "'channels[2].byte_order'"),
    (("channels", 1, "scale"), 0, "'channels[2].scale'"),
    (("channels", 1, "precision"), 20, "'channels[2].precision'"),
    (("channels", 1, "unit"), "furlong", "'channels[2].unit'"),
    (("channels", 1, "length"), 4, "'channels[2].length'"),
    (("channels", 1, "poll_interval_s"), 0, "'channels[2].poll_interval_s'"),
    (("channels", 1, "low_limit"), 5.0, "'channels[2].high_limit'"),
    (("channels", 1, "writable"), "yes", "'channels[2].writable'"),
    (("channels", 1, "name"), "a", "'channels[2].name'"),
    (("channels", 1, "bogus"), 1, "'channels[2].bogus'"),
    (("channels", 2, "writable"), True, "'channels[3].writable'"),  # input table
    (("channels", 2, "type"), "bool", "'channels[3].type'"),
    (("channels", 0, "type"), "string", "'channels[1].length'"),  # string needs length
]


@pytest.mark.parametrize(("path", "value", "key"), BAD)
def test_errors_name_the_key(path: tuple[Any, ...], value: Any, key: str) -> None:
    data = _mutated(path, value)
    if path == ("channels", 1, "low_limit"):
        data["channels"][1]["high_limit"] = 1.0
    with pytest.raises(DeviceProfileError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_profile(data, "test.toml")


def test_error_family() -> None:
    with pytest.raises(DeviceProfileError) as info:
        parse_profile(_mutated(("channels", 1, "address"), -1))
    assert isinstance(info.value, ProfileError)
    assert isinstance(info.value, TimError)
    assert isinstance(info.value, ValueError)


def test_cross_checks() -> None:
    strings: dict[str, Any] = {
        "device": {"name": "d", "max_registers": 16},
        "channels": [
            {"name": "s", "function": "holding", "address": 0, "type": "string", "length": 20}
        ],
    }
    with pytest.raises(DeviceProfileError, match=r"channels\[1\]\.length"):
        parse_profile(strings)
    with pytest.raises(DeviceProfileError, match=r"channels\[1\]\.length"):
        parse_profile(
            _mutated(
                ("channels", 0),
                {"name": "s", "function": "holding", "address": 0, "type": "string", "length": 126},
            )
        )
    string_word_order = _mutated(
        ("channels", 0),
        {
            "name": "s",
            "function": "holding",
            "address": 0,
            "type": "string",
            "length": 2,
            "word_order": "little",
        },
    )
    with pytest.raises(DeviceProfileError, match=r"channels\[1\]\.word_order"):
        parse_profile(string_word_order)
    coil_overlap: dict[str, Any] = {
        "device": {"name": "d"},
        "channels": [
            {"name": "x", "function": "coil", "address": 5},
            {"name": "y", "function": "discrete", "address": 5},  # another table: fine
            {"name": "z", "function": "coil", "address": 5},
        ],
    }
    with pytest.raises(DeviceProfileError, match=r"channels\[3\]\.address.*channels\[1\]"):
        parse_profile(coil_overlap)
    with pytest.raises(DeviceProfileError, match=r"channels\[2\]\.scale"):
        parse_profile(
            {
                "device": {"name": "d"},
                "channels": [
                    {"name": "x", "function": "coil", "address": 5},
                    {
                        "name": "y",
                        "function": "input",
                        "address": 5,
                        "type": "bitfield",
                        "scale": 2,
                    },
                ],
            }
        )


def test_load_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(DeviceProfileError, match="cannot read"):
        load_profile(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[device\nname=")
    with pytest.raises(DeviceProfileError, match="not valid TOML"):
        load_profile(broken)
