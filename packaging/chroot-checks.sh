#!/bin/sh
# Runs inside a fresh Debian chroot (packaging/check-deb.sh puts it there): installs the ncap
# .deb and checks what a board would do with it. Prints one "ok: ..." line per check; the
# first failure prints "FAIL: ..." and exits 1.
set -eu

deb=$1
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "$deb" > /tmp/apt.log 2>&1; then
    cat /tmp/apt.log
    fail "apt-get install $deb"
fi
ok "installed $(dpkg-query -W -f='${Package} ${Version} ${Architecture}' ncap)"

version=$(ncap --version)
upstream=$(dpkg-query -W -f='${Version}' ncap | sed 's/-[^-]*$//')
[ "$version" = "ncap $upstream" ] || fail "ncap --version says '$version', the package $upstream"
ok "ncap --version: $version"

/opt/ncap/venv/bin/python -c 'import ncap.app, ncap.firstboot, ncap.qr, ncap.cli' \
    || fail "the venv cannot import the gateway"
compiled=$(find /opt/ncap/venv/lib -path "*/site-packages/ncap/__pycache__" -type d)
[ -n "$compiled" ] || fail "venv not byte-compiled"
ok "venv imports on $(/opt/ncap/venv/bin/python -c 'import platform; print(platform.python_version(), platform.machine())')"

id -nG ncap | grep -qw dialout || fail "user ncap is not in dialout"
[ "$(stat -c %a /etc/ncap/secrets)" = 700 ] || fail "/etc/ncap/secrets is not 700"
ok "system user ncap (groups: $(id -nG ncap)); /etc/ncap/secrets 700"

set +e
placeholder=$(ncap run --check-config 2>&1)
rc=$?
set -e
[ "$rc" = 78 ] || fail "the placeholder config gave rc=$rc: $placeholder"
ok "unconfigured: rc 78: $placeholder"

# First boot: a board's example config and a password dropped on the (FAT) boot partition.
boot=/boot/firmware/ncap
mkdir -p "$boot/secrets"
cp /usr/share/ncap/boards/pi4/ncap.toml "$boot/ncap.toml"
echo 'a-password' > "$boot/secrets/xmpp-password"
chmod 644 "$boot/ncap.toml" "$boot/secrets/xmpp-password"
ncap firstboot > /tmp/firstboot.log 2>&1 || { cat /tmp/firstboot.log; fail "ncap firstboot"; }
[ ! -e "$boot/secrets/xmpp-password" ] || fail "the password stayed on the boot partition"
[ "$(stat -c '%a %U' /etc/ncap/secrets/xmpp-password)" = "600 root" ] \
    || fail "imported password is not 600 root"
ncap run --check-config || fail "the imported config does not pass --check-config"
ok "first boot imported $boot into /etc/ncap"

# As the unit runs it: user ncap, the password only as a credential.
credentials=$(mktemp -d)
install -m 400 -o ncap /etc/ncap/secrets/xmpp-password "$credentials/xmpp-password"
chmod 500 "$credentials" && chown ncap "$credentials"
setpriv --reuid ncap --regid ncap --init-groups \
    env CREDENTIALS_DIRECTORY="$credentials" ncap run --check-config \
    || fail "user ncap cannot check the config with the password as a credential"
ok "as user ncap with \$CREDENTIALS_DIRECTORY: configuration is valid"

# The claim QR: shown, and saved on the boot partition (pillow, segno, zxing on this arch).
install -d -o ncap -m 700 /var/lib/ncap
uri='iotdisco:MAN=example.org;MODEL=NCAP;KEY=00112233445566778899aabbccddeeff'
echo "$uri" > /var/lib/ncap/claim.uri
ncap firstboot --claim-only > /tmp/claim.log || fail "ncap firstboot --claim-only"
decoded=$(/opt/ncap/venv/bin/python -c \
    'import sys; from pathlib import Path; from ncap.qr import decode_qr_image; print(decode_qr_image(Path(sys.argv[1])))' \
    "$boot/claim.png")
[ "$decoded" = "$uri" ] || fail "claim.png decodes to '$decoded'"
ok "claim QR saved on the boot partition and read back"

for unit in /usr/lib/systemd/system/ncap*; do
    out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
    [ -z "$out" ] || fail "systemd-analyze verify $unit printed: $out"
done
# A checker that cannot fail checks nothing: each must reject a broken file.
printf '[Service]\nExecStart=/bin/true\nWatchdogSec=thirty\n' > /tmp/broken.service
[ -n "$(systemd-analyze verify /tmp/broken.service 2>&1)" ] || fail "verify missed a bad value"
ok "systemd-analyze verify: silent for $(cd /usr/lib/systemd/system && echo ncap*)"

exposure=$(systemd-analyze security --offline=true --threshold=25 \
    /usr/lib/systemd/system/ncap.service 2>&1 | grep 'Overall exposure') \
    || fail "exposure above 2.5: $(systemd-analyze security --offline=true /usr/lib/systemd/system/ncap.service 2>&1 | tail -1)"
ok "systemd-analyze security ($(systemd-analyze --version | head -1)): ${exposure#→ }"

rules=$(ls /usr/lib/udev/rules.d/*ncap* /usr/share/ncap/boards/*/udev/*.rules)
# shellcheck disable=SC2086  # one argument per rules file
out=$(udevadm verify --resolve-names=never $rules 2>&1) || fail "udevadm verify: $out"
echo 'KERNEL=="ttyS0", SYMLNK+="x"' > /tmp/broken.rules
! udevadm verify --resolve-names=never /tmp/broken.rules > /dev/null 2>&1 \
    || fail "udevadm verify missed a misspelt key"
ok "udevadm verify ($(udevadm --version)): $(echo "$rules" | wc -l) rules files"

systemctl is-enabled ncap.service ncap-firstboot.service ncap-claim.path > /dev/null \
    || fail "units not enabled"
ok "units enabled: ncap.service ncap-firstboot.service ncap-claim.path"

apt-get purge -y ncap > /tmp/purge.log 2>&1 || { cat /tmp/purge.log; fail "apt-get purge ncap"; }
[ ! -e /opt/ncap ] || fail "/opt/ncap left behind: $(find /opt/ncap | head -5)"
[ ! -e /etc/ncap ] || fail "/etc/ncap left behind"
ok "purged cleanly"
