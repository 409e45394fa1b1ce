"""The .deb as CI builds it (`make deb`'s script), installed into a fresh Debian trixie chroot
made by mmdebstrap: --version, the first-boot import, --check-config as the service user with
the password as a credential, the claim QR, `systemd-analyze verify` silent, exposure <= 2.5,
`udevadm verify`, purge. And the arm64 .deb from the same script, checked without running it.

Slow (a chroot, about half a minute): marked `packaging`, selected with `pytest -m packaging`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 300
CHECK_TIMEOUT = 420
EM_AARCH64 = 183
EM_X86_64 = 62
MAX_DEB_BYTES = 40 * 1024 * 1024

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(900)]


def _require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/setup.sh installs them)")


def _build(out: Path, arch: str) -> Path:
    _require("dpkg-deb", "dpkg")
    started = time.monotonic()
    result = subprocess.run(
        ["packaging/build-deb.sh"],
        cwd=REPO,
        env={**os.environ, "ARCH": arch, "OUT": str(out), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    debs = sorted(out.glob(f"ncap_*_{arch}.deb"))
    assert len(debs) == 1, result.stdout
    took = time.monotonic() - started
    print(f"built {debs[0].name}: {debs[0].stat().st_size} bytes in {took:.1f} s")
    return debs[0]


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def test_the_deb_installs_and_works_in_a_fresh_debian_chroot(tmp_path: Path) -> None:
    _require("mmdebstrap")
    if os.geteuid() != 0:
        # As a user mmdebstrap needs user namespaces and /etc/subuid ranges; CI runs as root.
        pytest.skip("the chroot test runs as root")
    deb = _build(tmp_path, "amd64")
    assert deb.stat().st_size < MAX_DEB_BYTES
    assert _field(deb, "Depends") == "python3.13, adduser"

    started = time.monotonic()
    result = subprocess.run(
        ["packaging/check-deb.sh", str(deb)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
        check=False,
    )
    print(f"chroot checks: {time.monotonic() - started:.1f} s")
    output = result.stdout + result.stderr  # mmdebstrap shows its hooks' output on stderr
    print(output)
    assert result.returncode == 0, output
    lines = [line for line in output.splitlines() if line.startswith(("ok:", "FAIL:"))]
    assert not [line for line in lines if line.startswith("FAIL:")]
    for expected in (
        "ok: ncap --version: ncap ",
        "ok: unconfigured: rc 78",
        "ok: first boot imported",
        "ok: as user ncap with $CREDENTIALS_DIRECTORY: configuration is valid",
        "ok: claim QR saved on the boot partition and read back",
        "ok: systemd-analyze verify: silent",
        "ok: systemd-analyze security",
        "ok: udevadm verify",
        "ok: purged cleanly",
    ):
        assert any(line.startswith(expected) for line in lines), expected


def test_the_same_script_builds_an_arm64_deb_of_aarch64_code(tmp_path: Path) -> None:
    deb = _build(tmp_path, "arm64")
    assert _field(deb, "Architecture") == "arm64"
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(tree)], check=True, timeout=60)
    libraries = list((tree / "opt/ncap/venv/lib").rglob("*.so"))
    assert libraries
    machines = {_elf_machine(library) for library in libraries}
    assert machines == {EM_AARCH64}, f"not all aarch64: {machines}"
    assert os.readlink(tree / "opt/ncap/venv/bin/python") == "/usr/bin/python3.13"
    assert (tree / "usr/lib/systemd/system/ncap.service").is_file()
