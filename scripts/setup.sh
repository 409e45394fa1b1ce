#!/usr/bin/env bash
# Sets up a fresh Debian 12 / Raspberry Pi OS machine for NCAP: the Debian packages
# the tests and the demo need, then .venv with the project and its dev extras.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# lua-dbi-sqlite3: the private Prosody keeps PubSub/PEP items in SQLite (see ncap/rig/prosody.py).
DEB_PACKAGES=(prosody lua-dbi-sqlite3 socat ca-certificates)
# The packaging tests: a fresh Debian chroot, script lint, device-tree overlays.
DEB_PACKAGES+=(mmdebstrap shellcheck device-tree-compiler)
# The SIP bridge tests: SIPp and private Kamailio presence servers (ncap/rig/sipp.py,
# ncap/rig/kamailio.py; the tls modules give the sips: listener). Like prosody, kamailio must
# not run system-wide: see policy-rc.d and the disabled unit below.
DEB_PACKAGES+=(sip-tester kamailio kamailio-presence-modules kamailio-tls-modules)
# python3-venv is only needed when the interpreter cannot make a venv by itself.
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || DEB_PACKAGES+=(python3-venv)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    install=(apt-get install -y --no-install-recommends "${missing[@]}")
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        # Installing prosody or kamailio must not start the system-wide server: the tests
        # and the demo run their own private instances.
        policy=/usr/sbin/policy-rc.d
        created_policy=no
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created_policy=yes
        fi
        DEBIAN_FRONTEND=noninteractive "${install[@]}"
        [ "$created_policy" = yes ] && rm -f "$policy"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        echo "setup: installing Debian packages with sudo: ${missing[*]}"
        sudo apt-get update -qq
        # As above: no system-wide server may start (with systemd running, it would).
        policy=/usr/sbin/policy-rc.d
        created_policy=no
        if ! sudo test -e "$policy"; then
            printf '#!/bin/sh\nexit 101\n' | sudo tee "$policy" >/dev/null &&
                sudo chmod 755 "$policy" && created_policy=yes
        fi
        sudo DEBIAN_FRONTEND=noninteractive "${install[@]}"
        [ "$created_policy" = yes ] && sudo rm -f "$policy"
    else
        echo "setup: these Debian packages are missing: ${missing[*]}" >&2
        echo "setup: run: sudo apt-get update && sudo ${install[*]}" >&2
        exit 1
    fi
    # The kamailio package enables its unit (all interfaces, port 5060) for the next boot.
    # systemctl disable works on the unit files, with or without a running systemd.
    if [[ " ${missing[*]} " == *" kamailio "* ]] && command -v systemctl >/dev/null; then
        as_root=()
        [ "$(id -u)" -eq 0 ] || as_root=(sudo)
        "${as_root[@]}" systemctl disable --quiet kamailio.service
    fi
fi

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: NCAP needs Python >= 3.11, {sys.executable} is {sys.version.split()[0]}")
PY

if [ -f .venv/.installed ] && [ .venv/.installed -nt pyproject.toml ]; then
    exit 0
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
touch .venv/.installed
echo "setup: ready (.venv)"
