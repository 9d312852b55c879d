#!/usr/bin/env bash
# ferry snapshot benchmark (issue 18): snapshot a writable mount of the
# Debian 12 + python3 root filesystem after a pip-sized change and after a
# 1-file change, against tar|zstd of the overlay's upper directory and a
# full 'ferry build' of the merged tree; then resume the snapshot on a cold
# second host (S3 store behind the link emulation of bench/coldstart.sh)
# against pulling and extracting a tarball of it. Run as root. See --help.
set -euo pipefail
export LC_ALL=C

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CMDLINE=$(typed_command "$0" "$@")

SETTING=20ms/100MB
NO_FREEZE=0
PROFILE=1
BUCKET=ferry-snapshot
BASE_TAG=snapbench-base
# The pip-sized change: these package trees of the root filesystem's
# /usr/lib/python3.11 (with their __pycache__/*.pyc) and its largest
# extension modules, installed as one package.
PIP_PKGS="email json asyncio http xml logging concurrent urllib unittest importlib"
PIP_NATIVE=4
PIP_DEST=/usr/local/lib/python3.11/dist-packages/benchpkg
ONE_FILE=/etc/login.defs

usage() {
  cat <<EOF
Usage: sudo bench/snapshot.sh [options]

'ferry snapshot' of a writable mount ('ferry mount IMAGE DIR --writable')
of the Debian 12 (bookworm, minbase + python3) root filesystem, the image
in a file:// store, in one run:

 1. pip-sized change: a package of about 7 MB (the trees $PIP_PKGS
    of /usr/lib/python3.11 with their .pyc files, and the $PIP_NATIVE
    largest lib-dynload/*.so) copied to $PIP_DEST
 2. 1-file change: $ONE_FILE rewritten (sed -i: one setting changed,
    one line added)

For each, three ways to save the change, timed and sized:
  ferry       'ferry snapshot DIR --tag T --json' (wall time of the command);
              bytes written: the JSON written_bytes (compressed chunk data)
              and the growth of the store directory (du -sb: chunk packs
              plus the new image's metadata and ref)
  tar|zstd    'tar -C UPPER -c . | zstd -3 > OUT', OUT fsynced, UPPER the
              overlay's upper directory (from ferryd's ROOT/mounts.json):
              what a platform without ferry ships; its size is "the changed
              bytes, compressed" of the 1.2x target
  full build  'ferry build DIR' of the live merged tree into a fresh store
Each run makes a fresh writable mount. The content installed differs from
run to run and from everything in the base image (every byte of the copied
files is rotated by the run number: same compressibility, no chunk shared
with the base or an earlier run), so nothing is deduplicated that a real
pip install would not have. Page cache not dropped (the sandbox has just
written the files); 'sync' before each timed step.
With a cgroup v2 hierarchy (and without --no-freeze), the 1-file case is
also snapshotted with --freeze on a cgroup holding a sleeping process.

 3. resume on a cold second host: the store of 1-2 is copied to s3rver
    (every object, same keys); a second ferryd with an empty root and node
    cache; page cache dropped; the store read through ferry's fault+ link
    emulation (default $SETTING, as bench/coldstart.sh):
      ferry  'ferry mount SNAP DIR --writable', then chroot DIR python3 -c
             '$PY_IMPORTS' (SNAP: the pip snapshot of run 1),
             timed from the mount's start to the workload's exit
      pull   one GET of a zstd tarball of SNAP's merged tree ('ferry export'
             | zstd -3) through the same emulation (sleep LATENCY +
             BYTES/BANDWIDTH, then the GET from s3rver), extract, the same
             workload
    and in both the installed package is checked (every file, sha256).
    The base image has a start-up profile of that workload, recorded once
    ('ferry profile record', untimed), as a platform does for the images
    its sandboxes start from; SNAP inherits it from its base (the part
    whose chunks it kept: docs/daemon.md, "Snapshots"). An extra row
    resumes again with SNAP's profile removed (lazy loading alone).
    --no-profile records no profile: the target row then has none.

Targets: a 1-file snapshot in < 100 ms (wall); bytes written <= 1.2x the
tar|zstd of the upper directory (checked for both byte figures); resume
>= 5x faster than the pull. The table goes to WORKDIR/snapshot.md.

Options:
  --workdir DIR       work directory (default: $WORKDIR); its rootfs/ and
                      rootfs.tar.gz (bench/run.sh, bench/coldstart.sh) are
                      reused, made with debootstrap if missing; this
                      script's files go to DIR/snapshot/
  --runs N            timed runs per item (default: $RUNS; medians)
  --setting L/B       emulated store latency/bandwidth of step 3 (default:
                      $SETTING)
  --cache-size SIZE   ferryd --cache-size (default: $CACHE_SIZE)
  --timeout SECS      limit for one timed step (default: $ITEM_TIMEOUT)
  --no-freeze         skip the --freeze row
  --no-profile        no start-up profile for the base (nor the snapshot)
  --mirror URL        Debian mirror, only if the root filesystem must be made
  --rebuild-rootfs    remake the root filesystem even if cached
  -h, --help          show this help

Environment: FERRY, FERRYD (default: <repo>/build/ferry, ferryd beside it;
copied into DIR/snapshot/bin/ at the start). Needs node and s3rver in
tests/s3/node_modules (scripts/install-deps.sh); installs curl, zstd and
debootstrap with apt-get if missing. MB = 10^6 bytes.
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
    --no-freeze) NO_FREEZE=1; shift ;;
    --no-profile) PROFILE=0; shift ;;
    --mirror|--mirror=*) take_opt MIRROR "$@"; shift "$OPT_SHIFT" ;;
    --rebuild-rootfs) REBUILD_ROOTFS=1; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
# The run number is the byte rotation that makes each run's content new.
((RUNS <= 255)) || die "--runs must be at most 255"
[[ $ITEM_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer"
[[ $CACHE_SIZE =~ ^[0-9]+[KMGT]?$ ]] || die "--cache-size must look like 4G or 512M"
parse_link_setting "$SETTING"
LAT_S=$LINK_LAT_S BPS=$LINK_BPS SET_LABEL=$LINK_LABEL
[[ $WORKDIR == /* ]] || WORKDIR=$PWD/$WORKDIR
[[ $WORKDIR =~ ^[A-Za-z0-9/._+-]+$ ]] || die "--workdir must not contain spaces or special characters"
((EUID == 0)) || die "must be run as root (FUSE and overlay mounts, chroot, drop_caches)"

# ---------------------------------------------------------------- tools ---
install_missing debootstrap=debootstrap curl=curl zstd=zstd node=nodejs python3=python3 fusermount3=fuse3
check_host_and_binaries

# -------------------------------------------------------------- workdir ---
lock_workdir
SN=$WORKDIR/snapshot
LOGS=$SN/logs
ROOTFS=$WORKDIR/rootfs
MNT=$SN/mnt            # writable mounts: MNT/pip-R, MNT/one-R, MNT/resume
STORE_DIR=$SN/store    # the file:// store of steps 1-2
STORE_URL=file://$STORE_DIR
PEER=$SN/peer          # tar|zstd outputs, full-build stores, the tarball
STAGE=$SN/stage        # the pip-sized package of each run, made beforehand
PULL=$SN/pull
FERRYD_A=$SN/ferryd-a  # the first host
FERRYD_B=$SN/ferryd-b  # the cold second host
FERRYD_ROOT=""
FERRYD_LOG=$LOGS/ferryd.log
S3_DATA=$SN/s3rver-data
S3_LOG=$LOGS/s3rver.log
S3_PIDFILE=$SN/s3rver.pid
FREEZE_CG="" FREEZE_PID=""

use_s3rver_credentials

# ------------------------------------------------------------- ferryd ---
start_ferryd() { # root label: a fresh, empty root (node cache) every time
  umount_below "$1"
  rm -rf "$1"
  mkdir -p "$1"
  FERRYD_ROOT=$1
  printf '=== snapshot %s: %s\n' "$(date +%H:%M:%S)" "$2" >>"$FERRYD_LOG"
  launch_ferryd --root "$1" --cache-size "$CACHE_SIZE"
  echo "$FERRYD_PID" >"$SN/ferryd.pid"
}
stop_ferryd() { stop_launched_ferryd "$SN/ferryd.pid" "$FERRYD_ROOT"; }
# Unmounting a writable target through ferryd also discards its upper
# directory: nothing is kept for a later ferryd.
ferry_umount() { # dir
  local i
  is_mounted "$1" || return 0
  timeout -k 5 60 "$FERRY" umount "$1" --daemon "$FERRYD_ROOT" >>"$LOGS/ferry-mount.log" 2>&1 ||
    log "warning: 'ferry umount $1' failed (see $LOGS/ferry-mount.log)"
  for ((i = 0; i < 50; i++)); do is_mounted "$1" || return 0; sleep 0.1; done
  log "warning: $1 still mounted; lazy unmount"
  fuse_abort "$1"
  umount -l "$1" 2>/dev/null || true
}
ferry_mount() { # store-url image dir
  mkdir -p "$3"
  timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "$1" mount "$2" "$3" --writable --daemon "$FERRYD_ROOT" \
    >>"$LOGS/ferry-mount.log" 2>&1
}

stop_freeze_cgroup() {
  [[ -n $FREEZE_PID ]] && { kill "$FREEZE_PID" 2>/dev/null || true; wait "$FREEZE_PID" 2>/dev/null || true; }
  FREEZE_PID=""
  if [[ -n $FREEZE_CG && -d $FREEZE_CG ]]; then
    echo 0 >"$FREEZE_CG/cgroup.freeze" 2>/dev/null || true
    rmdir "$FREEZE_CG" 2>/dev/null || log "warning: could not remove cgroup $FREEZE_CG"
  fi
  FREEZE_CG=""
}

cleanup() {
  local rc=$? m
  trap - EXIT INT TERM
  stop_freeze_cgroup
  if [[ -n $FERRYD_PID ]] && proc_alive "$FERRYD_PID"; then
    for m in "$MNT"/*; do ferry_umount "$m" 2>/dev/null || true; done
  fi
  stop_ferryd 2>/dev/null || true
  umount_below "$MNT"
  umount_below "$FERRYD_A"
  umount_below "$FERRYD_B"
  stop_s3rver 2>/dev/null || true
  rm -rf "$PULL" "$PEER" 2>/dev/null || true
  # The stores, node caches and s3rver's copy (about 700 MB) are not kept;
  # the logs and the table are. A directory with a mount still below it is
  # left alone.
  local d
  for d in "$STORE_DIR" "$STAGE" "$S3_DATA" "$FERRYD_A" "$FERRYD_B"; do
    if ! awk -v p="$d" 'index($5, p "/") == 1 || $5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo; then
      rm -rf "$d" 2>/dev/null || true
    fi
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Leftovers of an earlier run that was killed hard.
stop_leftovers "$SN" "--root $SN/ferryd-[ab] |--directory $S3_DATA "
umount_below "$MNT"
umount_below "$FERRYD_A"
umount_below "$FERRYD_B"
rm -rf "$MNT" "$STORE_DIR" "$PEER" "$STAGE" "$PULL" "$FERRYD_A" "$FERRYD_B" "$S3_DATA"
mkdir -p "$SN/bin" "$LOGS" "$MNT" "$PEER" "$STAGE"
RUN_LOG=$LOGS/run.log
: >"$RUN_LOG"
for f in ferry-mount.log ferry-snapshot.log ferry-build.log ferryd.log s3rver.log samples.txt workload.log pull.log; do
  : >"$LOGS/$f"
done

FERRY_SRC=$FERRY FERRYD_SRC=$FERRYD
FERRY=$SN/bin/ferry FERRYD=$SN/bin/ferryd
snapshot_ferry "$FERRY_SRC" "$FERRY"
snapshot_bin "$FERRYD_SRC" "$FERRYD"

make_rootfs
[[ -f $ROOTFS$ONE_FILE ]] || die "$ROOTFS$ONE_FILE missing: the 1-file change needs it"

START=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)

declare -A RES=()   # RES[item|field] = space-separated samples
add() { RES[$1|$2]="${RES[$1|$2]:-} $3"; }
med() { median ${RES[$1|$2]:-}; }
sample() { printf '%s\n' "$*" >>"$LOGS/samples.txt"; }
store_bytes() { du -sb "$1" | cut -f1; }
# Fields of a JSON object on stdin, space-separated (missing: 0).
json_fields() {
  "$HOST_PY" -c '
import json, sys
j = json.loads(sys.stdin.read())
print(" ".join(str(j.get(k, 0)) for k in sys.argv[1:]))' "$@"
}
# "FILES BYTES" of the regular files below $1.
tree_size() { find "$1" -type f -printf '%s\n' | awk '{ n++; s += $1 } END { printf "%d %.0f\n", n, s }'; }
# sha256 of every regular file below $1, by relative path (the check that a
# resumed root holds the change).
tree_sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum); }

workload() { # root
  timeout -k 5 "$ITEM_TIMEOUT" env -i PATH="$WORKLOAD_PATH" PYTHONDONTWRITEBYTECODE=1 \
    "$CHROOT" "$1" python3 -c "$PY_IMPORTS" >>"$LOGS/workload.log" 2>&1
}

# The pip-sized package of run $1 in $2: real trees and binaries of the
# root filesystem with every byte rotated by $1 (b -> b + $1 mod 256: a
# bijection, so the same compressibility; no chunk shared with the base).
make_package() { # run dst
  local k=$1 dst=$2 p natives
  rm -rf "$dst"
  mkdir -p "$dst/_native"
  for p in $PIP_PKGS; do
    [[ -d $ROOTFS/usr/lib/python3.11/$p ]] || die "$ROOTFS/usr/lib/python3.11/$p missing"
    cp -a "$ROOTFS/usr/lib/python3.11/$p" "$dst/"
  done
  # shellcheck disable=SC2012
  mapfile -t natives < <(ls -S "$ROOTFS"/usr/lib/python3.11/lib-dynload/*.so)
  ((${#natives[@]} >= PIP_NATIVE)) || die "fewer than $PIP_NATIVE extension modules in $ROOTFS/usr/lib/python3.11/lib-dynload"
  cp -a "${natives[@]:0:PIP_NATIVE}" "$dst/_native/"
  "$HOST_PY" - "$dst" "$k" <<'PY' || die "could not make the package in $dst"
import os, sys
top, k = sys.argv[1], int(sys.argv[2])
table = bytes((b + k) % 256 for b in range(256))
for d, _, files in os.walk(top):
    for name in files:
        p = os.path.join(d, name)
        with open(p, "rb") as f:
            data = f.read()
        with open(p, "wb") as f:  # in place: mode and owner stay
            f.write(data.translate(table))
PY
}

# ------------------------------------------------------- base image ---
log "building the base image into $STORE_URL"
t0=$(now)
timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "$STORE_URL" build "$ROOTFS" --tag "$BASE_TAG" -q \
  >"$LOGS/ferry-build-base.out" 2>>"$LOGS/ferry-build.log" || { tail -n 20 "$LOGS/ferry-build.log" >&8; die "ferry build of $ROOTFS failed"; }
BASE_BUILD_S=$(secs "$t0" "$(now)")
BASE_ID=$(grep -Eo '^[0-9a-f]{64}$' "$LOGS/ferry-build-base.out" | tail -n 1) || true
BASE_STORE_BYTES=$(store_bytes "$STORE_DIR")
ROOTFS_BYTES=$(find "$ROOTFS" -xdev -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }')
log "  base ${BASE_ID:0:12}: $(mb "$ROOTFS_BYTES") MB of files, store $(mb "$BASE_STORE_BYTES") MB, built in $(printf '%.1f' "$BASE_BUILD_S") s"

# A platform records the start-up of the images its sandboxes start from;
# a snapshot inherits what of it the sandbox left in place.
BASE_PROFILE=0
if ((PROFILE)); then
  log "recording a start-up profile of $BASE_TAG (untimed)"
  if timeout -k 5 "$ITEM_TIMEOUT" env -i PATH="$WORKLOAD_PATH" PYTHONDONTWRITEBYTECODE=1 \
       "$FERRY" --store "$STORE_URL" profile record "$BASE_TAG" -- python3 -c "$PY_IMPORTS" \
       >>"$LOGS/ferry-profile.log" 2>&1; then
    BASE_PROFILE=1
  else
    log "  ferry profile record failed (see $LOGS/ferry-profile.log): no profile"
  fi
fi

start_ferryd "$FERRYD_A" "first host"

FREEZE_OK=0 FREEZE_NOTE=""
if ((!NO_FREEZE)); then
  CG2=$(cgroup2_root)
  if [[ -z $CG2 ]]; then
    FREEZE_NOTE="no cgroup v2 hierarchy mounted"
  else
    FREEZE_CG=$CG2/ferry-bench-snapshot-$$
    if mkdir "$FREEZE_CG" 2>>"$LOGS/freeze.log" && [[ -e $FREEZE_CG/cgroup.freeze ]]; then
      # The process joins the cgroup itself before it sleeps: it is in it
      # once its pid is listed there.
      bash -c 'echo $$ >"$1/cgroup.procs" && exec sleep 3600' _ "$FREEZE_CG" </dev/null >>"$LOGS/freeze.log" 2>&1 &
      FREEZE_PID=$!
      for ((i = 0; i < 100; i++)); do grep -qx "$FREEZE_PID" "$FREEZE_CG/cgroup.procs" && break; sleep 0.05; done
      if grep -qx "$FREEZE_PID" "$FREEZE_CG/cgroup.procs"; then FREEZE_OK=1
      else FREEZE_NOTE="could not put a process in $FREEZE_CG"; stop_freeze_cgroup; fi
    else
      FREEZE_NOTE="cannot make a cgroup with a freezer under $CG2"
      FREEZE_CG=""
    fi
  fi
  ((FREEZE_OK)) || log "  no --freeze row: $FREEZE_NOTE"
fi

# ------------------------------------------------------ steps 1 and 2 ---
# One sample of case $1 (pip|one), run $2: a fresh writable mount of the
# base, the change, then ferry snapshot, tar|zstd of the upper directory
# and a full build of the merged tree.
file_bytes() { stat -c %s "$1"; }
# A peer's measure NAME in case C, run R: times CMD... (after a sync, with
# the item timeout) and adds NAME_s and NAME_bytes (SIZE_FN of OUT, after
# it), or err for both, logging WHAT failed.
time_peer() { # case run name what out size_fn log cmd...
  local c=$1 r=$2 name=$3 what=$4 out=$5 size_fn=$6 logf=$7 t0 t1 bytes
  shift 7
  sync
  t0=$(now)
  if timeout -k 5 "$ITEM_TIMEOUT" "$@" >/dev/null 2>>"$logf"; then
    t1=$(now)
    bytes=$("$size_fn" "$out")
    add "$c" "${name}_s" "$(secs "$t0" "$t1")"; add "$c" "${name}_bytes" "$bytes"
    sample "$c run $r $what: wall $(secs "$t0" "$t1") bytes $bytes"
  else
    add "$c" "${name}_s" err; add "$c" "${name}_bytes" err
    log "  $c run $r: $what failed (see $logf)"
  fi
}

measure_case() { # case run
  local c=$1 r=$2 dir=$MNT/$1-$2 tag=snapbench-$1-$2 upper out t0 t1 g0 g1 j ok=1
  ferry_mount "$STORE_URL" "$BASE_TAG" "$dir" || { log "  $c run $r: mount failed (see $LOGS/ferry-mount.log)"; return 1; }
  upper=$(ferryd_upper "$FERRYD_ROOT" "$dir") || { log "  $c run $r: no upper directory for $dir"; return 1; }
  if [[ $c == pip ]]; then
    mkdir -p "$dir$PIP_DEST"
    cp -a "$STAGE/$r/." "$dir$PIP_DEST/"
  else
    sed -i -e 's/^UMASK.*/UMASK\t\t027/' -e "\$a # umask set by bench/snapshot.sh, run $r" "$dir$ONE_FILE"
  fi
  read -r un ub <<<"$(tree_size "$upper")"
  add "$c" upper_files "$un"; add "$c" upper_bytes "$ub"

  # ferry snapshot
  sync
  g0=$(store_bytes "$STORE_DIR")
  t0=$(now)
  j=$(timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "$STORE_URL" snapshot "$dir" --tag "$tag" --json \
        --daemon "$FERRYD_ROOT" 2>>"$LOGS/ferry-snapshot.log") || ok=0
  t1=$(now)
  g1=$(store_bytes "$STORE_DIR")
  if ((ok)); then
    printf '%s %s\n' "$tag" "$j" >>"$LOGS/snapshots.jsonl"
    read -r js wb mdb nb nc fr br pk spc <<<"$(json_fields seconds written_bytes metadata_bytes new_bytes new_chunks files_read bytes_read packs profile_chunks <<<"$j")"
    add "$c" snap_s "$(secs "$t0" "$t1")"; add "$c" snap_json_s "$js"
    add "$c" written "$wb"; add "$c" growth "$((g1 - g0))"; add "$c" metadata "$mdb"
    add "$c" new_bytes "$nb"; add "$c" files_read "$fr"; add "$c" bytes_read "$br"; add "$c" packs "$pk"
    sample "$c run $r snapshot: wall $(secs "$t0" "$t1") json_seconds $js written_bytes $wb store_growth $((g1 - g0))" \
      "metadata_bytes $mdb new_bytes $nb new_chunks $nc files_read $fr bytes_read $br packs $pk profile_chunks $spc; upper $un files $ub bytes"
    [[ $c == pip && $r == 1 ]] && SNAP_TAG=$tag
  else
    add "$c" snap_s err
    log "  $c run $r: ferry snapshot failed (see $LOGS/ferry-snapshot.log)"
  fi

  # the --freeze row: the same upper directory again (its chunks are in the
  # store by now: time and pause only)
  if [[ $c == one ]] && ((FREEZE_OK)); then
    sync
    t0=$(now)
    if j=$(timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "$STORE_URL" snapshot "$dir" --tag "$tag-frozen" \
             --freeze "$FREEZE_CG" --json --daemon "$FERRYD_ROOT" 2>>"$LOGS/ferry-snapshot.log"); then
      t1=$(now)
      read -r fms <<<"$(json_fields frozen_ms <<<"$j")"
      add freeze snap_s "$(secs "$t0" "$t1")"; add freeze frozen_ms "$fms"
      sample "one run $r snapshot --freeze: wall $(secs "$t0" "$t1") frozen_ms $fms"
      grep -qx 'frozen 0' "$FREEZE_CG/cgroup.events" || log "  warning: $FREEZE_CG still frozen after the snapshot"
    else
      add freeze snap_s err
      log "  one run $r: ferry snapshot --freeze failed (see $LOGS/ferry-snapshot.log)"
    fi
  fi

  # tar|zstd of the upper directory
  out=$PEER/$c-$r.tar.zst
  time_peer "$c" "$r" tar "tar|zstd of $upper" "$out" file_bytes "$LOGS/peer.log" \
    bash -c 'set -o pipefail; tar -C "$1" -c . | zstd -3 -q >"$2" && sync "$2"' _ "$upper" "$out"
  rm -f "$out"

  # full build of the merged tree into a fresh store
  out=$PEER/full-$c-$r
  time_peer "$c" "$r" build "full ferry build of $dir" "$out" store_bytes "$LOGS/ferry-build.log" \
    "$FERRY" --store "file://$out" build "$dir" --tag full -q
  rm -rf "$out"

  ferry_umount "$dir"
  rmdir "$dir" 2>/dev/null || true
  return 0
}

SNAP_TAG=""
log "making the pip-sized packages ($RUNS, one per run)"
for ((r = 1; r <= RUNS; r++)); do make_package "$r" "$STAGE/$r"; done
read -r PKG_FILES PKG_BYTES <<<"$(tree_size "$STAGE/1")"
log "  package: $PKG_FILES files, $(mb "$PKG_BYTES") MB"
for c in pip one; do
  log "case $c: $RUNS runs [load $(cut -d' ' -f1 /proc/loadavg)]"
  for ((r = 1; r <= RUNS; r++)); do
    measure_case "$c" "$r" || add "$c" snap_s err
  done
  log "  ferry snapshot (s):${RES[$c|snap_s]:-}"
done
stop_freeze_cgroup
[[ -n $SNAP_TAG ]] || die "the pip snapshot of run 1 failed: nothing to resume"
stop_ferryd

# ----------------------------------------------------------- step 3 ---
log "resume: copying the store to s3rver"
start_s3rver
log "  s3rver (pid $S3_PID) on $ENDPOINT, bucket $BUCKET"
read -r COPY_N COPY_BYTES <<<"$(copy_store_to_s3 "$STORE_DIR" store)"
log "  $COPY_N objects, $(mb "$COPY_BYTES") MB"
PLAIN_URL="s3://$BUCKET/store?endpoint=$ENDPOINT&region=us-east-1&path_style=1"
# (second '?': the fault+ wrapper splits its own options at the last one)
FAULT_URL="fault+$PLAIN_URL?latency=${SETTING%%/*}&bandwidth=${SETTING#*/}&seed=1"
timeout -k 5 60 "$FERRY" --store "$PLAIN_URL" inspect "$SNAP_TAG" >"$LOGS/snap-inspect.txt" 2>&1 ||
  die "the copied store has no $SNAP_TAG (see $LOGS/snap-inspect.txt)"

log "resume: the peer's tarball ('ferry export $SNAP_TAG' | zstd -3)"
TARBALL=$PEER/snap.tar.zst
timeout -k 5 "$ITEM_TIMEOUT" bash -c 'set -o pipefail; "$1" --store "$2" export "$3" -o - | zstd -3 -q -T0 >"$4"' _ \
  "$FERRY" "$STORE_URL" "$SNAP_TAG" "$TARBALL" 2>>"$LOGS/pull.log" || die "export of $SNAP_TAG failed (see $LOGS/pull.log)"
TAR_BYTES=$(stat -c %s "$TARBALL")
s3_curl -o /dev/null -T "$TARBALL" "$ENDPOINT/$BUCKET/tarballs/snap.tar.zst" || die "upload of $TARBALL failed"
rm -f "$TARBALL"
log "  $(mb "$TAR_BYTES") MB"
tree_sums "$STAGE/1" >"$SN/package.sha256"

# Whether root $1 holds run 1's package, file for file.
has_package() { [[ -d $1$PIP_DEST ]] && cmp -s <(tree_sums "$1$PIP_DEST") "$SN/package.sha256"; }

resume_ferry() { # item run (item: resume, or resume_noprof once SNAP's profile is removed)
  local it=$1 r=$2 dir=$MNT/resume t0 t1 t2 ok=1 sb sf pc
  start_ferryd "$FERRYD_B" "second host, $it run $r"
  drop_caches
  t0=$(now)
  ferry_mount "$FAULT_URL" "$SNAP_TAG" "$dir" || ok=0
  t1=$(now)
  ((ok)) && { workload "$dir" || ok=0; }
  t2=$(now)
  if ((ok)); then
    add "$it" ferry_s "$(secs "$t0" "$t2")"; add "$it" mount_s "$(secs "$t0" "$t1")"
    if has_package "$dir"; then add "$it" ferry_has 1; else add "$it" ferry_has 0; fi
    timeout -k 5 60 "$FERRY" cache stats --json --daemon "$FERRYD_ROOT" >"$LOGS/$it-stats-$r.json" 2>>"$LOGS/ferry-mount.log" || true
    read -r sb sf pc <<<"$("$HOST_PY" -c '
import json, sys
j = json.load(open(sys.argv[1]))
im = j.get("images", [])
print(*(sum(int(i.get(k, 0)) for i in im) for k in ("store_bytes", "store_fetches", "profile_chunks")))' \
      "$LOGS/$it-stats-$r.json" 2>/dev/null || echo "0 0 0")"
    add "$it" ferry_bytes "$sb"; add "$it" ferry_fetches "$sf"; add "$it" profile_chunks "$pc"
    sample "$it ferry run $r: total $(secs "$t0" "$t2") mount $(secs "$t0" "$t1") workload $(secs "$t1" "$t2") store_bytes $sb store_fetches $sf profile_chunks $pc"
  else
    add "$it" ferry_s err
    log "  $it run $r: ferry failed (see $LOGS/ferry-mount.log, $LOGS/workload.log, $FERRYD_LOG)"
  fi
  ferry_umount "$dir"
  stop_ferryd
}

resume_pull() { # run
  local r=$1 dir=$PULL/root t0 t1 t2 t3 ok=1
  rm -rf "$PULL"; mkdir -p "$PULL"
  drop_caches
  t0=$(now)
  emulated_get tarballs/snap.tar.zst "$PULL/snap.tar.zst" "$TAR_BYTES" "$LAT_S" "$BPS" "$ITEM_TIMEOUT" 2>>"$LOGS/pull.log" || ok=0
  t1=$(now)
  if ((ok)); then
    mkdir -p "$dir"
    timeout -k 5 "$ITEM_TIMEOUT" tar -C "$dir" --numeric-owner --xattrs --xattrs-include='*' -I zstd -xpf "$PULL/snap.tar.zst" \
      2>>"$LOGS/pull.log" || ok=0
  fi
  t2=$(now)
  ((ok)) && { workload "$dir" || ok=0; }
  t3=$(now)
  if ((ok)); then
    add resume pull_s "$(secs "$t0" "$t3")"; add resume pull_get_s "$(secs "$t0" "$t1")"
    add resume pull_extract_s "$(secs "$t1" "$t2")"; add resume pull_run_s "$(secs "$t2" "$t3")"
    if has_package "$dir"; then add resume pull_has 1; else add resume pull_has 0; fi
    sample "resume pull run $r: total $(secs "$t0" "$t3") get $(secs "$t0" "$t1") extract $(secs "$t1" "$t2") workload $(secs "$t2" "$t3")"
  else
    add resume pull_s err
    log "  resume run $r: pull failed (see $LOGS/pull.log, $LOGS/workload.log)"
  fi
  rm -rf "$PULL"
}

log "resume at $SET_LABEL: $RUNS runs [load $(cut -d' ' -f1 /proc/loadavg)]"
for ((r = 1; r <= RUNS; r++)); do
  resume_pull "$r"
  resume_ferry resume "$r"
done
log "  ferry (s):${RES[resume|ferry_s]:-}; pull (s):${RES[resume|pull_s]:-}"

# Not part of the target: the resume without SNAP's (inherited) profile,
# lazy loading alone. A snapshot stored as a delta whose inherited profile
# is the base's unchanged goes by the base's (no copy of its own): both are
# removed from the plain s3:// store after the runs above, SNAP's only if
# it has one.
NOPROF_OK=0
if ((BASE_PROFILE)); then
  log "removing $SNAP_TAG's start-up profile (its own, or the base's it goes by), then $RUNS runs without it"
  profile_rm() { # image -> ferry's exit code
    timeout -k 5 60 env AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
      "$FERRY" --store "$PLAIN_URL" profile rm "$1" >>"$LOGS/ferry-profile.log" 2>&1
  }
  if profile_rm "$BASE_TAG" && { profile_rm "$SNAP_TAG" || grep -q "has no profile" "$LOGS/ferry-profile.log"; }; then
    NOPROF_OK=1
    for ((r = 1; r <= RUNS; r++)); do resume_ferry resume_noprof "$r"; done
    log "  ferry without a profile (s):${RES[resume_noprof|ferry_s]:-}"
  else
    log "  ferry profile rm failed (see $LOGS/ferry-profile.log); no row without a profile"
  fi
fi
stop_s3rver
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)
TOTAL_S=$(secs "$START" "$(now)")

# ---------------------------------------------------------------- table ---
isnum() { [[ $1 =~ ^[0-9.]+$ ]]; }
fmt() { # value decimals
  case $1 in err|n/a|"") echo "${1:-n/a}" ;; *) awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }' ;; esac
}
div() { # a b -> a / b
  if isnum "$1" && isnum "$2" && awk -v x="$2" 'BEGIN { exit !(x > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
  else echo "–"; fi
}
verdict() { # value op limit
  isnum "$1" || { echo "n/a"; return; }
  if awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { exit !(op == ">=" ? v >= l : op == "<" ? v < l : v <= l) }'; then
    echo PASS; else echo FAIL; fi
}
ms() { isnum "$1" && awk -v v="$1" 'BEGIN { printf "%.0f ms", v * 1e3 }' || echo "${1:-n/a}"; }
sec() { isnum "$1" && awk -v v="$1" 'BEGIN { printf "%.2f s", v }' || echo "${1:-n/a}"; }
kb() { isnum "$1" && awk -v v="$1" 'BEGIN { if (v >= 1e6) printf "%.2f MB", v / 1e6; else printf "%.1f kB", v / 1e3 }' || echo "${1:-n/a}"; }

{
  echo "## ferry snapshot — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Command (as root, in $CMD_CWD): \`$CMDLINE\`"
  echo
  echo "Base: Debian 12 minbase + python3 ($(mb "$ROOTFS_BYTES") MB in regular files), image ${BASE_ID:0:12}," \
       "$(mb "$BASE_STORE_BYTES") MB in the file:// store, built in $(printf '%.1f' "$BASE_BUILD_S") s."
  echo "pip-sized change: $PKG_FILES files, $(mb "$PKG_BYTES") MB in $PIP_DEST (upper: $(fmt "$(med pip upper_files)" 0) files," \
       "$(mb "$(med pip upper_bytes)") MB); 1-file change: $ONE_FILE rewritten (upper: $(fmt "$(med one upper_files)" 0) file(s), $(kb "$(med one upper_bytes)"))."
  echo "Host: $(uname -r), $(nproc) cores (shared with other work), load average $LOAD_START at start, $LOAD_END at end;" \
       "ferry $(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo '?'); ferryd --cache-size $CACHE_SIZE. Runs: $RUNS (medians)."
  echo
  echo "| what | ferry | peer | ratio | target | result | notes |"
  echo "|---|---:|---:|---:|---|---|---|"
  for c in pip one; do
    name=$([[ $c == pip ]] && echo "pip-sized" || echo "1-file")
    S=$(med "$c" snap_s) JS=$(med "$c" snap_json_s) TS=$(med "$c" tar_s) BS=$(med "$c" build_s)
    W=$(med "$c" written) G=$(med "$c" growth) TB=$(med "$c" tar_bytes) BB=$(med "$c" build_bytes)
    MD=$(med "$c" metadata)
    if [[ $c == one ]]; then TGT="< 100 ms"; RESULT=$(verdict "$S" '<' 0.1); else TGT="–"; RESULT="–"; fi
    echo "| $name: snapshot time vs tar\|zstd of upper | $(ms "$S") | $(ms "$TS") | $(div "$S" "$TS")x | $TGT | $RESULT | ferry: wall time of \`ferry snapshot\`; ferryd's own figure (JSON seconds) $(ms "$JS") |"
    echo "| $name: snapshot time vs full \`ferry build\` of the merged tree | $(ms "$S") | $(sec "$BS") | $(div "$S" "$BS")x | – | – | |"
    R1=$(div "$W" "$TB") R2=$(div "$G" "$TB")
    echo "| $name: bytes written (JSON written_bytes) vs tar\|zstd of upper | $(kb "$W") | $(kb "$TB") | ${R1}x | ≤ 1.2x | $(verdict "$R1" '<=' 1.2) | compressed chunk data only; $(fmt "$(med "$c" files_read)" 0) files read ($(kb "$(med "$c" bytes_read)")), new data $(kb "$(med "$c" new_bytes)") uncompressed, $(fmt "$(med "$c" packs)" 0) pack(s) |"
    echo "| $name: bytes written (store growth, du -sb) vs tar\|zstd of upper | $(kb "$G") | $(kb "$TB") | ${R2}x | ≤ 1.2x | $(verdict "$R2" '<=' 1.2) | all the snapshot wrote: packs plus the new image's metadata (JSON metadata_bytes $(kb "$MD")) and ref |"
    echo "| $name: store growth vs full \`ferry build\` store | $(kb "$G") | $(kb "$BB") | $(div "$G" "$BB")x | – | – | |"
  done
  if ((FREEZE_OK)); then
    FS=$(med freeze snap_s) FM=$(med freeze frozen_ms)
    echo "| 1-file: \`snapshot --freeze CGROUP\` time (vs without) | $(ms "$FS") | $(ms "$(med one snap_s)") | $(div "$FS" "$(med one snap_s)")x | – | – | frozen_ms (the pause) $(fmt "$FM" 1) ms; a cgroup v2 holding one sleeping process; the same upper again (nothing new to write) |"
  elif ((!NO_FREEZE)); then
    echo "| 1-file: \`snapshot --freeze\` | n/a | | | – | – | $FREEZE_NOTE |"
  fi
  hp() { [[ $1 == 1.000000 ]] && echo yes || echo "no ($1)"; }
  PROF_NOTE="no start-up profile"
  ((BASE_PROFILE)) && PROF_NOTE="start-up profile inherited from the base (recorded once for the base, untimed)"
  FR=$(med resume ferry_s) PR=$(med resume pull_s) SP=$(div "$PR" "$FR")
  HAS_F=$(med resume ferry_has) HAS_P=$(med resume pull_has)
  echo "| resume on a cold host: mount + python3 ($SET_LABEL) | $(sec "$FR") | $(sec "$PR") | ${SP}x faster | ≥ 5x | $(verdict "$SP" '>=' 5) | ferry: \`ferry mount\` $(sec "$(med resume mount_s)") of it, $PROF_NOTE (profile chunks $(fmt "$(med resume profile_chunks)" 0)); pull: GET $(sec "$(med resume pull_get_s)"), extract $(sec "$(med resume pull_extract_s)"), workload $(sec "$(med resume pull_run_s)") |"
  echo "| resume: bytes fetched | $(kb "$(med resume ferry_bytes)") | $(kb "$TAR_BYTES") | $(div "$(med resume ferry_bytes)" "$TAR_BYTES")x | – | – | ferry: store_bytes of \`ferry cache stats\` (chunks; not the image metadata) in $(fmt "$(med resume ferry_fetches)" 0) fetches; pull: the zstd tarball |"
  OKP=FAIL; [[ $HAS_F == 1.000000 && $HAS_P == 1.000000 ]] && OKP=PASS
  echo "| resume: the pip-sized change is there | $(hp "$HAS_F") | $(hp "$HAS_P") | – | all files | $OKP | sha256 of every file of $PIP_DEST against run 1's package |"
  if ((NOPROF_OK)); then
    FN=$(med resume_noprof ferry_s) SPN=$(div "$PR" "$(med resume_noprof ferry_s)")
    echo "| resume, SNAP without a start-up profile (not the target) | $(sec "$FN") | $(sec "$PR") | ${SPN}x faster | – | – | its inherited profile removed (\`ferry profile rm\` of SNAP if it has its own, and of the base): lazy loading and the image's own prefetch hints only; $(kb "$(med resume_noprof ferry_bytes)") in $(fmt "$(med resume_noprof ferry_fetches)" 0) fetches; package there: $(hp "$(med resume_noprof ferry_has)") |"
  fi
  echo
  echo "- ratio: ferry / peer (below 1: ferry is faster or smaller), except the resume time: peer / ferry."
  echo "- Snapshot: \`ferry --store file://... snapshot DIR --tag T --json --daemon ROOT\` of a fresh writable mount (\`ferry mount $BASE_TAG DIR --writable\`)," \
       "wall time of the command; store growth = du -sb of the store directory after minus before."
  echo "- tar|zstd: \`tar -C UPPER -c . | zstd -3 > OUT\`, then OUT fsynced (the store's writes are fsynced too); UPPER = ROOT/mounts.json's sandbox directory + /upper." \
       "It is the \"changed bytes, compressed\" the 1.2x target compares with (tar headers included; zstd -3, ferry's chunks are zstd -1)."
  echo "- full build: \`ferry --store file://FRESH build DIR\` of the live merged tree (overlay over ferry's FUSE mount; node cache as earlier runs left it); bytes = du -sb of FRESH."
  echo "- Resume: the file:// store copied to s3rver ($COPY_N objects, $(mb "$COPY_BYTES") MB); a second ferryd (fresh root, empty node cache) reads" \
       "\`fault+s3://$BUCKET/store?...?latency=${SETTING%%/*}&bandwidth=${SETTING#*/}&seed=1\`; page cache dropped before each run;" \
       "workload \`chroot DIR python3 -c '$PY_IMPORTS'\`. Pull: sleep latency + $(mb "$TAR_BYTES") MB / bandwidth, GET from s3rver, \`tar -I zstd -xpf\`, the same workload."
  echo "- The pip-sized files are real trees with every byte rotated by the run number (no dedup with the base or other runs; same compressibility)."
  echo "- Raw samples: snapshot/logs/samples.txt; snapshot JSON: snapshot/logs/snapshots.jsonl."
  echo
  echo "Total benchmark wall time: $(printf '%.0f' "$TOTAL_S") s."
} >"$WORKDIR/snapshot.md"

echo
cat "$WORKDIR/snapshot.md"
echo
log "results written to $WORKDIR/snapshot.md (logs: $LOGS)"
