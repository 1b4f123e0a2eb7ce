#!/usr/bin/env bash
# Sets up what EXEC_CMD needs on a Debian/Ubuntu machine, non-interactively:
#   1. installs docker.io with apt-get if `dockerd` is missing,
#   2. starts `dockerd` in the background if `docker info` fails (log:
#      $AOS_DOCKERD_LOG, default /var/log/aos-dockerd.log) and waits until it
#      answers ($AOS_DOCKERD_TIMEOUT seconds, default 60),
#   3. builds the sandbox image with scripts/build-sandbox-image.sh.
#
# Usage: scripts/setup-docker.sh [--no-image] [--force] [IMAGE]
#   --no-image   only make sure the engine runs
#   --force      rebuild the image even if it exists
#   IMAGE        image name (default aos-sandbox:latest)
# Run as root (or with sudo available). Safe to run again: each step is skipped
# when already done.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_file="${AOS_DOCKERD_LOG:-/var/log/aos-dockerd.log}"
timeout_s="${AOS_DOCKERD_TIMEOUT:-60}"
build_image=1
image_args=()
for a in "$@"; do
    case "$a" in
        --no-image) build_image=0 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) image_args+=("$a") ;;
    esac
done

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup-docker: error: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "run this as root (or install sudo)"
    SUDO="sudo -n"
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    say "installing docker.io (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # Without systemd (containers, CI) the package's own attempt to start the
    # service can fail the install; this script starts dockerd itself below.
    tmp_policy=0
    if [ ! -d /run/systemd/system ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        tmp_policy=1
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
    if [ "$tmp_policy" -eq 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
fi

engine_up() { $SUDO docker info >/dev/null 2>&1; }

if engine_up; then
    say "Docker engine is running ($($SUDO docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
else
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 \
            && $SUDO systemctl start docker >/dev/null 2>&1; then
        say "started docker.service (systemd)"
    elif pgrep -x dockerd >/dev/null 2>&1; then
        say "dockerd is already starting; waiting for it"
    else
        say "starting dockerd in the background (log: $log_file)"
        $SUDO mkdir -p "$(dirname "$log_file")"
        # setsid + nohup: the daemon outlives this script and its terminal.
        $SUDO sh -c "setsid nohup dockerd >>'$log_file' 2>&1 < /dev/null &"
    fi
    waited=0
    until engine_up; do
        if [ "$waited" -ge "$timeout_s" ]; then
            printf '\n--- last lines of %s ---\n' "$log_file" >&2
            $SUDO tail -n 30 "$log_file" >&2 || true
            die "dockerd did not answer within ${timeout_s}s (see $log_file; raise AOS_DOCKERD_TIMEOUT to wait longer)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "Docker engine is up after ${waited}s"
fi

if [ "$build_image" -eq 1 ]; then
    "$here/build-sandbox-image.sh" "${image_args[@]}"
fi
