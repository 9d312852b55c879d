#!/usr/bin/env bash
# Builds tests/containerd/pull (containerd-pull, test-only) into BUILD_DIR
# and prints its path. Usage: tests/containerd/build_pull.sh BUILD_DIR
set -euo pipefail
build=$(mkdir -p "$1" && realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/gopath.sh"
link_package containerdpull "$here/pull"
(cd "$gopath/src/containerdpull" && go build -o "$build/containerd-pull" .)
echo "$build/containerd-pull"
