"""Driver for an IEEE 1451.0-2007 TIM on a TLF-1 serial link.

Start-up follows ieee1451.md §8: read the Meta-TEDS, the TIM's User's name TEDS, then
each channel's TransducerChannel TEDS and User's name TEDS, and put sensor channels in
Operating.  A reading is Trigger -> wait the channel's update/read delay -> Read data-set
segment -> decode with the channel's Sample definition.

Values are converted for people, in one place (:func:`display_conversion`):

* a channel whose PhyUnits is exactly kelvin (SI interpretation, kelvins exponent 1,
  everything else 0) is reported in degrees Celsius (value - 273.15, unit "°C"), limits
  likewise;
* a ratio channel (PUI_RATIO_SI_UNITS) is reported in percent (value * 100, unit "%");
* every other channel is reported as is, with ``PhysicalUnits.symbol()`` as unit.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

from tim_drivers.codec import p1451
from tim_drivers.codec.framing import MAX_ENCODED
from tim_drivers.codec.teds import (
    FLOAT32_SAMPLE,
    MAX_TEDS_SIZE,
    ZERO_CELSIUS,
    ChannelTeds,
    MetaTeds,
    PhysicalUnits,
    UnitsInterpretation,
    UserNameTeds,
    decode_samples,
    encode_samples,
)
from tim_drivers.errors import FrameError, TedsError, TimError, TimUnavailable
from tim_drivers.transport.serial_link import LostCallback, SerialSettings, TimLink

_LOGGER = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 1.0  # reply timeout before the Meta-TEDS is known (§12.2)
MIN_TIMEOUT = 0.05
MAX_TIMEOUT = 5.0  # cap on OHoldOff as a reply timeout
MAX_SETTLE = 5.0  # cap on the wait between Trigger and Read data-set
BITS_PER_OCTET = 11  # start bit, 8 data bits, parity, stop bit: the slowest framing


class ChannelKind(IntEnum):
    SENSOR = 0
    ACTUATOR = 1
    EVENT_SENSOR = 2


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    number: int  # 1..MaxChan
    name: str  # from the channel's User's name TEDS, else f"channel{n}"
    kind: ChannelKind
    unit: str  # display unit, see the module docstring
    low_limit: float  # in the display unit
    high_limit: float
    decimals: int  # clamp(ceil(-log10(OError in display unit)), 0, 6); 1 if unknown
    teds: ChannelTeds


@dataclass(frozen=True, slots=True)
class TimInfo:
    uuid: bytes
    name: str
    channels: tuple[ChannelInfo, ...]
    meta: MetaTeds


@dataclass(frozen=True, slots=True)
class Sample:
    channel: int
    value: float  # in ChannelInfo.unit
    unit: str
    timestamp: datetime  # UTC, aware: when the Read data-set reply arrived


@dataclass(frozen=True, slots=True)
class DisplayConversion:
    """``display = raw * scale + offset``."""

    unit: str
    scale: float = 1.0
    offset: float = 0.0

    def to_display(self, raw: float) -> float:
        return raw * self.scale + self.offset

    def to_raw(self, display: float) -> float:
        return (display - self.offset) / self.scale


def display_conversion(units: PhysicalUnits | None) -> DisplayConversion:
    """How a channel with these PhyUnits is shown to people (see module docstring)."""
    if units is None:
        return DisplayConversion("")
    if units.is_kelvin:
        return DisplayConversion("°C", 1.0, -ZERO_CELSIUS)
    if units.interpretation == UnitsInterpretation.RATIO_SI_UNITS:
        return DisplayConversion("%", 100.0)
    return DisplayConversion(units.symbol())


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _tidy(value: float) -> float:
    """Drop Float32 noise from a TEDS limit (233.14999389648438 -> 233.15)."""
    return float(f"{value:.7g}")


def _decimals(o_error: float | None, scale: float) -> int:
    error = _finite(o_error)
    if error is None or error <= 0:
        return 1
    return max(0, min(6, math.ceil(-math.log10(error * abs(scale)))))


def _channel_kind(chan_type: int | None) -> ChannelKind:
    try:
        return ChannelKind(chan_type if chan_type is not None else 0)
    except ValueError:
        raise TedsError(f"unknown ChanType {chan_type}") from None


class SerialTim:
    """One TIM behind one serial port."""

    def __init__(self, settings: SerialSettings) -> None:
        self.settings = settings
        self._link = TimLink(settings, on_tim_initiated=self._on_tim_initiated)
        self._timeout = DEFAULT_TIMEOUT
        self._info: TimInfo | None = None
        # Trigger, settle and read belong together: concurrent readers of one TIM must
        # not interleave them, or one reader gets the sample another one triggered.
        self._sampling = asyncio.Lock()
        self._event_callback: Callable[[Sample], None] | None = None

    @property
    def info(self) -> TimInfo | None:
        return self._info

    def on_lost(self, callback: LostCallback) -> None:
        """Have *callback* called when the port goes away by itself (USB unplugged)."""
        self._link.on_lost = callback

    async def open(self) -> None:
        await self._link.open()

    async def close(self) -> None:
        await self._link.close()

    async def __aenter__(self) -> SerialTim:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def discover(self) -> TimInfo:
        """Read the TIM's TEDS, name its channels and put sensor channels in Operating."""
        meta = MetaTeds.from_bytes(
            await self.read_teds(p1451.TIM_CHANNEL, p1451.TedsAccessCode.META)
        )
        hold_off = _finite(meta.ohold_off)
        self._timeout = (
            DEFAULT_TIMEOUT if hold_off is None else min(max(hold_off, MIN_TIMEOUT), MAX_TIMEOUT)
        )
        uuid = meta.uuid or b""
        tim_name = await self._read_name(p1451.TIM_CHANNEL) or uuid.hex()
        channels = []
        for number in range(1, (meta.max_chan or 0) + 1):
            teds = ChannelTeds.from_bytes(
                await self.read_teds(number, p1451.TedsAccessCode.CHANNEL)
            )
            name = await self._read_name(number) or f"channel{number}"
            channels.append(self._channel_info(number, name, teds))
        for channel in channels:
            # Event sensors report only while Operating; actuators wait for a write.
            if channel.kind in (ChannelKind.SENSOR, ChannelKind.EVENT_SENSOR):
                await self._request(p1451.operate(channel.number))
        self._info = TimInfo(uuid, tim_name, tuple(channels), meta)
        _LOGGER.info(
            "port=%s TIM %s (%s): %d channel(s)",
            self.settings.port,
            tim_name,
            uuid.hex(),
            len(channels),
        )
        return self._info

    async def read(self, channel: int) -> Sample:
        """Trigger ``channel``, read its data set and return the first sample."""
        return (await self.read_data_set(channel))[0]

    async def read_data_set(self, channel: int) -> tuple[Sample, ...]:
        """Trigger ``channel`` and return every sample of its data set, in display units."""
        info = self._channel(channel)
        teds = info.teds
        async with self._sampling:
            await self._request(p1451.trigger(channel))
            settle = max(_finite(teds.update_time) or 0.0, _finite(teds.read_delay) or 0.0)
            if settle > 0:
                # The TIM's own data sheet says how long a sample takes: wait that long.
                await asyncio.sleep(min(settle, MAX_SETTLE))
            reply = await self._request(p1451.read_data_set(channel, 0))
        timestamp = datetime.now(UTC)
        segment = p1451.Segment.from_bytes(reply.data if reply else b"")
        values = decode_samples(segment.data, teds.sample or FLOAT32_SAMPLE)
        if not values:
            raise FrameError(f"channel {channel}: empty data set")
        conversion = display_conversion(teds.phy_units)
        return tuple(
            Sample(channel, conversion.to_display(value), info.unit, timestamp) for value in values
        )

    async def define_group(self, group: int, channels: Iterable[int]) -> None:
        """Make Idle *channels* the members of AddressGroup *group* (0x8000..0xFFFE), so that
        one Operate, Idle or Trigger sent to the group reaches them all."""
        for channel in channels:
            await self._request(p1451.define_address_group(channel, group))

    async def operate(self, channel: int) -> None:
        """Put a channel in Operating (also an AddressGroup, or 0xFFFF for every channel)."""
        await self._request(p1451.operate(channel))

    async def idle(self, channel: int) -> None:
        """Return a channel to Idle (also an AddressGroup, or 0xFFFF for every channel)."""
        await self._request(p1451.idle(channel))

    async def write(self, channel: int, value: float) -> None:
        """Write one sample (given in the display unit) to an actuator channel."""
        info = self._channel(channel)
        if info.kind is not ChannelKind.ACTUATOR:
            raise TimError(f"channel {channel} is not an actuator")
        raw = display_conversion(info.teds.phy_units).to_raw(value)
        try:
            data = encode_samples([raw], info.teds.sample or FLOAT32_SAMPLE)
        except (ValueError, OverflowError) as err:
            raise TimError(f"channel {channel}: {value!r} does not fit its sample format") from err
        await self._request(p1451.operate(channel))
        await self._request(p1451.write_data_set(channel, 0, data))

    async def read_teds(self, channel: int, code: int) -> bytes:
        """Query a TEDS and read it whole, segment by segment (ieee1451.md §4.6)."""
        reply = await self._request(p1451.query_teds(channel, code))
        query = p1451.TedsInfo.from_bytes(reply.data if reply else b"")
        if not query.available:
            raise TedsError(f"ch={channel} TEDS {code} not available ({query.attributes:#04x})")
        image = bytearray()
        total: int | None = None
        while total is None or len(image) < total:
            reply = await self._request(p1451.read_teds_segment(channel, code, len(image)))
            segment = p1451.Segment.from_bytes(reply.data if reply else b"")
            if segment.offset == p1451.UNSUPPORTED_OFFSET:
                raise TedsError(f"ch={channel} TEDS {code} unsupported")
            if segment.offset != len(image) or not segment.data:
                raise TedsError(
                    f"ch={channel} TEDS {code}: segment at {segment.offset} with "
                    f"{len(segment.data)} octets while {len(image)} octets are held"
                )
            image += segment.data
            if total is None and len(image) >= 4:
                total = 4 + int.from_bytes(image[:4], "big")
                if total > MAX_TEDS_SIZE:
                    raise TedsError(f"ch={channel} TEDS {code} of {total} octets is too large")
        data = bytes(image[:total])
        if int.from_bytes(data[-2:], "big") != query.checksum:
            _LOGGER.warning(
                "port=%s ch=%d TEDS %d checksum differs from Query TEDS",
                self.settings.port,
                channel,
                code,
            )
        return data

    # --- internals --------------------------------------------------------------------

    async def _request(self, command: p1451.Command) -> p1451.Reply | None:
        # The TIM's hold-off plus the time the longest frame takes on the wire both ways:
        # at 9600 baud a full TEDS segment alone takes about a second.
        wire = 2 * MAX_ENCODED * BITS_PER_OCTET / self.settings.baudrate
        return await self._link.request(
            command, timeout=self._timeout + wire, expect_reply=command.reply_expected
        )

    async def _read_name(self, channel: int) -> str | None:
        try:
            data = await self.read_teds(channel, p1451.TedsAccessCode.USER_NAME)
            return UserNameTeds.from_bytes(data).name or None
        except TimUnavailable:
            raise
        except TimError as err:
            # The name is optional: a TIM without a usable one is still worth serving.
            _LOGGER.debug("port=%s ch=%d no usable name TEDS: %s", self.settings.port, channel, err)
            return None

    def _channel(self, channel: int) -> ChannelInfo:
        if self._info is None:
            raise TimError("discover() the TIM first")
        for info in self._info.channels:
            if info.number == channel:
                return info
        raise TimError(f"TIM {self._info.name} has no channel {channel}")

    @staticmethod
    def _channel_info(number: int, name: str, teds: ChannelTeds) -> ChannelInfo:
        conversion = display_conversion(teds.phy_units)
        low = _finite(teds.low_limit)
        high = _finite(teds.high_limit)
        return ChannelInfo(
            number=number,
            name=name,
            kind=_channel_kind(teds.chan_type),
            unit=conversion.unit,
            low_limit=math.nan if low is None else _tidy(conversion.to_display(_tidy(low))),
            high_limit=math.nan if high is None else _tidy(conversion.to_display(_tidy(high))),
            decimals=_decimals(teds.o_error, conversion.scale),
            teds=teds,
        )

    def on_event(self, callback: Callable[[Sample], None]) -> None:
        """Have *callback* called with each sample an event sensor channel reports by itself."""
        self._event_callback = callback

    def _on_tim_initiated(self, message: p1451.TimInitiated) -> None:
        """A data-set message (class 3, function 1: UInt32 offset + samples) from a channel."""
        port = self.settings.port
        info = self._info
        channel = None
        if info is not None:
            channel = next((c for c in info.channels if c.number == message.channel), None)
        data_set = (message.cmd_class, message.function) == (
            p1451.CommandClass.XDCR_OPERATE,
            p1451.XdcrOperateCmd.READ_DATA_SET_SEGMENT,
        )
        if channel is None or not data_set:
            _LOGGER.debug("port=%s TIM-initiated message ignored: %s", port, message)
            return
        try:
            segment = p1451.Segment.from_bytes(message.args)
            values = decode_samples(segment.data, channel.teds.sample or FLOAT32_SAMPLE)
        except TimError as err:
            _LOGGER.warning("port=%s ch=%d: bad event message: %s", port, channel.number, err)
            return
        if not values or self._event_callback is None:
            return
        conversion = display_conversion(channel.teds.phy_units)
        sample = Sample(
            channel.number, conversion.to_display(values[0]), channel.unit, datetime.now(UTC)
        )
        self._event_callback(sample)


__all__ = [
    "ChannelInfo",
    "ChannelKind",
    "DisplayConversion",
    "Sample",
    "SerialSettings",
    "SerialTim",
    "TimInfo",
    "display_conversion",
]
