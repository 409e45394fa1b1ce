"""The dependency direction: tim_drivers, xep and sipstack never import each other or ncap."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "tim_drivers": ("ncap", "xep"),
    "xep": ("ncap", "tim_drivers"),
    "sipstack": ("ncap", "xep", "tim_drivers"),
}


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


PURE_CODECS = {
    "tim_drivers.codec.cobs",
    "tim_drivers.codec.framing",
    "tim_drivers.codec.p1451",
    "tim_drivers.codec.teds",
    "tim_drivers.modbus.registers",
    "tim_drivers.modbus.units",
    "tim_drivers.modbus.planner",
    "xep.xep_0323.model",
    "xep.xep_0323.convert",
    "xep.xep_0324.model",
    "xep.xep_0324.convert",
    "xep.xep_0347.model",
    "xep.xep_0347.convert",
    "xep.xep_0347.uri",
    "xep.dialect",
    "sipstack.headers",
    "sipstack.uri",
    "sipstack.fields",
    "sipstack.message",
    "sipstack.digest",
    "sipstack.pidf",
    "sipstack.mwi",
    "sipstack.transaction",
}
# What a pure codec may import from the project besides other pure codecs.
PURE_SUPPORT = {
    "tim_drivers.errors",
    "xep.errors",
    "xep.xmlutil",
    "sipstack.errors",
    "tim_drivers.codec",
    "xep.xep_0323",
    "xep.xep_0324",
    "xep.xep_0347",
}
IO_MODULES = {"asyncio", "serial", "serial_asyncio_fast", "slixmpp", "socket", "selectors", "time"}


def _imports(module: str) -> set[str]:
    path = REPO / (module.replace(".", "/") + ".py")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", sorted(PURE_CODECS))
def test_codecs_do_no_io(module: str) -> None:
    """Codecs are importable and testable with no event loop, no port and no clock."""
    imported = _imports(module)
    io = sorted(name for name in imported if name.split(".")[0] in IO_MODULES)
    ours = {name for name in imported if name.split(".")[0] in FORBIDDEN}
    impure = sorted(
        name
        for name in ours
        if name not in PURE_CODECS
        and name not in PURE_SUPPORT
        and name.rpartition(".")[0]
        not in PURE_CODECS | PURE_SUPPORT - {"xep.xep_0323", "xep.xep_0324", "xep.xep_0347"}
    )
    assert io == []
    assert impure == []
