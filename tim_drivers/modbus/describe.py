"""TEDS for a Modbus device, so that it looks like a TIM to the rest of the NCAP (pure).

A profile becomes a Meta-TEDS (a UUID derived from manufacturer, model, device name and
slave id unless given; MaxChan = channel count) plus, per channel, a TransducerChannel
TEDS and a User's name TEDS.  Channel numbers are 1, 2, ... in profile order.

* ChanType: a writable channel is an actuator, every other one a sensor.
* PhyUnits, limits and OError come from the display unit through
  :data:`tim_drivers.modbus.units.UNITS` (°C -> K, % -> ratio, kWh -> J ...).  Limits are
  the profile's optional ``low_limit``/``high_limit`` converted to SI; OError is one unit
  of the last kept decimal (``10**-precision``), when ``precision`` is set.
* Sample: Float64 for 32- and 64-bit integers and f64 (a Float32 would round them),
  Float32 for 16-bit integers and f32; UInt8 for a bit, UInt16 for a bitfield; a string
  is a bit sequence of ``2 * length`` octets.  Bits, bitfields and strings have
  digital-data units.
* UpdateTime is the channel's poll interval.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

from tim_drivers.codec.teds import (
    ChannelTeds,
    ChanType,
    DataModel,
    MetaTeds,
    PhysicalUnits,
    SampleDef,
    UnitsInterpretation,
    UserNameTeds,
)
from tim_drivers.modbus.profile import ChannelProfile, DeviceProfile
from tim_drivers.modbus.registers import DataType
from tim_drivers.modbus.units import UNITS

_LOGGER = logging.getLogger(__name__)

_DIGITAL = PhysicalUnits(interpretation=UnitsInterpretation.DIGITAL_DATA)
_FLOAT32 = SampleDef(DataModel.FLOAT32, 4, 32)
_FLOAT64 = SampleDef(DataModel.FLOAT64, 8, 64)
_WIDE = (DataType.U32, DataType.I32, DataType.U64, DataType.I64, DataType.F64)


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelDescription:
    number: int  # 1..MaxChan
    channel: ChannelProfile
    teds: ChannelTeds
    name_teds: UserNameTeds


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceDescription:
    meta: MetaTeds
    name_teds: UserNameTeds
    channels: tuple[ChannelDescription, ...]


def _sample(channel: ChannelProfile) -> SampleDef:
    kind = channel.format.data_type
    if kind is DataType.BOOL:
        return SampleDef(DataModel.UNSIGNED, 1, 1)
    if kind is DataType.BITFIELD:
        return SampleDef(DataModel.UNSIGNED, 2, 16)
    if kind is DataType.STRING:
        return SampleDef(DataModel.BIT_SEQUENCE, 2 * channel.size, 16 * channel.size)
    return _FLOAT64 if kind in _WIDE else _FLOAT32


def channel_teds(channel: ChannelProfile) -> ChannelTeds:
    """The TransducerChannel TEDS of one profile channel (see the module docstring)."""
    chan_type = ChanType.ACTUATOR if channel.writable else ChanType.SENSOR
    units, low, high, o_error = _DIGITAL, None, None, None
    if channel.format.data_type.is_numeric:
        mapping = UNITS[channel.unit]
        units = mapping.units
        low = None if channel.low_limit is None else mapping.to_si(channel.low_limit)
        high = None if channel.high_limit is None else mapping.to_si(channel.high_limit)
        precision = channel.format.precision
        o_error = None if precision is None else mapping.delta_to_si(10.0**-precision)
    return ChannelTeds(
        cal_key=0,
        chan_type=int(chan_type),
        phy_units=units,
        low_limit=low,
        high_limit=high,
        o_error=o_error,
        sample=_sample(channel),
        update_time=channel.poll_interval_s,
    )


def device_uuid(profile: DeviceProfile, slave_id: int) -> bytes:
    """A stable 10-octet UUID for one device on one slave id (no registry needed)."""
    key = f"modbus\0{profile.manufacturer}\0{profile.model}\0{profile.name}\0{slave_id}"
    return hashlib.sha256(key.encode()).digest()[:10]


def describe_device(
    profile: DeviceProfile, *, slave_id: int | None = None, uuid: bytes | None = None
) -> DeviceDescription:
    """Meta-TEDS, User's name TEDS and channel TEDS for one device."""
    slave = profile.slave_id if slave_id is None else slave_id
    if uuid is not None and len(uuid) != 10:
        raise ValueError(f"a TIM UUID is 10 octets, not {len(uuid)}")
    meta = MetaTeds(
        uuid=uuid if uuid is not None else device_uuid(profile, slave),
        max_chan=len(profile.channels),
    )
    channels = tuple(
        ChannelDescription(number, channel, channel_teds(channel), UserNameTeds(name=channel.name))
        for number, channel in enumerate(profile.channels, 1)
    )
    return DeviceDescription(meta, UserNameTeds(name=profile.name), channels)
