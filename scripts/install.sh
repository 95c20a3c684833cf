#!/usr/bin/env bash
# Install the gate appliance on a Debian / Raspberry Pi OS host (run as root).
#
#   sudo scripts/install.sh [--dry-run] [--with-matcher] [--no-enable] [--prefix DIR]
#
# What it does, in order (each step printed; --dry-run prints and changes nothing):
#   1. Debian packages: python3-venv, libsystemd-dev + pkg-config (to build systemd-python),
#      and on a Raspberry Pi python3-libcamera (picamera2 needs the system's libcamera);
#   2. system user gate-appliance (groups dialout, video), no login, no home;
#   3. /opt/gate-appliance (code + venv), /etc/gate-appliance (0700, gate-appliance),
#      /var/lib/gate-appliance (0700, gate-appliance);
#   4. a virtualenv with the package and its `device` extra (systemd-python, picamera2);
#   5. systemd units into /etc/systemd/system, daemon-reload, enable (not start);
#   6. with --with-matcher: the reference matching service too (user gate-matcher).
# Then provision and check the unit as the gate user:
#   sudo -u gate-appliance /opt/gate-appliance/.venv/bin/gatectl provision \
#       --config /etc/gate-appliance/gate.toml --data-dir /var/lib/gate-appliance
#   sudo -u gate-appliance /opt/gate-appliance/.venv/bin/gatectl selftest
#   sudo systemctl start gate-appliance && gatectl status
set -euo pipefail

DRY_RUN=0
WITH_MATCHER=0
ENABLE=1
PREFIX=/opt/gate-appliance
USER_NAME=gate-appliance
SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --with-matcher) WITH_MATCHER=1 ;;
        --no-enable) ENABLE=0 ;;
        --prefix)
            [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
            PREFIX="$2"
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

step=0
say() {
    step=$((step + 1))
    printf '[%d] %s\n' "$step" "$*"
}

run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '    would run: %s\n' "$*"
    else
        printf '    + %s\n' "$*"
        "$@"
    fi
}

if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo), or with --dry-run to see the steps" >&2
    exit 1
fi
if [ ! -r /etc/debian_version ]; then
    echo "install.sh: this script is for Debian or Raspberry Pi OS" >&2
    [ "$DRY_RUN" -eq 1 ] || exit 1
fi

say "Debian packages"
packages=(python3 python3-venv python3-dev libsystemd-dev pkg-config build-essential)
if grep -qi raspberry /proc/device-tree/model 2>/dev/null; then
    packages+=(python3-libcamera)
fi
run env DEBIAN_FRONTEND=noninteractive apt-get update -q
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"

add_user() {
    local name="$1"
    shift
    if id "$name" >/dev/null 2>&1; then
        printf '    user %s exists\n' "$name"
    else
        run adduser --system --group --no-create-home --home /nonexistent \
            --shell /usr/sbin/nologin "$name"
    fi
    local group
    for group in "$@"; do
        run usermod -a -G "$group" "$name"
    done
}

say "system user $USER_NAME (serial port and camera groups)"
add_user "$USER_NAME" dialout video

say "directories"
run install -d -m 0755 -o root -g root "$PREFIX"
run install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" /etc/gate-appliance
run install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" /var/lib/gate-appliance

say "code and virtualenv in $PREFIX"
run cp -a "$SOURCE_DIR/." "$PREFIX/"
run python3 -m venv --system-site-packages "$PREFIX/.venv"
run "$PREFIX/.venv/bin/python" -m pip install --quiet --upgrade pip
extras="device"
if [ "$WITH_MATCHER" -eq 1 ]; then
    extras="device,matcher"
fi
run "$PREFIX/.venv/bin/python" -m pip install --quiet "${PREFIX}[${extras},setup]"
run env GATE_DATA_DIR=/var/lib/gate-appliance "$PREFIX/.venv/bin/python" \
    "$PREFIX/scripts/gen_proto.py"
run env GATE_DATA_DIR=/var/lib/gate-appliance "$PREFIX/.venv/bin/python" \
    "$PREFIX/scripts/acquire_assets.py"
run chown -R "$USER_NAME:$USER_NAME" /var/lib/gate-appliance

say "systemd units"
run install -m 0644 "$SOURCE_DIR/systemd/gate-appliance.service" /etc/systemd/system/
run install -m 0600 -o "$USER_NAME" -g "$USER_NAME" "$SOURCE_DIR/systemd/gate-appliance.toml.example" \
    /etc/gate-appliance/gate.toml.example
if [ "$WITH_MATCHER" -eq 1 ]; then
    add_user gate-matcher
    run install -m 0644 "$SOURCE_DIR/systemd/gate-matcher.service" /etc/systemd/system/
fi
run systemctl daemon-reload
if [ "$ENABLE" -eq 1 ]; then
    run systemctl enable gate-appliance.service
    if [ "$WITH_MATCHER" -eq 1 ]; then
        run systemctl enable gate-matcher.service
    fi
fi

say "next: provision and self-test as $USER_NAME"
cat <<EOF
    sudo -u $USER_NAME $PREFIX/.venv/bin/gatectl provision \\
        --config /etc/gate-appliance/gate.toml --data-dir /var/lib/gate-appliance
    sudo -u $USER_NAME $PREFIX/.venv/bin/gatectl selftest --config /etc/gate-appliance/gate.toml
    sudo systemctl start gate-appliance && $PREFIX/.venv/bin/gatectl status \\
        --config /etc/gate-appliance/gate.toml
EOF
if [ "$DRY_RUN" -eq 1 ]; then
    echo "dry run: nothing was changed"
fi
