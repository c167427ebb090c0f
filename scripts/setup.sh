#!/usr/bin/env bash
# Installs what fkp-batch needs on Debian (apt packages) and builds the release binary.
# Needs root or sudo for apt-get. Swift 6 must be on PATH (https://swift.org/install).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PACKAGES=(libpng-dev libturbojpeg0-dev opencv-data pkg-config ocl-icd-libopencl1 opencl-headers pocl-opencl-icd clinfo)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (install Swift 6 first)" >&2; exit 2; }
swift build -c release >&2
echo "setup: built $(pwd)/.build/release/fkp-batch" >&2
