#!/usr/bin/env bash
# Installs every Debian package ferry needs to build, test and benchmark.
# Safe to run again; does nothing that is already done. Needs root (or sudo).
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config
  libfuse3-dev fuse3 libzstd-dev libxxhash-dev liburing-dev librocksdb-dev
  libssl-dev libcurl4-openssl-dev libcli11-dev nlohmann-json3-dev
  libarchive-dev libspdlog-dev libfmt-dev catch2 libtinyxml2-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libelf-dev
  # containerd's snapshots API (.proto files) that ferryd serves
  golang-github-containerd-containerd-dev golang-github-gogo-protobuf-dev
  # tests: xattr tools, tar/zstd for fixtures, dpkg-dev for apt-get download
  attr zstd xz-utils dpkg-dev tar python3
  # tests of the s3:// store: the AWS CLI, openssl for a TLS certificate
  # (s3rver itself comes from npm, below)
  awscli openssl ca-certificates
  # tests of OCI import: images made by real OCI tools, a local registry
  umoci skopeo docker-registry
  # containerd's snapshotter test suite (Go, test only) and containerd itself
  golang-go containerd runc
  # fuzzing (libFuzzer comes with clang)
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm run s3rver; a node from elsewhere that brings its own npm will do.
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# s3rver, the S3-compatible server the s3:// tests run on loopback, at the
# version pinned in tests/s3/package-lock.json. npm writes
# node_modules/.package-lock.json on install: newer than the lock file means
# the pinned versions are in place.
s3dir="$(cd "$(dirname "$0")/.." && pwd)/tests/s3"
if [ "$s3dir/node_modules/.package-lock.json" -nt "$s3dir/package-lock.json" ]; then
  echo "install-deps: s3rver present"
else
  echo "install-deps: npm ci in tests/s3"
  npm ci --prefix "$s3dir" --no-audit --no-fund --loglevel=error
fi
