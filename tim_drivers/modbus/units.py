"""Display units of Modbus profiles and their IEEE 1451 PhysicalUnits (pure).

A profile's ``unit`` is what people see ("°C", "kWh").  A TEDS states its limits in SI
PhysicalUnits, so each display unit maps to ``si = display * factor + offset``:
°C -> K (+273.15), % -> ratio (x 0.01), kWh -> J (x 3.6e6), ° -> rad.

Apparent (VA) and reactive (var) power have the dimension of watts; a TEDS cannot tell
them apart, so the display unit is kept in the channel's name and ``unit`` only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from tim_drivers.codec.teds import DIMENSIONLESS, KELVIN, RATIO, ZERO_CELSIUS, PhysicalUnits

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UnitMapping:
    """``si = display * factor + offset`` in ``units``."""

    units: PhysicalUnits
    factor: float = 1.0
    offset: float = 0.0

    def to_si(self, value: float) -> float:
        return value * self.factor + self.offset

    def delta_to_si(self, delta: float) -> float:
        """A difference (an uncertainty) in SI: the offset does not apply."""
        return delta * abs(self.factor)


_VOLT = PhysicalUnits(kilograms=1, meters=2, seconds=-3, amperes=-1)
_AMPERE = PhysicalUnits(amperes=1)
_WATT = PhysicalUnits(kilograms=1, meters=2, seconds=-3)
_JOULE = PhysicalUnits(kilograms=1, meters=2, seconds=-2)
_HERTZ = PhysicalUnits(seconds=-1)
_SECOND = PhysicalUnits(seconds=1)
_PASCAL = PhysicalUnits(kilograms=1, meters=-1, seconds=-2)
_RADIAN = PhysicalUnits(radians=1)

UNITS: dict[str, UnitMapping] = {
    "": UnitMapping(DIMENSIONLESS),
    "PF": UnitMapping(DIMENSIONLESS),
    "V": UnitMapping(_VOLT),
    "mV": UnitMapping(_VOLT, 1e-3),
    "A": UnitMapping(_AMPERE),
    "mA": UnitMapping(_AMPERE, 1e-3),
    "W": UnitMapping(_WATT),
    "kW": UnitMapping(_WATT, 1e3),
    "VA": UnitMapping(_WATT),
    "kVA": UnitMapping(_WATT, 1e3),
    "var": UnitMapping(_WATT),
    "kvar": UnitMapping(_WATT, 1e3),
    "Wh": UnitMapping(_JOULE, 3.6e3),
    "kWh": UnitMapping(_JOULE, 3.6e6),
    "varh": UnitMapping(_JOULE, 3.6e3),
    "kvarh": UnitMapping(_JOULE, 3.6e6),
    "VAh": UnitMapping(_JOULE, 3.6e3),
    "kVAh": UnitMapping(_JOULE, 3.6e6),
    "Hz": UnitMapping(_HERTZ),
    "s": UnitMapping(_SECOND),
    "K": UnitMapping(KELVIN),
    "°C": UnitMapping(KELVIN, 1.0, ZERO_CELSIUS),
    "%": UnitMapping(RATIO, 0.01),
    "%RH": UnitMapping(RATIO, 0.01),
    "ppm": UnitMapping(RATIO, 1e-6),
    "Pa": UnitMapping(_PASCAL),
    "hPa": UnitMapping(_PASCAL, 100.0),
    "°": UnitMapping(_RADIAN, math.pi / 180),
}
