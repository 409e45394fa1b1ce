#!/usr/bin/env bash
# Builds the ncap .deb: our wheel and its hash-pinned dependencies (packaging/requirements.lock)
# in a venv at /opt/ncap/venv for the target's Debian Python, the systemd units, udev rules,
# board files, a default /etc/ncap/ncap.toml and the maintainer scripts.
#
#   packaging/build-deb.sh                      amd64 (this machine), Debian trixie (Python 3.13)
#   ARCH=arm64 packaging/build-deb.sh           Raspberry Pi OS trixie on a Pi 4/5/Zero 2 W
#   SUITE=bookworm packaging/build-deb.sh       Debian 12 / Pi OS bookworm (Python 3.11)
#
# The venv is assembled, not created by running the target's Python: pip installs binary
# wheels chosen for the target's architecture, Python version and glibc, and the venv's
# bin/python links to /usr/bin/python3.X, which the package depends on. So one x86 machine
# builds both architectures; the target's interpreter byte-compiles the venv in postinst.
# Every dependency must therefore have a wheel for the target (all do today, arm64 included);
# a dependency published only as source would need the build on the target (see docs/deploy.md).
#
# Output: dist/ncap_<version>-1_<arch>.deb. Downloaded wheels are cached (hash-checked) in
# build/deb-cache/. Needs: dpkg-deb, a Python with pip >= 23 ($PYTHON, default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH=${ARCH:-$(dpkg --print-architecture)}
SUITE=${SUITE:-trixie}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-dist}

case "$SUITE" in
    trixie) PYVER=3.13 GLIBC_MINOR=41 ;;
    bookworm) PYVER=3.11 GLIBC_MINOR=36 ;;
    *) echo "build-deb: unknown SUITE $SUITE (trixie or bookworm)" >&2; exit 2 ;;
esac
case "$ARCH" in
    amd64) MACHINE=x86_64 ;;
    arm64) MACHINE=aarch64 ;;
    *) echo "build-deb: unsupported ARCH $ARCH (amd64 or arm64)" >&2; exit 2 ;;
esac

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' ncap/__init__.py)
DEB_VERSION="$VERSION-1"
PACKAGE="ncap_${DEB_VERSION}_${ARCH}"
WORK=build/deb
STAGE="$WORK/$PACKAGE"
CACHE="build/deb-cache/wheels-cp${PYVER/./}-$MACHINE"
VENV=/opt/ncap/venv
SITE="$STAGE$VENV/lib/python$PYVER/site-packages"
# Reproducible file dates: the last commit's time, not the build's.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

# Only wheels the target can load: every manylinux tag up to its glibc, its CPython ABI.
target=(--only-binary=:all: --python-version "$PYVER" --implementation cp
        --abi "cp${PYVER/./}" --abi abi3 --abi none --platform "manylinux2014_$MACHINE")
for minor in $(seq 17 "$GLIBC_MINOR"); do
    target+=(--platform "manylinux_2_${minor}_$MACHINE")
done
pip=("$PYTHON" -m pip --disable-pip-version-check --no-input)

echo "build-deb: $PACKAGE (Python $PYVER, $MACHINE)"
rm -rf "$STAGE" "$WORK/wheel"
mkdir -p "$STAGE" "$CACHE" "$OUT"

# Our own wheel (pure Python), built in isolation with pyproject's build backend.
"${pip[@]}" wheel --quiet --no-deps --wheel-dir "$WORK/wheel" . > "$WORK/wheel.log" 2>&1 \
    || { cat "$WORK/wheel.log" >&2; exit 1; }
wheel=$(echo "$WORK"/wheel/ncap-*.whl)
"${pip[@]}" download --quiet --require-hashes -r packaging/requirements.lock \
    "${target[@]}" --dest "$CACHE"
# One hash-checked install of the lock and our wheel: a dependency of ours missing from the
# lock fails here (run packaging/lock.sh), instead of on the board.
{
    cat packaging/requirements.lock
    echo "ncap @ file://$(realpath "$wheel") --hash=sha256:$(sha256sum "$wheel" | cut -d' ' -f1)"
} > "$WORK/requirements.txt"
"${pip[@]}" install --quiet --no-index --find-links "$CACHE" --require-hashes \
    -r "$WORK/requirements.txt" "${target[@]}" --no-compile --target "$SITE"
rm -rf "${SITE:?}/bin"  # console scripts for the build machine's interpreter; ours is below

# The venv around the packages: what `python3.X -m venv` would have made on the target.
mkdir -p "$STAGE$VENV/bin"
ln -s "/usr/bin/python$PYVER" "$STAGE$VENV/bin/python"
ln -s python "$STAGE$VENV/bin/python3"
ln -s python "$STAGE$VENV/bin/python$PYVER"
ln -s lib "$STAGE$VENV/lib64"
cat > "$STAGE$VENV/pyvenv.cfg" <<EOF
home = /usr/bin
include-system-site-packages = false
version = $PYVER
executable = /usr/bin/python$PYVER
EOF
cat > "$STAGE$VENV/bin/ncap" <<EOF
#!$VENV/bin/python
import sys

from ncap.cli import main

sys.exit(main())
EOF
chmod 755 "$STAGE$VENV/bin/ncap"
mkdir -p "$STAGE/usr/bin"
ln -s "$VENV/bin/ncap" "$STAGE/usr/bin/ncap"

# systemd: units, the hardware watchdog for PID 1.
install -D -m 644 -t "$STAGE/usr/lib/systemd/system" packaging/systemd/*.service \
    packaging/systemd/*.path
install -D -m 644 -t "$STAGE/usr/lib/systemd/system.conf.d" packaging/systemd/system.conf.d/*.conf
# udev: rules that fit every board; a board's own rules are linked by postinst.
install -D -m 644 -t "$STAGE/usr/lib/udev/rules.d" \
    hardware/boards/rs485-hat/udev/*.rules hardware/boards/usb-rs485/udev/*.rules
# Data: board files, Modbus register maps, TIM profiles (ncap.hardware looks in /usr/share/ncap).
mkdir -p "$STAGE/usr/share/ncap"
cp -r hardware/boards "$STAGE/usr/share/ncap/boards"
cp -r hardware/devices hardware/tims "$STAGE/usr/share/ncap/"
install -m 644 hardware/ncap.example.toml "$STAGE/usr/share/ncap/ncap.example.toml"
# Configuration: a placeholder the service will not start with (see its comments).
install -D -m 644 packaging/etc/ncap.toml "$STAGE/etc/ncap/ncap.toml"
# Documentation.
doc="$STAGE/usr/share/doc/ncap"
install -D -m 644 docs/deploy.md "$doc/deploy.md"
cat > "$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ncap
Comment: the venv in /opt/ncap/venv holds the Python packages pinned in requirements.lock,
 each under its own licence (see its .dist-info directory).

Files: *
License: MIT
EOF
install -m 644 packaging/requirements.lock "$doc/requirements.lock"
printf 'ncap (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- NCAP developers <ncap@invalid>  %s\n' \
    "$DEB_VERSION" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" \
    "$(date -u -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n > "$doc/changelog.Debian.gz"

# Control files.
mkdir -p "$STAGE/DEBIAN"
install -m 755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$STAGE/DEBIAN/"
echo /etc/ncap/ncap.toml > "$STAGE/DEBIAN/conffiles"
installed_kb=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<EOF
Package: ncap
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: NCAP developers <ncap@invalid>
Installed-Size: $installed_kb
Depends: python$PYVER, adduser
Recommends: systemd, udev
Section: net
Priority: optional
Homepage: https://example.invalid/ncap
Description: IEEE 21451 NCAP: an XMPP IoT gateway for TIMs and Modbus devices
 Reads TIMs (IEEE 1451.0 over serial lines) and Modbus devices and serves them to XMPP users
 (XEP-0323 sensor data, XEP-0325 control, XEP-0326 concentrator, event subscriptions).
 Runs as the systemd service ncap.service with a progress-gated watchdog; imports its
 configuration from the boot partition on first boot.
EOF

find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +
chmod -R u+rwX,go+rX,go-w "$STAGE"
find "$STAGE" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT/$PACKAGE.deb" >/dev/null
echo "build-deb: $OUT/$PACKAGE.deb ($(du -h "$OUT/$PACKAGE.deb" | cut -f1))"
