#!/usr/bin/env bash
# Installs what mq-dist needs to build, test and benchmark on Debian 12 (run as root, or with sudo).
set -euo pipefail
PACKAGES=(
    build-essential cmake pkg-config
    openmpi-bin libopenmpi-dev libhdf5-openmpi-dev
    libcjson-dev libcmocka-dev libssl-dev zlib1g-dev libxxhash-dev libisal-dev libopenblas-serial-dev liblapacke-dev
    python3-numpy python3-torch python3-h5py python3-xxhash
    clang libclang-rt-14-dev llvm
)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#PACKAGES[@]} Debian packages present"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
