"""The dependency direction: tim_drivers and xep never import each other or ncap."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"tim_drivers": ("ncap", "xep"), "xep": ("ncap", "tim_drivers")}


def _modules(package: str) -> list[str]:
    found = [package]
    for info in pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}."):
        if not info.name.endswith("__main__"):
            found.append(info.name)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_its_peers(package: str) -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {_modules(package)!r}: importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    loaded = result.stdout.split()
    offenders = [
        name for name in loaded for peer in FORBIDDEN[package] if name.split(".")[0] == peer
    ]
    assert offenders == []
