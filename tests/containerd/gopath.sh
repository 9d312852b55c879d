# Sourced by the scripts here: Go in GOPATH mode against Debian's Go
# packages (/usr/share/gocode: containerd's sources, its test suite and
# their dependencies), with no module downloaded. Expects $build (an
# absolute build directory); sets GOPATH, GO111MODULE, GOFLAGS, GOCACHE.
# link_package NAME DIR puts DIR at $GOPATH/src/NAME.
command -v go >/dev/null || { echo "${0##*/}: go is not installed (scripts/install-deps.sh)" >&2; exit 1; }
[[ -d /usr/share/gocode/src/github.com/containerd/containerd/snapshots/testsuite ]] ||
  { echo "${0##*/}: containerd's sources are missing (golang-github-containerd-containerd-dev)" >&2; exit 1; }
gopath=$build/containerd-gopath
mkdir -p "$gopath/src"
export GOPATH=$gopath:/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE=$build/containerd-gocache
link_package() { ln -sfn "$2" "$gopath/src/$1"; }
