"""What can be checked about the packaging and the board files without building anything: the
lock against pyproject, the unit's exposure score, every shell script under shellcheck, udev
rules and overlays where the tools exist, and each board's example configuration against the
schema and against the stable names its udev rules create."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ncap.config import parse_config

REPO = Path(__file__).resolve().parents[2]
BOARDS = REPO / "hardware" / "boards"
UNITS = REPO / "packaging" / "systemd"
MAX_EXPOSURE = 2.5
TIMEOUT = 60


def _pins() -> dict[str, str]:
    text = (REPO / "packaging" / "requirements.lock").read_text()
    return {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9._-]+)==([^\s\\]+)", text, re.MULTILINE)
    }


def test_the_lock_pins_every_dependency_of_pyproject_with_hashes() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = _pins()
    stale = []
    for line in dependencies:
        requirement = Requirement(line)
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None or not requirement.specifier.contains(pinned, prereleases=True):
            stale.append(f"{line} (locked: {pinned})")
    assert not stale, f"run packaging/lock.sh: the lock does not satisfy {stale}"
    lock = (REPO / "packaging" / "requirements.lock").read_text()
    assert lock.count("==") == len(pins)
    assert lock.count("--hash=sha256:") >= len(pins)


def _scripts() -> list[Path]:
    shell = list((REPO / "packaging").rglob("*.sh"))
    shell += [REPO / "packaging" / "deb" / name for name in ("postinst", "prerm", "postrm")]
    shell += list((REPO / "hardware" / "image").rglob("*.sh"))
    return sorted(shell)


def test_every_packaging_and_image_script_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (scripts/setup.sh installs it)")
    scripts = _scripts()
    assert len(scripts) >= 7
    result = subprocess.run(
        ["shellcheck", "--external-sources", *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_unit_exposure_is_at_most_the_threshold() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNITS / "ncap.service")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    found = re.search(r"Overall exposure level for ncap.service: ([0-9.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_unit_gates_on_configuration_and_watchdog() -> None:
    unit = (UNITS / "ncap.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "LoadCredential=xmpp-password:/etc/ncap/secrets/xmpp-password",
        "ConditionPathExists=/etc/ncap/secrets/xmpp-password",
        "StateDirectory=ncap",
    ):
        assert line in unit.splitlines(), line


def _rules_files() -> list[Path]:
    return sorted(BOARDS.glob("*/udev/*.rules"))


def test_udev_rules_pass_udevadm_verify() -> None:
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        pytest.skip("udevadm is not installed here; the chroot test (-m packaging) runs it")
    probe = subprocess.run(
        [udevadm, "verify", "--help"], capture_output=True, timeout=TIMEOUT, check=False
    )
    if probe.returncode != 0:
        pytest.skip("this udevadm has no `verify` (systemd < 254); the chroot test runs it")
    result = subprocess.run(
        [udevadm, "verify", "--resolve-names=never", *map(str, _rules_files())],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _symlinks() -> set[str]:
    names = set()
    for rules in _rules_files():
        names.update(re.findall(r'SYMLINK\+="(ncap/[^"$]+)"', rules.read_text()))
    return {f"/dev/{name}" for name in names}


@pytest.mark.parametrize("board", sorted(p.name for p in BOARDS.iterdir() if p.is_dir()))
def test_each_board_example_is_a_valid_config_naming_stable_ports(board: str) -> None:
    folder = BOARDS / board
    for required in ("config.txt", "board.toml", "ncap.toml", "NOTES.md"):
        assert (folder / required).is_file(), required
    tomllib.loads((folder / "board.toml").read_text())
    config = parse_config(tomllib.loads((folder / "ncap.toml").read_text()))
    assert str(config.xmpp.password_file) == "secrets/xmpp-password"
    ports = [tim.port for tim in config.tim]
    ports += [bus.port for bus in config.modbus if bus.kind == "rtu"]
    assert ports
    stable = _symlinks()
    for port in ports:
        made = port in stable or re.fullmatch(r"/dev/ncap/usb-[0-9a-f]{4}-\w+", port)
        assert made, f"{board}: {port} is not a name our udev rules create"


def test_device_tree_overlays_compile() -> None:
    if shutil.which("dtc") is None:
        pytest.skip("dtc is not installed (scripts/setup.sh installs device-tree-compiler)")
    sources = sorted(BOARDS.glob("*/overlays/*.dts"))
    assert sources
    for source in sources:
        result = subprocess.run(
            ["dtc", "-@", "-q", "-I", "dts", "-O", "dtb", "-o", "/dev/null", str(source)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, f"{source.name}: {result.stderr}"


def test_the_image_recipe_names_our_layer_boards_and_variables() -> None:
    recipe = REPO / "hardware" / "image" / "rpi-image-gen"
    layer = (recipe / "layer" / "ncap-gateway.yaml").read_text()
    header = layer[layer.index("# METABEGIN") : layer.index("# METAEND")]
    assert "# X-Env-Layer-Name: ncap-gateway" in header
    for variable in ("board", "hat", "deb"):
        assert f"# X-Env-Var-{variable}-Desc:" in header, variable
    hook = re.search(r"^\s+- (ncap-gateway\.d/\S+)", layer, re.MULTILINE)
    assert hook
    assert (recipe / "layer" / hook.group(1)).is_file()
    configs = sorted((recipe / "config").glob("ncap-*.yaml"))
    assert [c.stem for c in configs] == ["ncap-pi4", "ncap-pi5", "ncap-zero2w"]
    for config in configs:
        text = config.read_text()
        assert "app: ncap-gateway" in text
        board = re.search(r"^  board: (\S+)$", text, re.MULTILINE)
        assert board, config.name
        assert (BOARDS / board.group(1) / "udev").is_dir(), config.name
