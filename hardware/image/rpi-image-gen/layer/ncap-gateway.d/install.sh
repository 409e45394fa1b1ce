#!/bin/sh
# rpi-image-gen customize hook of the ncap-gateway layer.
#   install.sh ROOTFS BOARD HAT DEB
# Runs on the build host with the target's root file system at ROOTFS (arm64 code inside runs
# under qemu-user-static). Everything it installs comes from this repository's
# hardware/boards/ (shipped in the .deb as /usr/share/ncap/boards/).
set -eu

rootfs=$1
board=$2
hat=$3
deb=$4

fail() { echo "ncap-gateway: $*" >&2; exit 1; }

case "$board" in pi4|pi5|zero2w) ;; *) fail "unknown board '$board'" ;; esac
[ -f "$deb" ] || fail "no .deb at '$deb' (build it with: make deb ARCH=arm64)"

# The package, with its dependencies from the image's archive.
cp "$deb" "$rootfs/tmp/ncap.deb"
chroot "$rootfs" apt-get install -y --no-install-recommends /tmp/ncap.deb
rm -f "$rootfs/tmp/ncap.deb"

boards=/usr/share/ncap/boards
firmware="$rootfs/boot/firmware"
mkdir -p "$firmware/overlays" "$firmware/ncap"

# config.txt: the board's lines, then the HAT's.
fragments="$rootfs$boards/$board/config.txt"
if [ "$hat" = y ]; then
    fragments="$fragments $rootfs$boards/rs485-hat/config.txt"
fi
{
    printf '\n[all]\n# NCAP gateway (%s)\n' "$board"
    for fragment in $fragments; do
        grep -v '^#' "$fragment" | grep -v '^$' || true
    done
} >> "$firmware/config.txt"

# Our own overlays, compiled on the host.
for source in "$rootfs$boards/$board"/overlays/*.dts; do
    [ -e "$source" ] || continue
    name=$(basename "$source" .dts)
    dtc -@ -q -I dts -O dtb -o "$firmware/overlays/$name.dtbo" "$source"
done

# The board's stable serial names (postinst cannot tell the board inside an image build).
ln -sf "$boards/$board/udev/71-ncap-$board.rules" "$rootfs/etc/udev/rules.d/"

# Where the person flashing the card drops ncap.toml and secrets/xmpp-password.
cat > "$firmware/ncap/README.txt" <<TXT
Put ncap.toml here (example: $boards/$board/ncap.toml on the gateway, or
hardware/boards/$board/ncap.toml in the NCAP sources) and, unless the XMPP server creates
accounts in-band, secrets/xmpp-password. They are imported on first boot; the password is
then deleted from this partition. The claim QR code appears here as claim.png / claim.svg.
TXT
