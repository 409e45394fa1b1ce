"""TIM simulator profiles: TOML files describing one simulated TIM (see hardware/tims/)."""

from __future__ import annotations

import logging
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tim_drivers.codec.teds import (
    DIMENSIONLESS,
    KELVIN,
    PASCAL,
    RATIO,
    ChanType,
    PhysicalUnits,
)
from tim_drivers.errors import ProfileError
from tim_drivers.tomlcheck import TableReader

_LOGGER = logging.getLogger(__name__)

NAMED_UNITS: dict[str, PhysicalUnits] = {
    "K": KELVIN,
    "Pa": PASCAL,
    "m": PhysicalUnits(meters=1),
    "m/s": PhysicalUnits(meters=1, seconds=-1),
    "m/s2": PhysicalUnits(meters=1, seconds=-2),
    "V": PhysicalUnits(kilograms=1, meters=2, seconds=-3, amperes=-1),
    "A": PhysicalUnits(amperes=1),
    "lx": PhysicalUnits(candelas=1, steradians=1, meters=-2),
    "ratio": RATIO,
    "none": DIMENSIONLESS,
}
_UNIT_KEYS = (
    "interpretation",
    "radians",
    "steradians",
    "meters",
    "kilograms",
    "seconds",
    "amperes",
    "kelvins",
    "moles",
    "candelas",
    "extension",
)
_KINDS = {
    "sensor": ChanType.SENSOR,
    "actuator": ChanType.ACTUATOR,
    "event": ChanType.EVENT_SENSOR,
}
_WAVEFORMS = ("sine", "square")
_TIM_KEYS = {"name", "uuid", "ohold_off", "shold_off", "test_time", "baudrate"}
_CHANNEL_KEYS = {
    "name",
    "kind",
    "units",
    "low_limit",
    "high_limit",
    "o_error",
    "update_time",
    "base",
    "amplitude",
    "period",
    "fixed",
    "waveform",
    "event_threshold",
    "event_period",
}


@dataclass(frozen=True, slots=True)
class ChannelProfile:
    name: str
    kind: ChanType
    units: PhysicalUnits
    low_limit: float
    high_limit: float
    o_error: float
    update_time: float
    base: float
    amplitude: float
    period: float
    fixed: float | None
    waveform: str = "sine"
    # Event sensors only: a TIM-initiated message when the value crosses the threshold
    # (either direction) and/or every event_period seconds.
    event_threshold: float | None = None
    event_period: float | None = None

    def value_at(self, elapsed: float) -> float:
        """The channel's value (in its PhyUnits) ``elapsed`` seconds after start."""
        if self.fixed is not None:
            return self.fixed
        phase = math.sin(2 * math.pi * elapsed / self.period)
        if self.waveform == "square":
            phase = 1.0 if phase >= 0 else -1.0
        return self.base + self.amplitude * phase


@dataclass(frozen=True, slots=True)
class TimProfile:
    name: str
    uuid: bytes
    ohold_off: float
    shold_off: float
    test_time: float
    baudrate: int
    channels: tuple[ChannelProfile, ...]


def _reader(source: str, table: Mapping[str, object], path: str) -> TableReader:
    return TableReader(ProfileError, source, table, path)


def _units(reader: TableReader) -> PhysicalUnits:
    value = reader.table.get("units", "none")
    if isinstance(value, str):
        if value not in NAMED_UNITS:
            raise reader.error("units", f"unknown unit {value!r} (known: {', '.join(NAMED_UNITS)})")
        return NAMED_UNITS[value]
    if isinstance(value, dict):
        sub = _reader(reader.source, value, f"{reader.path}.units")
        sub.check_keys(set(_UNIT_KEYS))
        exps = {key: sub.number(key, 0) for key in _UNIT_KEYS[1:-1]}
        try:
            return PhysicalUnits(
                int(sub.number("interpretation", 0)),
                **exps,
                extension=int(sub.number("extension", 0)),
            )
        except ValueError as err:
            raise reader.error("units", str(err)) from None
    raise reader.error("units", "must be a unit name or a table of exponents")


def _channel(source: str, table: object, index: int) -> ChannelProfile:
    path = f"channels[{index}]"
    if not isinstance(table, dict):
        raise ProfileError(f"{source}: key '{path}': must be a table")
    reader = _reader(source, table, path)
    reader.check_keys(_CHANNEL_KEYS)
    units = _units(reader)
    kind_name = reader.choice("kind", tuple(_KINDS), "sensor")
    low = reader.number("low_limit")
    high = reader.number("high_limit")
    if low >= high:
        raise reader.error("high_limit", "must be greater than low_limit")
    fixed = reader.optional_number("fixed")
    base = reader.number("base", fixed)
    waveform = reader.choice("waveform", _WAVEFORMS, "sine")
    kind = _KINDS[kind_name]
    threshold = reader.optional_number("event_threshold")
    event_period = reader.optional_number("event_period")
    if event_period is not None and event_period <= 0:
        raise reader.error("event_period", "must be a finite positive number")
    for key, value in (("event_threshold", threshold), ("event_period", event_period)):
        if value is not None and kind is not ChanType.EVENT_SENSOR:
            raise reader.error(key, 'only allowed with kind = "event"')
    if kind is ChanType.EVENT_SENSOR and threshold is None and event_period is None:
        raise reader.error("kind", "an event channel needs event_threshold or event_period")
    return ChannelProfile(
        name=reader.text("name"),
        kind=kind,
        units=units,
        low_limit=low,
        high_limit=high,
        o_error=reader.number("o_error", 0.1, positive=True),
        update_time=reader.number("update_time", 0.0),
        base=base,
        amplitude=reader.number("amplitude", 0.0),
        period=reader.number("period", 60.0, positive=True),
        fixed=fixed,
        waveform=waveform,
        event_threshold=threshold,
        event_period=event_period,
    )


def parse_profile(data: Mapping[str, object], source: str = "profile") -> TimProfile:
    """Validate a decoded TOML document; raise :class:`ProfileError` naming the bad key."""
    top = _reader(source, data, "")
    top.check_keys({"tim", "channels"})
    tim_table = data.get("tim")
    if not isinstance(tim_table, dict):
        raise top.error("tim", "missing [tim] table")
    tim = _reader(source, tim_table, "tim")
    tim.check_keys(_TIM_KEYS)
    try:
        uuid = bytes.fromhex(tim.text("uuid"))
    except ValueError:
        raise tim.error("uuid", "must be hexadecimal") from None
    if len(uuid) != 10:
        raise tim.error("uuid", "must be 10 octets (20 hex digits)")
    channels = data.get("channels")
    if not isinstance(channels, list) or not channels:
        raise top.error("channels", "missing or empty [[channels]] array")
    baudrate = tim.number("baudrate", 115200, positive=True)
    return TimProfile(
        name=tim.text("name"),
        uuid=uuid,
        ohold_off=tim.number("ohold_off", 1.0, positive=True),
        shold_off=tim.number("shold_off", 2.0, positive=True),
        test_time=tim.number("test_time", 1.0, positive=True),
        baudrate=int(baudrate),
        channels=tuple(_channel(source, table, i) for i, table in enumerate(channels, 1)),
    )


def load_profile(path: str | Path) -> TimProfile:
    """Read and validate a profile file."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except OSError as err:
        raise ProfileError(f"{path}: cannot read: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{path}: not valid TOML: {err}") from err
    return parse_profile(data, str(path))
