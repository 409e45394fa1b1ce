#!/usr/bin/env bash
# Installs an ncap .deb into a fresh Debian chroot made by mmdebstrap and runs
# packaging/chroot-checks.sh there (install, --version, first boot, --check-config as the
# service user, claim QR, systemd-analyze verify and security, udevadm verify, purge).
#
#   packaging/check-deb.sh dist/ncap_0.1.0-1_amd64.deb
#   SUITE=bookworm packaging/check-deb.sh dist/ncap_0.1.0-1_amd64.deb   (no udevadm verify there)
#
# The chroot is thrown away afterwards. Downloaded Debian packages are kept in
# build/deb-cache/apt-<suite>-<arch>/ so a second run needs little network. As root mmdebstrap
# uses chroot(2); as another user it needs unprivileged user namespaces. A foreign ARCH (arm64
# on x86) needs qemu-user-static and binfmt-support, and takes minutes instead of seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=${1:?usage: packaging/check-deb.sh PATH.deb}
SUITE=${SUITE:-trixie}
ARCH=${ARCH:-$(dpkg-deb --field "$deb" Architecture)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
python=$(dpkg-deb --field "$deb" Depends | grep -o 'python3\.[0-9]*' | head -1)
cache="$PWD/build/deb-cache/apt-$SUITE-$ARCH"
mkdir -p "$cache"

# shellcheck disable=SC2016  # "$1" in a hook is the chroot, expanded by mmdebstrap
# Python, adduser, systemd and udev come with the chroot, so installing the .deb needs only
# what it brings; systemd and udev provide systemd-analyze and udevadm for the checks.
mmdebstrap --quiet --variant=minbase --mode=auto --arch="$ARCH" \
    --include="$python,adduser,systemd,udev" \
    --skip=essential/unlink \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="sync-in '$cache' /var/cache/apt/archives/" \
    --customize-hook="copy-in '$deb' packaging/chroot-checks.sh /tmp/" \
    --customize-hook="chroot \"\$1\" sh /tmp/chroot-checks.sh /tmp/$(basename "$deb")" \
    --customize-hook='chroot "$1" apt-get autoclean -qq' \
    --customize-hook="sync-out /var/cache/apt/archives '$cache'" \
    "$SUITE" /dev/null "$MIRROR"
