#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (packages), builds ferry, and runs every
# test through CTest. Tests that mount FUSE need root and /dev/fuse; in CI
# (CI=true) they must run, and fail rather than skip.
# Usage: scripts/test.sh [ctest args...]     e.g. scripts/test.sh -R build_test
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd "${BUILD_DIR:-build}"
# FUSE mounts are serialized (RUN_SERIAL); unit tests run in parallel.
ctest --output-on-failure --timeout 1800 -j "$(nproc)" "$@"
