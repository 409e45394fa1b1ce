"""Files shipped in hardware/: TIM simulator profiles and Modbus device register maps.

They are looked up in the source tree first, then where a package installs them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ncap.errors import NcapError


class HardwareFileNotFound(NcapError):
    """No such profile or register map."""


def hardware_file(folder: str, name: str) -> Path:
    """``hardware/<folder>/<name>``: a path as given, else from the source tree or data dir."""
    given = Path(name)
    if given.is_absolute() or given.parent != Path():
        if given.is_file():
            return given
        raise HardwareFileNotFound(f"no such file: {given}")
    candidates = [
        Path(__file__).resolve().parent.parent / "hardware" / folder / name,
        Path(sys.prefix) / "share" / "ncap" / folder / name,
        Path("/usr/share/ncap") / folder / name,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c.parent) for c in candidates)
    raise HardwareFileNotFound(f"{folder}/{name} not found (looked in {looked})")


def device_profile(name: str) -> Path:
    """A Modbus register map by name (``eastron-sdm120``) or path."""
    return hardware_file("devices", name if name.endswith(".toml") else f"{name}.toml")
