#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs everything medimg needs to build, test and benchmark, from Debian's packages.
# Idempotent: when every package is already present it touches nothing and returns at once.
# Run as root (or with sudo available). Usage: bash scripts/install-deps.sh [--tests]
#   --tests  also what only the tests use: chromium, in which tests/programs/report.sh opens an
#            HTML report headless (that check is skipped, with a message, where it is absent)
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libeigen3-dev libxtensor-dev nlohmann-json3-dev libstb-dev libyaml-cpp-dev libjpeg62-turbo-dev zlib1g-dev
  libboost-test-dev libbenchmark-dev
  libgdcm-dev libnifti2-dev  # DICOM and NIfTI (medimg::dicom, medimg::nifti; docs/formats.md)
  libopenmpi-dev openmpi-bin  # data-parallel training over MPI (dist/; docs/distributed.md)
)
for arg in "$@"; do
  case "$arg" in
    --tests) packages+=(chromium) ;;
    *) echo "install-deps: unknown option '$arg' (only --tests)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
