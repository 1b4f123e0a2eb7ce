#!/usr/bin/env bash
# Builds the sandbox image EXEC_CMD commands and stdio MCP servers run in,
# locally (no registry needed): a minimal Debian bookworm root filesystem made
# with debootstrap from the Debian mirror, with bash, coreutils, the usual
# tools and the runtimes common MCP servers use (Node.js, Python 3), imported
# with `docker import`. If debootstrap cannot be used, falls back to a
# busybox-static root filesystem (sh only, no bash, no Node) and says so loudly.
# The image carries the label aos.sandbox.recipe (a hash of the package list):
# an image built from another list (an older version) is rebuilt.
#
# Usage: scripts/build-sandbox-image.sh [--force] [IMAGE]
#   IMAGE    image name (default aos-sandbox:latest)
#   --force  rebuild even if IMAGE exists and is current
# Environment: AOS_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#   AOS_SANDBOX_PACKAGES (extra packages, comma-separated).
set -euo pipefail

image="aos-sandbox:latest"
force=0
for a in "$@"; do
    case "$a" in
        --force) force=1 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "build-sandbox-image: unknown option $a" >&2; exit 2 ;;
        *) image="$a" ;;
    esac
done
mirror="${AOS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The kernel reads this line (host/sandbox/src/docker.rs, `image_recipe`):
# keep it one line of comma-separated names in double quotes.
packages="bash,coreutils,findutils,grep,sed,gawk,procps,less,diffutils,patch,file,ca-certificates,curl,git,jq,python3,nodejs,make,unzip,xz-utils,bzip2,netbase,tini"
# What the image is built from: the kernel expects the same value on the
# image's aos.sandbox.recipe label, and this script rebuilds an image whose
# label differs (built by an older version, or the busybox fallback).
recipe="$(printf '%s' "$packages" | sha256sum | cut -c1-12)"
[ -n "${AOS_SANDBOX_PACKAGES:-}" ] && packages="$packages,$AOS_SANDBOX_PACKAGES"

say() { printf '==> [%4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'build-sandbox-image: error: %s\n' "$*" >&2; exit 1; }

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"

$SUDO docker info >/dev/null 2>&1 \
    || die "the Docker engine is not reachable; start it with scripts/setup-docker.sh (or \`dockerd &\`)"

if [ "$force" -eq 0 ] && $SUDO docker image inspect "$image" >/dev/null 2>&1; then
    have="$($SUDO docker image inspect --format '{{ index .Config.Labels "aos.sandbox.recipe" }}' "$image" 2>/dev/null || true)"
    if [ "$have" = "$recipe" ]; then
        say "image $image already exists and is current (recipe $recipe; pass --force to rebuild)"
        exit 0
    fi
    say "image $image was built from another package list (recipe '${have:-none}', this version wants $recipe): rebuilding it"
fi

work="$(mktemp -d "${TMPDIR:-/var/tmp}/aos-sandbox-rootfs.XXXXXX")"
cleanup() { $SUDO rm -rf --one-file-system "$work" 2>/dev/null || true; }
trap cleanup EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs"

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
        || { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}

kind=debian
if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap (apt-get)"
    apt_install debootstrap || true
fi
if command -v debootstrap >/dev/null 2>&1; then
    say "debootstrap --variant=minbase bookworm from $mirror (a few minutes)"
    # Each line of debootstrap's own progress is shown as it happens.
    if ! $SUDO debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" 2>&1 \
            | grep --line-buffered -v "^I: Validating" | sed -u "s/^/    /"; then
        say "debootstrap failed"
        kind=busybox
    fi
    [ -x "$rootfs/bin/bash" ] || kind=busybox
else
    kind=busybox
fi

if [ "$kind" = busybox ]; then
    cat >&2 <<'WARN'

    !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
    !!  debootstrap could not build a Debian root filesystem.                    !!
    !!  FALLING BACK TO A BUSYBOX-STATIC IMAGE: THERE IS NO BASH IN IT.          !!
    !!  EXEC_CMD will run commands with `sh -c` and busybox's applets only.      !!
    !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!

WARN
    $SUDO rm -rf --one-file-system "$rootfs"
    mkdir -p "$rootfs"
    static_busybox() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }
    static_busybox || { say "installing busybox-static (apt-get)"; apt_install busybox-static; }
    static_busybox || die "neither debootstrap nor busybox-static could be installed"
    mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,workspace,proc,sys,dev}
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
    done
fi

say "configuring the root filesystem"
# A non-root user for commands (the runtime picks the uid; 1000 is its default).
if ! grep -q '^sandbox:' "$rootfs/etc/passwd" 2>/dev/null; then
    echo 'sandbox:x:1000:1000:AgentOS sandbox:/tmp:/bin/sh' | $SUDO tee -a "$rootfs/etc/passwd" >/dev/null
    echo 'sandbox:x:1000:' | $SUDO tee -a "$rootfs/etc/group" >/dev/null
fi
$SUDO mkdir -p "$rootfs/workspace" "$rootfs/tmp"
$SUDO chmod 1777 "$rootfs/tmp"
# Smaller image: package caches and lists, docs.
$SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* 2>/dev/null || true
size="$($SUDO du -sh "$rootfs" 2>/dev/null | cut -f1)"

# The busybox fallback lacks most packages (and Node): not the current
# recipe, so the next run tries debootstrap again.
label_recipe="$recipe"
[ "$kind" = busybox ] && label_recipe=busybox

say "importing $size root filesystem as $image"
$SUDO tar --numeric-owner -C "$rootfs" -c . | $SUDO docker import \
    --change 'CMD ["sleep", "infinity"]' \
    --change 'WORKDIR /workspace' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/tmp' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL aos.sandbox=1 aos.sandbox.kind=$kind aos.sandbox.recipe=$label_recipe" \
    - "$image" >/dev/null

say "built $image ($kind root filesystem, $size) in ${SECONDS}s"
