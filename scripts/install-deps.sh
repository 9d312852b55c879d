#!/usr/bin/env bash
# Installs every Debian package ferry needs to build, test and benchmark.
# Safe to run again; does nothing that is already done. Needs root (or sudo).
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config
  libfuse3-dev fuse3 libzstd-dev libxxhash-dev liburing-dev librocksdb-dev
  libssl-dev libcurl4-openssl-dev libcli11-dev nlohmann-json3-dev
  libarchive-dev libspdlog-dev libfmt-dev catch2
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # tests: xattr tools, tar/zstd for fixtures, dpkg-dev for apt-get download
  attr zstd xz-utils dpkg-dev tar python3
  # fuzzing (libFuzzer comes with clang)
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
