#!/usr/bin/env bash
# Builds tests/containerd/suite_test.go in GOPATH mode against Debian's Go
# packages (/usr/share/gocode: containerd's sources and its test suite; no
# module is downloaded) and runs it as root against the ferryd at $1.
# Usage: tests/containerd/run_suite.sh FERRYD BUILD_DIR [go test flags...]
set -euo pipefail
ferryd=$(realpath "$1")
build=$(mkdir -p "$2" && realpath "$2")
shift 2
here=$(cd "$(dirname "$0")" && pwd)
if ((EUID != 0)); then
  # The suite mounts what the snapshotter returns: root only. In CI that
  # is a failure, elsewhere CTest reports the skip (77).
  [[ ${CI:-} == true ]] && { echo "run_suite.sh: needs root" >&2; exit 1; }
  echo "run_suite.sh: needs root; skipped" >&2
  exit 77
fi
source "$here/gopath.sh"
link_package ferrysuite "$here"
(cd "$gopath/src/ferrysuite" && go test -c -o "$build/containerd-suite.test" .)
# -test.root: the suite's tests that mount (all of them) run only as root.
cd "$build"
FERRYD=$ferryd exec "$build/containerd-suite.test" -test.root -test.v "$@"
