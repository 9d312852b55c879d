#!/usr/bin/env bash
# containerd cold start: from "pull" to the container's python3 imports
# finishing, on the Debian+python3 image in a local registry behind an
# emulated link, in one run:
#   (a) containerd with its overlayfs snapshotter: pull (every layer),
#       unpack, run;
#   (b) containerd with ferryd's snapshotter: the image's layers are ferry
#       images (built once from the registry, untimed) read lazily from an
#       s3:// store behind the same emulated link;
#   (c) the same with a start-up profile recorded (untimed, once).
# Run as root.  See --help.
set -euo pipefail
export LC_ALL=C

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CMDLINE=$(typed_command "$0" "$@")

SETTING=20ms/100MB
BUCKET=ferry-containerd

usage() {
  cat <<'EOF'
Usage: sudo bench/containerd.sh [options]

Time from the start of a pull to the exit of
  python3 -c 'import json, sqlite3, asyncio, email, http.client'
run by containerd 1.6 with runc in a container of the Debian 12 minbase +
python3 image, pulled from a docker-registry on loopback through a front
that emulates a link (tests/oci/registry_front.py: latency per request,
then bandwidth on one shared link). Each run starts from nothing: a fresh
containerd root, page cache dropped, and for ferry a fresh ferryd root with
an empty node cache.
  (a) overlayfs  containerd's own snapshotter: the pull fetches the layer,
                 unpacks it, then the container runs;
  (b) ferry      ferryd's snapshotter (--containerd-store): the pull fetches
                 the manifest and config only, the layer is the ferry image
                 `ferry build docker://...` made from the same registry
                 (untimed), read lazily from s3rver through ferry's fault+
                 store with the same latency and bandwidth;
  (c) profile    the same with a start-up profile of the workload recorded
                 once beforehand (untimed).
Targets: (b) at least 5x faster than (a), (c) at least 10x; bytes ferry
fetched at most 1.5x the bytes of the files the workload opens (strace on
the native root filesystem).

Options:
  --workdir DIR     work directory (default /var/tmp/ferry-bench; the root
                    filesystem is shared with bench/run.sh and coldstart.sh)
  --runs N          runs per method, medians reported (default 3)
  --setting L/B     link latency and bandwidth (default 20ms/100MB)
  --cache-size S    ferryd --cache-size (default 4G)
  --timeout SEC     per item (default 300)
  --mirror URL      Debian mirror for the root filesystem
  --rebuild-rootfs  remake the root filesystem
  -h, --help        this help

Needs containerd, ctr, runc, docker-registry, skopeo, umoci, go, node and
s3rver (scripts/install-deps.sh). Writes WORKDIR/containerd.md.
EOF
}

while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --workdir|--workdir=*) take_opt WORKDIR "$@"; shift "$OPT_SHIFT" ;;
    --runs|--runs=*) take_opt RUNS "$@"; shift "$OPT_SHIFT" ;;
    --setting|--setting=*) take_opt SETTING "$@"; shift "$OPT_SHIFT" ;;
    --cache-size|--cache-size=*) take_opt CACHE_SIZE "$@"; shift "$OPT_SHIFT" ;;
    --timeout|--timeout=*) take_opt ITEM_TIMEOUT "$@"; shift "$OPT_SHIFT" ;;
    --mirror|--mirror=*) take_opt MIRROR "$@"; shift "$OPT_SHIFT" ;;
    --rebuild-rootfs) REBUILD_ROOTFS=1; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $ITEM_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer"
parse_link_setting "$SETTING"
[[ $WORKDIR == /* ]] || WORKDIR=$PWD/$WORKDIR
((EUID == 0)) || die "must be run as root (containerd, FUSE, drop_caches)"

install_missing debootstrap=debootstrap strace=strace curl=curl node=nodejs containerd=containerd runc=runc \
  docker-registry=docker-registry skopeo=skopeo umoci=umoci go=golang-go
check_host_and_binaries
lock_workdir
CD=$WORKDIR/containerd
LOGS=$CD/logs
RUN_LOG=$LOGS/run.log
ROOTFS=$WORKDIR/rootfs
FERRYD_LOG=$LOGS/ferryd.log
S3_DATA=$CD/s3rver-data
S3_LOG=$LOGS/s3rver.log
S3_PIDFILE=$CD/s3rver.pid
STATS_FILE=$CD/stats.json
FERRYD_ROOT=$CD/ferryd
REG_PID="" FRONT_PID="" CTRD_PID=""
stop_leftovers "$CD" "--root $CD/ferryd |--directory $S3_DATA "
pkill -f "containerd --config $CD/" 2>/dev/null || true
pkill -f "docker-registry serve $CD/" 2>/dev/null || true
umount_below "$CD"
rm -rf "$CD"
mkdir -p "$LOGS" "$CD/bin"
: >"$RUN_LOG"
: >"$FERRYD_LOG"
use_s3rver_credentials
FERRY_SRC=$FERRY FERRYD_SRC=$FERRYD
FERRY=$CD/bin/ferry FERRYD=$CD/bin/ferryd
snapshot_ferry "$FERRY_SRC" "$FERRY"
snapshot_bin "$FERRYD_SRC" "$FERRYD"

stop_containerd() {
  [[ -n $CTRD_PID ]] || return 0
  ctr -a "$CTRD_SOCK" tasks kill -s SIGKILL bench >/dev/null 2>&1 || true
  ctr -a "$CTRD_SOCK" tasks rm bench >/dev/null 2>&1 || true
  ctr -a "$CTRD_SOCK" containers rm bench >/dev/null 2>&1 || true
  stop_pid "$CTRD_PID" containerd
  CTRD_PID=""
  umount_below "$CD/ctrd"
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_containerd 2>/dev/null || true
  stop_launched_ferryd "$CD/ferryd.pid" "$FERRYD_ROOT" 2>/dev/null || true
  [[ -z $FRONT_PID ]] || stop_pid "$FRONT_PID" front
  [[ -z $REG_PID ]] || stop_pid "$REG_PID" docker-registry
  stop_s3rver 2>/dev/null || true
  umount_below "$CD"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------ the image ---
make_rootfs
workload() { # root: the workload chrooted, as coldstart.sh runs it
  timeout -k 5 "$ITEM_TIMEOUT" env -i PATH="$WORKLOAD_PATH" PYTHONDONTWRITEBYTECODE=1 \
    "$CHROOT" "$1" python3 -c "$PY_IMPORTS" >>"$LOGS/workload.log" 2>&1
}
log "measuring the files the workload opens (strace on the native root filesystem)"
measure_opened "$ROOTFS"
log "  opened: $OPEN_N regular files, $(mb "$OPEN_BYTES") MB; executed: $EXEC_N, $(mb "$EXEC_BYTES") MB"

log "making the OCI image (umoci) and starting docker-registry"
LAYOUT=$CD/oci
{
  umoci init --layout "$LAYOUT" && umoci new --image "$LAYOUT:py" &&
    umoci unpack --image "$LAYOUT:py" "$CD/bundle" >/dev/null && cp -a "$ROOTFS/." "$CD/bundle/rootfs/" &&
    umoci repack --image "$LAYOUT:py" "$CD/bundle"
} >>"$LOGS/umoci.log" 2>&1 || die "making the OCI image failed (see $LOGS/umoci.log)"
rm -rf "$CD/bundle"
free_port() { "$HOST_PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
REG_PORT=$(free_port)
printf 'version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$CD/registry" "$REG_PORT" >"$CD/registry.yml"
setsid docker-registry serve "$CD/registry.yml" </dev/null >"$LOGS/registry.log" 2>&1 &
REG_PID=$!
for ((i = 0; i < 100; i++)); do curl -s -o /dev/null "http://127.0.0.1:$REG_PORT/v2/" && break; sleep 0.1; done
skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:py" "docker://127.0.0.1:$REG_PORT/bench/py:1" \
  >>"$LOGS/skopeo.log" 2>&1 || die "skopeo push failed (see $LOGS/skopeo.log)"
LAYER_BYTES=$(find "$CD/registry" -path '*/blobs/*' -name data -size +1M -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
# The front that containerd pulls through: the emulated link.
setsid "$HOST_PY" "$REPO_ROOT/tests/oci/registry_front.py" "$REG_PORT" --latency "$LINK_LAT_S" \
  --bandwidth "$LINK_BPS" </dev/null >"$LOGS/front.out" 2>&1 &
FRONT_PID=$!
for ((i = 0; i < 100; i++)); do grep -q '^listening on' "$LOGS/front.out" && break; sleep 0.1; done
FRONT_PORT=$(sed -n 's/^listening on //p' "$LOGS/front.out")
[[ -n $FRONT_PORT ]] || die "registry_front.py did not start (see $LOGS/front.out)"
REF=127.0.0.1:$FRONT_PORT/bench/py:1

log "building the ferry image from the registry (untimed) and serving the store from s3rver"
STORE_DIR=$CD/store
"$FERRY" --store "file://$STORE_DIR" build "docker://127.0.0.1:$REG_PORT/bench/py:1" --tag py -q \
  >"$LOGS/ferry-build.out" 2>"$LOGS/ferry-build.log" || die "ferry build docker:// failed (see $LOGS/ferry-build.log)"
start_s3rver
PLAIN_URL="s3://$BUCKET/store?endpoint=$ENDPOINT&region=us-east-1&path_style=1"
read -r OBJS OBJ_BYTES < <(copy_store_to_s3 "$STORE_DIR" store)
FAULT_URL="fault+$PLAIN_URL?latency=${SETTING%%/*}&bandwidth=${SETTING#*/}&seed=1"
log "  store: $OBJS objects, $(mb "$OBJ_BYTES") MB"

log "building containerd-pull (containerd's client Pull with unpack, as CRI pulls)"
PULL_TOOL=$("$REPO_ROOT/tests/containerd/build_pull.sh" "$CD/go" 2>>"$LOGS/go.log") ||
  die "building containerd-pull failed (see $LOGS/go.log)"

CTRD_SOCK=$CD/ctrd/containerd.sock
SNAP_SOCK=$CD/ferry-snapshots.sock
start_containerd() { # fresh root every time
  umount_below "$CD/ctrd"
  rm -rf "$CD/ctrd"
  mkdir -p "$CD/ctrd"
  printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\n[grpc]\n  address = "%s"\n[proxy_plugins]\n  [proxy_plugins.ferry]\n    type = "snapshot"\n    address = "%s"\n' \
    "$CD/ctrd" "$CD/ctrd" "$CTRD_SOCK" "$SNAP_SOCK" >"$CD/ctrd/config.toml"
  setsid containerd --config "$CD/ctrd/config.toml" </dev/null >>"$LOGS/containerd.log" 2>&1 &
  CTRD_PID=$!
  for ((i = 0; i < 200; i++)); do ctr -a "$CTRD_SOCK" version >/dev/null 2>&1 && return 0; sleep 0.05; done
  die "containerd did not start (see $LOGS/containerd.log)"
}
start_ferryd() {
  umount_below "$FERRYD_ROOT"
  rm -rf "$FERRYD_ROOT"
  launch_ferryd --root "$FERRYD_ROOT" --cache-size "$CACHE_SIZE" --containerd-socket "$SNAP_SOCK" \
    --containerd-store "$FAULT_URL"
  echo "$FERRYD_PID" >"$CD/ferryd.pid"
}

declare -A RES=()
add() { RES[$1|$2]="${RES[$1|$2]:-} $3"; }
med() { median ${RES[$1|$2]:-}; }

one_run() { # method snapshotter run
  local m=$1 sn=$2 r=$3 t0 t1 t2 out stats
  [[ $sn == ferry ]] && start_ferryd
  start_containerd
  drop_caches
  t0=$(now)
  if ! timeout -k 5 "$ITEM_TIMEOUT" "$PULL_TOOL" "$CTRD_SOCK" "$REF" "$sn" >>"$LOGS/pull.log" 2>&1; then
    log "  ($m) run $r: the pull failed (see $LOGS/pull.log)"; add "$m" total err
  else
    t1=$(now)
    # Not --rm: removing the container after it exits is not part of the
    # start (the containerd root goes with the run anyway).
    out=$(timeout -k 5 "$ITEM_TIMEOUT" ctr -a "$CTRD_SOCK" run --snapshotter "$sn" "$REF" bench \
      env -i PATH="$WORKLOAD_PATH" PYTHONDONTWRITEBYTECODE=1 python3 -c "$PY_IMPORTS; print('imports ok')" 2>&1) || true
    t2=$(now)
    if [[ $out == *"imports ok"* ]]; then
      add "$m" total "$(secs "$t0" "$t2")"; add "$m" pull "$(secs "$t0" "$t1")"; add "$m" run "$(secs "$t1" "$t2")"
    else
      log "  ($m) run $r: the container failed: $out"; add "$m" total err
    fi
  fi
  if [[ $sn == ferry ]]; then
    stats=$(settled_stats) || stats=""
    add "$m" fetched "$(awk '{ print $1 }' <<<"$stats")"
    add "$m" profile "$(awk '{ print $5 }' <<<"$stats")"
  fi
  stop_containerd
  [[ $sn == ferry ]] && stop_launched_ferryd "$CD/ferryd.pid" "$FERRYD_ROOT"
  printf '%s run %s: total %s\n' "$m" "$r" "${RES[$m|total]##* }" >>"$LOGS/samples.txt"
  return 0
}

START=$(now)
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
for ((r = 1; r <= RUNS; r++)); do
  log "run $r of $RUNS: (a) overlayfs, (b) ferry"
  one_run a overlayfs "$r"
  one_run b ferry "$r"
done
log "recording a start-up profile of the workload (untimed)"
timeout -k 5 "$ITEM_TIMEOUT" env -i PATH="$WORKLOAD_PATH" PYTHONDONTWRITEBYTECODE=1 \
  "$FERRY" --store "$PLAIN_URL" profile record py -- python3 -c "$PY_IMPORTS" \
  >>"$LOGS/ferry-profile.log" 2>&1 || die "ferry profile record failed (see $LOGS/ferry-profile.log)"
for ((r = 1; r <= RUNS; r++)); do
  log "run $r of $RUNS: (c) ferry with the profile"
  one_run c ferry "$r"
done
TOTAL_S=$(secs "$START" "$(now)")

# ---------------------------------------------------------------- table ---
isnum() { [[ $1 =~ ^[0-9.]+$ ]]; }
speedup() { isnum "$1" && isnum "$2" && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }' || echo n/a; }
verdict() { isnum "$1" && awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= l : v <= l; print ok ? "PASS" : "FAIL" }' || echo n/a; }
A=$(med a total) B=$(med b total) C=$(med c total)
SB=$(speedup "$A" "$B") SC=$(speedup "$A" "$C")
FB=$(med b fetched) FC=$(med c fetched)
RB=$(isnum "$FB" && awk -v f="$FB" -v o="$ALL_BYTES" 'BEGIN { printf "%.2f", f / o }' || echo n/a)
RC=$(isnum "$FC" && awk -v f="$FC" -v o="$ALL_BYTES" 'BEGIN { printf "%.2f", f / o }' || echo n/a)
sec() { isnum "$1" && printf '%.2f s' "$1" || echo "${1:-n/a}"; }
{
  echo "## containerd cold start — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Command (as root, in $CMD_CWD): \`$CMDLINE\`"
  echo
  echo "Image: Debian 12 minbase + python3, one layer of $(mb "$LAYER_BYTES") MB (gzip) in docker-registry behind an emulated link of $LINK_LABEL; workload \`python3 -c '$PY_IMPORTS'\` in a runc container; it opens $(mb "$ALL_BYTES") MB of files. containerd $(containerd --version | awk '{ print $3 }'), runc $(runc --version | awk 'NR == 1 { print $3 }'). Host: $(nproc) cores, load $LOAD_START at start, $(cut -d' ' -f1 /proc/loadavg) at end. Runs: $RUNS (medians)."
  echo
  echo "| method | pull → python3 done | speed-up vs (a) | pull | run | fetched | fetched / opened | target | result |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---|"
  echo "| (a) containerd + overlayfs (pull, unpack, run) | $(sec "$A") | 1.0 | $(sec "$(med a pull)") | $(sec "$(med a run)") | $(mb "$LAYER_BYTES") MB | – | – | – |"
  echo "| (b) containerd + ferry, lazy | $(sec "$B") | ${SB}x | $(sec "$(med b pull)") | $(sec "$(med b run)") | $(isnum "$FB" && mb "$FB" || echo n/a) MB | ${RB}x | ≥ 5x, ≤ 1.5x | $(verdict "$SB" ">=" 5) $(verdict "$RB" "<=" 1.5) |"
  echo "| (c) containerd + ferry + start-up profile | $(sec "$C") | ${SC}x | $(sec "$(med c pull)") | $(sec "$(med c run)") | $(isnum "$FC" && mb "$FC" || echo n/a) MB | ${RC}x | ≥ 10x, ≤ 1.5x | $(verdict "$SC" ">=" 10) $(verdict "$RC" "<=" 1.5) |"
  echo
  echo "- pull: \`containerd-pull\` (tests/containerd/pull: containerd's client.Pull with unpack into the snapshotter, as CRI pulls); run: \`ctr run --snapshotter S\` of the workload until ctr exits (removing the container is not timed). A fresh containerd root, and for ferry a fresh ferryd root and node cache, every run; page cache dropped before each."
  echo "- fetched: (a) the layer blob; (b), (c) store_bytes of \`ferry cache stats\` once its counters settle (compressed chunks, the profile's start-up pack included). opened: the files the workload opens and executes (strace on the native root)."
  echo "- ferry's image was built untimed by \`ferry build docker://\` from the same registry (not through the emulated link), its store served by s3rver through \`fault+\` at the same latency and bandwidth."
  echo
  echo "Total benchmark wall time: $(printf '%.0f' "$TOTAL_S") s."
} >"$WORKDIR/containerd.md"
cat "$WORKDIR/containerd.md"
log "results written to $WORKDIR/containerd.md (logs: $LOGS)"
