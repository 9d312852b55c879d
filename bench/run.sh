#!/usr/bin/env bash
# ferry benchmark: ferry side by side with a native directory, kernel erofs
# and squashfuse, on the same Debian 12 root filesystem, in one run.  ferry
# is measured through its host daemon ferryd and node cache (or, with
# --no-daemon, in the old single-process mode).  Run as root.  See --help.
set -euo pipefail
export LC_ALL=C

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CMDLINE=$(typed_command "$0" "$@")

PY_RUNS=9
PEERS_ONLY=0
NO_DAEMON=0
VERIFY=1
SQUASH_COMP=zstd
EROFS_OPTS=""
FERRY_BUILD_OPTS=""
FERRY_MOUNT_OPTS=""
BIG_MIB=1024
RAND_MIB=64
NIMAGES=100
TAG=bench-debian
BIG_TAG=bench-big
SMALL_TAG=bench-small
ITEM_TIMEOUT=600

usage() {
  cat <<EOF
Usage: sudo bench/run.sh [options]

Benchmarks ferry against a native directory, kernel erofs (loop mount) and
squashfs (squashfuse) on one Debian 12 (bookworm, minbase + python3) root
filesystem, and prints a markdown table with ratios.  The table is also
written to WORKDIR/results.md; logs go to WORKDIR/logs/.

ferry is mounted through ferryd, the host daemon with the node cache (the
default), or with 'ferry mount --no-daemon' (--no-daemon: one process per
mount, no node cache).  Through ferryd, every "cold" sample starts with the
node cache pruned to 0 and ferryd restarted (so its memory cache is empty
too): every chunk comes from the store.  "node cache warm" samples start
with the node cache filled by an earlier untimed read, ferryd restarted
(empty memory cache) and the page cache dropped: chunks come from the node
cache on local disk.

Measures (each timed item is run --runs times, the median is reported):
  build      input MB/s (apparent size of regular files / wall time) of
             mkfs.erofs, mksquashfs and 'ferry build' (fresh output each run;
             input read cold, each tool's own code loaded beforehand)
  size       image / store size
  mount      wall time of the mount command until the mount is usable
  read-all   cat every regular file to /dev/null, page cache dropped, fresh
             mount; cold, and (ferry) with the node cache warm
  walk       find -printf '%s %m %U' (lstat of every entry), cold and warm
  python     chroot M python3 -c '$PY_IMPORTS', cold and warm
  stream     dd bs=1M of one file of --big-mib MiB of random data (its own
             image), page cache dropped, ferry's node cache warm: MB/s
  random     fio: 4 KiB random reads (psync, queue depth 1, --rand-mib MiB
             per sample, no offset twice) of that file, same state: IOPS
  mount+stat ferry mount (or mount, squashfuse) + stat of a file inside,
             ferry's node cache warm; page cache warm, and dropped: ms
  memory     ferryd VmRSS with --images small images mounted (each read
             once) minus VmRSS with none, per image: MB

Options:
  --workdir DIR        work directory (default: $WORKDIR); the root
                       filesystem and the big file are made there once and
                       reused
  --runs N             timed repetitions per item (default: $RUNS)
  --py-runs N          timed repetitions of the python items, which take
                       a fraction of a second and vary most from run to
                       run on a shared VM (default: $PY_RUNS)
  --mirror URL         Debian mirror for debootstrap (default: from
                       /etc/apt sources, else http://deb.debian.org/debian)
  --peers-only         skip ferry (measure native, erofs, squashfuse only)
  --no-daemon          measure ferry with 'ferry mount --no-daemon' (no
                       ferryd, no node cache); the node-cache measures
                       (stream, random, mount+stat, memory, warm read-all)
                       are skipped
  --no-verify          skip the check that every mount shows the same tree
                       (names, types, sizes, modes, owners, links, file
                       contents) as the native directory
  --squashfs-comp C    mksquashfs compressor (default: $SQUASH_COMP)
  --erofs-opts "..."   extra mkfs.erofs options, e.g. "-zlz4hc"
                       (default: none, i.e. uncompressed)
  --ferry-build-opts "..."   extra options for 'ferry build'
  --ferry-mount-opts "..."   extra options for 'ferry mount'
  --cache-size SIZE    ferryd --cache-size (default: $CACHE_SIZE)
  --big-mib N          size of the streamed file in MiB (default: $BIG_MIB)
  --rand-mib N         MiB read by each random-read sample (default: $RAND_MIB)
  --images N           small images mounted at once for memory (default: $NIMAGES)
  --rebuild-rootfs     remake the root filesystem even if cached
  --timeout SECS       limit for one timed item or one mount/unmount/verify
                       (default: $ITEM_TIMEOUT); a hung FUSE mount is aborted
  -h, --help           show this help

Environment:
  FERRY   ferry binary (default: <repo>/build/ferry)
  FERRYD  ferryd binary (default: ferryd beside \$FERRY)
Both are copied into WORKDIR/bin/ at the start, so a rebuild during the run
does not mix two versions.

Ratios are ferry/peer: for times and sizes lower is better for ferry (< 1
means ferry is faster/smaller); for MB/s and IOPS higher is better (> 1
means ferry is faster).  MB = 10^6 bytes.
EOF
}

# Shared helpers: log, die, mounts, caches, medians, the root filesystem.
# A section's first line, with the load average (other work on the host
# makes the numbers noisy).
section() { log "$* [load $(cut -d' ' -f1 /proc/loadavg)]"; }

while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --workdir|--workdir=*) take_opt WORKDIR "$@"; shift "$OPT_SHIFT" ;;
    --runs|--runs=*) take_opt RUNS "$@"; shift "$OPT_SHIFT" ;;
    --py-runs|--py-runs=*) take_opt PY_RUNS "$@"; shift "$OPT_SHIFT" ;;
    --mirror|--mirror=*) take_opt MIRROR "$@"; shift "$OPT_SHIFT" ;;
    --peers-only) PEERS_ONLY=1; shift ;;
    --no-daemon) NO_DAEMON=1; shift ;;
    --no-verify) VERIFY=0; shift ;;
    --squashfs-comp|--squashfs-comp=*) take_opt SQUASH_COMP "$@"; shift "$OPT_SHIFT" ;;
    --erofs-opts|--erofs-opts=*) take_opt EROFS_OPTS "$@"; shift "$OPT_SHIFT" ;;
    --ferry-build-opts|--ferry-build-opts=*) take_opt FERRY_BUILD_OPTS "$@"; shift "$OPT_SHIFT" ;;
    --ferry-mount-opts|--ferry-mount-opts=*) take_opt FERRY_MOUNT_OPTS "$@"; shift "$OPT_SHIFT" ;;
    --cache-size|--cache-size=*) take_opt CACHE_SIZE "$@"; shift "$OPT_SHIFT" ;;
    --big-mib|--big-mib=*) take_opt BIG_MIB "$@"; shift "$OPT_SHIFT" ;;
    --rand-mib|--rand-mib=*) take_opt RAND_MIB "$@"; shift "$OPT_SHIFT" ;;
    --images|--images=*) take_opt NIMAGES "$@"; shift "$OPT_SHIFT" ;;
    --rebuild-rootfs) REBUILD_ROOTFS=1; shift ;;
    --timeout|--timeout=*) take_opt ITEM_TIMEOUT "$@"; shift "$OPT_SHIFT" ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $PY_RUNS =~ ^[1-9][0-9]*$ ]] || die "--py-runs must be a positive integer"
[[ $ITEM_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer"
[[ $BIG_MIB =~ ^[1-9][0-9]*$ ]] || die "--big-mib must be a positive integer"
[[ $RAND_MIB =~ ^[1-9][0-9]*$ ]] || die "--rand-mib must be a positive integer"
((RAND_MIB <= BIG_MIB)) || die "--rand-mib must not exceed --big-mib"
[[ $NIMAGES =~ ^[1-9][0-9]*$ ]] || die "--images must be a positive integer"
[[ $CACHE_SIZE =~ ^[0-9]+[KMGT]?$ ]] || die "--cache-size must look like 4G or 512M"
[[ $WORKDIR == /* ]] || WORKDIR=$PWD/$WORKDIR
[[ $WORKDIR =~ ^[A-Za-z0-9/._+-]+$ ]] || die "--workdir must not contain spaces or special characters"
read -ra EROFS_ARGS <<<"$EROFS_OPTS"
read -ra FERRY_BUILD_ARGS <<<"$FERRY_BUILD_OPTS"
read -ra FERRY_MOUNT_ARGS <<<"$FERRY_MOUNT_OPTS"
((EUID == 0)) || die "must be run as root (mounts, chroot, drop_caches)"

# ---------------------------------------------------------------- tools ---
install_missing debootstrap=debootstrap mkfs.erofs=erofs-utils mksquashfs=squashfs-tools \
  squashfuse=squashfuse fusermount3=fuse3 python3=python3 fio=fio setsid=util-linux /usr/bin/time=time
[[ -w /proc/sys/vm/drop_caches ]] || die "/proc/sys/vm/drop_caches is not writable"
[[ -e /dev/fuse ]] || die "/dev/fuse missing"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null || true
grep -qw erofs /proc/filesystems || die "kernel has no erofs support"
CHROOT=$(command -v chroot)

FERRY=${FERRY:-$REPO_ROOT/build/ferry}
FERRYD=${FERRYD:-}
DAEMON=0    # 1: ferry is mounted through ferryd
if ((PEERS_ONLY)); then
  FSES=(native erofs squashfuse)
else
  [[ $FERRY == /* ]] || FERRY=$PWD/$FERRY
  [[ -x $FERRY ]] || die "ferry binary not found at $FERRY (build it first, set \$FERRY, or use --peers-only)"
  if ((!NO_DAEMON)); then
    DAEMON=1
    [[ -n $FERRYD ]] || FERRYD=$(dirname "$FERRY")/ferryd
    [[ $FERRYD == /* ]] || FERRYD=$PWD/$FERRYD
    [[ -x $FERRYD ]] || die "ferryd binary not found at $FERRYD (build it, set \$FERRYD, or use --no-daemon)"
  fi
  FSES=(native erofs squashfuse ferry)
fi
ALL_FSES=(native erofs squashfuse ferry)

# -------------------------------------------------------------- workdir ---
mkdir -p "$WORKDIR"/{logs,img,bin,mnt/erofs,mnt/squashfuse,mnt/ferry,mnt/big,mnt/small}
exec 9>"$WORKDIR/.lock"
flock -n 9 || die "another benchmark is running on $WORKDIR"
ROOTFS=$WORKDIR/rootfs
FERRY_SRC=$FERRY FERRYD_SRC=$FERRYD
if ((!PEERS_ONLY)); then
  FERRY=$WORKDIR/bin/ferry
  snapshot_ferry "$FERRY_SRC" "$FERRY"
fi
if ((DAEMON)); then
  FERRYD=$WORKDIR/bin/ferryd
  snapshot_bin "$FERRYD_SRC" "$FERRYD"
fi
LOGS=$WORKDIR/logs
RUN_LOG=$LOGS/run.log
: >"$RUN_LOG"
EROFS_IMG=$WORKDIR/img/rootfs.erofs
SQUASH_IMG=$WORKDIR/img/rootfs.squashfs
STORE=$WORKDIR/store
BIG_DIR=$WORKDIR/big           # one file, "data", built into its own image
BIG_FILE=$BIG_DIR/data
BIG_BYTES=$((BIG_MIB * 1048576))
SMALL_SRC=$WORKDIR/small-src   # the tree of the small images
FERRYD_ROOT=$WORKDIR/ferryd
FERRYD_LOG=$LOGS/ferryd.log
declare -A MNT=([native]=$ROOTFS [erofs]=$WORKDIR/mnt/erofs
                [squashfuse]=$WORKDIR/mnt/squashfuse [ferry]=$WORKDIR/mnt/ferry
                [big]=$WORKDIR/mnt/big)




# ------------------------------------------------------------- ferryd ---
start_ferryd() {
  printf '=== bench %s: starting ferryd (%s)\n' "$(date +%H:%M:%S)" "${1:-}" >>"$FERRYD_LOG"
  launch_ferryd --root "$FERRYD_ROOT" --cache-size "$CACHE_SIZE"
  echo "$FERRYD_PID" >"$WORKDIR/ferryd.pid"
}

# SIGTERM (ferryd unmounts everything it serves), SIGKILL after 30 s.
stop_ferryd() { stop_launched_ferryd "$WORKDIR/ferryd.pid" "$FERRYD_ROOT/mnt"; }

restart_ferryd() { stop_ferryd; start_ferryd "$1"; }

ferry_cache() { # cache subcommand args... (output to the cache log)
  timeout -k 5 120 "$FERRY" cache "$@" --daemon "$FERRYD_ROOT" >>"$LOGS/ferry-cache.log" 2>&1
}
cache_json() { timeout -k 5 60 "$FERRY" cache stats --json --daemon "$FERRYD_ROOT" 2>>"$LOGS/ferry-cache.log"; }
json_sum() { # json field -> sum of every "field":"N" in it
  { grep -o "\"$2\":\"\\?[0-9]*" <<<"$1" || true; } | tr -dc '0-9\n' | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# Empty node cache, empty memory cache: the next reads come from the store.
empty_node_cache() {
  restart_ferryd "cold sample"
  ferry_cache prune --to 0 || die "'ferry cache prune --to 0' failed (see $LOGS/ferry-cache.log)"
  local used
  used=$(json_sum "$(cache_json)" used_bytes)
  [[ $used == 0 ]] || log "warning: node cache still uses $used bytes after 'prune --to 0'"
}

# After a node-cache-warm sample of measure $1: add what the image's
# session (the only one: ferryd was restarted for the sample) read where.
WARM_CACHE_BYTES=0 WARM_STORE_BYTES=0 WARM_MEM_HITS=0 WARM_READ_ERRORS=0
declare -A NC_READ=() NC_CACHE=()   # per measure: bytes returned, bytes read from the node cache
account_warm() {
  local j
  j=$(cache_json) || return 0
  echo "$1 $2: $j" >>"$LOGS/ferry-cache-warm.json"
  WARM_CACHE_BYTES=$((WARM_CACHE_BYTES + $(json_sum "$j" cache_hit_bytes)))
  WARM_STORE_BYTES=$((WARM_STORE_BYTES + $(json_sum "$j" store_bytes)))
  WARM_MEM_HITS=$((WARM_MEM_HITS + $(json_sum "$j" memory_hits)))
  WARM_READ_ERRORS=$((WARM_READ_ERRORS + $(json_sum "$j" read_errors)))
  NC_READ[$1]=$((${NC_READ[$1]:-0} + $(json_sum "$j" read_bytes)))
  NC_CACHE[$1]=$((${NC_CACHE[$1]:-0} + $(json_sum "$j" cache_hit_bytes)))
}
amplification() { # measure -> "X MB returned, Y MB from the node cache (Z x)"
  awk -v r="${NC_READ[$1]:-0}" -v c="${NC_CACHE[$1]:-0}" \
    'BEGIN { printf "%.0f MB returned, %.0f MB read from the node cache (%.1fx)", r / 1e6, c / 1e6, (r > 0 ? c / r : 0) }'
}

# ------------------------------------------------------------- mounts ---
ferry_mount() { # image mountpoint
  local mode=(--daemon "$FERRYD_ROOT")
  ((DAEMON)) || mode=(--no-daemon)
  timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "file://$STORE" mount "$1" "$2" "${mode[@]}" "${FERRY_MOUNT_ARGS[@]}" \
    >>"$LOGS/ferry-mount.log" 2>&1
}
# Without a daemon (--no-daemon mounts) 'ferry umount' unmounts by itself.
ferry_umount() { timeout -k 5 60 "$FERRY" umount "$1" --daemon "$FERRYD_ROOT" >>"$LOGS/ferry-mount.log" 2>&1; }

mount_fs() {
  local fs=$1 m=${MNT[$1]}
  case "$fs" in
    native) ;;
    erofs) timeout -k 5 "$ITEM_TIMEOUT" mount -t erofs -o loop,ro "$EROFS_IMG" "$m" ;;
    squashfuse) timeout -k 5 "$ITEM_TIMEOUT" squashfuse "$SQUASH_IMG" "$m" ;;
    ferry) ferry_mount "$TAG" "$m" ;;
    big) ferry_mount "$BIG_TAG" "$m" ;;
  esac
}

umount_fs() {
  local fs=$1 m=${MNT[$1]} i
  [[ $fs == native ]] && return 0
  is_mounted "$m" || return 0
  case "$fs" in
    erofs) timeout -k 5 60 umount "$m" || true ;;
    squashfuse) timeout -k 5 60 fusermount3 -u "$m" 2>/dev/null ||
                  timeout -k 5 60 umount "$m" 2>/dev/null || true ;;
    ferry|big) ferry_umount "$m" ||
                 log "warning: 'ferry umount $m' failed (see $LOGS/ferry-mount.log)" ;;
  esac
  for ((i = 0; i < 50; i++)); do is_mounted "$m" || return 0; sleep 0.1; done
  log "warning: $m still mounted, aborting/lazy unmount"
  fuse_abort "$m"
  umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
}


cleanup() {
  local rc=$? fs
  trap - EXIT INT TERM
  for fs in erofs squashfuse ferry big; do umount_fs "$fs" 2>/dev/null || true; done
  stop_ferryd 2>/dev/null || true
  umount_below "$WORKDIR/mnt"
  umount_below "$FERRYD_ROOT/mnt"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Leftovers of an earlier run that was killed hard: its ferryd, its mounts.
if [[ -r $WORKDIR/ferryd.pid ]]; then
  old=$(cat "$WORKDIR/ferryd.pid")
  if [[ $old =~ ^[0-9]+$ ]] && proc_alive "$old" &&
     tr '\0' ' ' <"/proc/$old/cmdline" | grep -qF -- "--root $FERRYD_ROOT "; then
    log "stopping the ferryd (pid $old) of an earlier run"
    FERRYD_PID=$old
    stop_ferryd
  fi
  rm -f "$WORKDIR/ferryd.pid"
fi
umount_below "$WORKDIR/mnt"
umount_below "$FERRYD_ROOT/mnt"



# The big file: random (incompressible) bytes, made once and reused.
make_big() {
  if [[ -f $BIG_DIR.done && $(cat "$BIG_DIR.done") == "$BIG_BYTES" &&
        $(stat -c %s "$BIG_FILE" 2>/dev/null) == "$BIG_BYTES" ]]; then
    return 0
  fi
  log "making $BIG_FILE: $BIG_MIB MiB from /dev/urandom"
  rm -rf "$BIG_DIR" "$BIG_DIR.done"
  mkdir -p "$BIG_DIR"
  head -c "$BIG_BYTES" /dev/urandom >"$BIG_FILE.tmp"
  mv "$BIG_FILE.tmp" "$BIG_FILE"
  sync
  echo "$BIG_BYTES" >"$BIG_DIR.done"
}

# -------------------------------------------------------------- helpers ---
# Results: RES[measure,fs] = space-separated values ("err" for a failure).
declare -A RES=()
add() { RES[$1,$2]="${RES[$1,$2]:-} $3"; }

# ELAPSED <- wall seconds of "$@"; returns the command's status.
ELAPSED=""
timed() {
  local t0 t1 rc=0
  t0=$EPOCHREALTIME
  "$@" || rc=$?
  t1=$EPOCHREALTIME
  ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
  return "$rc"
}


# The timed items.  Each runs under timeout(1) (same small overhead for all).
read_all() {
  # shellcheck disable=SC2016
  timeout -k 5 "$ITEM_TIMEOUT" sh -c 'find "$1" -type f -print0 | xargs -0r cat >/dev/null' _ "$1"
}
walk() { timeout -k 5 "$ITEM_TIMEOUT" find "$1" -printf '%s %m %U\n' >/dev/null; }
py_start() {
  timeout -k 5 "$ITEM_TIMEOUT" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 "$CHROOT" "$1" python3 -c "$PY_IMPORTS" >/dev/null
}
stream() { timeout -k 5 "$ITEM_TIMEOUT" dd if="$1" of=/dev/null bs=1M status=none; }
# fio: 4 KiB random reads, one job, queue depth 1, --rand-mib MiB in all
# (fio's random map: no offset twice), fadvise(RANDOM) so no readahead.
# Prints the IOPS.
rand_read() { # file json-output
  timeout -k 5 "$ITEM_TIMEOUT" fio --name=rand4k --filename="$1" --readonly --rw=randread --bs=4k \
    --ioengine=psync --iodepth=1 --numjobs=1 --io_size="${RAND_MIB}m" --runtime="$ITEM_TIMEOUT" \
    --randrepeat=1 --fadvise_hint=1 --output-format=json --output="$2" >/dev/null || return 1
  python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
if j["error"] or j["read"]["total_ios"] == 0: sys.exit(1)
print("%.1f" % j["read"]["iops"])' "$2"
}

# Fresh mount (timed into "mount"), caches dropped, then the timed item.
cold() {
  local measure=$1 fs=$2 fn=$3
  umount_fs "$fs"
  [[ $fs == ferry ]] && ((DAEMON)) && empty_node_cache
  drop_caches
  if [[ $fs != native ]]; then
    if timed mount_fs "$fs"; then
      add mount "$fs" "$ELAPSED"
    else
      add mount "$fs" err; add "$measure" "$fs" err
      log "  $fs: mount failed"; return 0
    fi
    drop_caches
  fi
  if timed "$fn" "${MNT[$fs]}" 2>>"$LOGS/$fs.err"; then
    add "$measure" "$fs" "$ELAPSED"
    log "  $measure $fs: ${ELAPSED}s"
  else
    add "$measure" "$fs" err
    log "  $measure $fs: FAILED (see $LOGS/$fs.err)"
  fi
}

warm() { # measure fs fn [runs]
  local measure=$1 fs=$2 fn=$3 runs=${4:-$RUNS} i
  if [[ $fs != native ]] && ! is_mounted "${MNT[$fs]}"; then
    mount_fs "$fs" || { add "$measure" "$fs" err; return 0; }
  fi
  "$fn" "${MNT[$fs]}" 2>>"$LOGS/$fs.err" || true   # warm-up, not timed
  for ((i = 1; i <= runs; i++)); do
    if timed "$fn" "${MNT[$fs]}" 2>>"$LOGS/$fs.err"; then
      add "$measure" "$fs" "$ELAPSED"
    else
      add "$measure" "$fs" err
    fi
  done
  log "  $measure $fs:${RES[$measure,$fs]}"
}

# ferry (fs ferry or big) with the node cache warm: ferryd restarted (its
# memory cache empty), page cache dropped, fresh mount, page cache dropped.
# Returns non-zero if the mount failed.
nc_warm_mount() {
  umount_fs "$1"
  restart_ferryd "node cache warm sample"
  drop_caches
  mount_fs "$1" || { log "  $1: mount failed"; return 1; }
  drop_caches
}

mount_stat() { mount_fs "$1" && stat -L "${MNT[$1]}/usr/bin/python3" >/dev/null; }
ms() { awk -v s="$1" 'BEGIN { printf "%.3f", s * 1000 }'; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }
fmt1() { if [[ $1 =~ ^[0-9.]+$ ]]; then printf '%.1f' "$1"; else echo "$1"; fi; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

# ----------------------------------------------------------------- main ---
START=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
make_rootfs

read -r NFILES INPUT_BYTES < <(find "$ROOTFS" -type f -printf '%s\n' | awk '{ s += $1; n++ } END { print n + 0, s + 0 }')
NENTRIES=$(find "$ROOTFS" | wc -l)
INPUT_MB=$(awk -v b="$INPUT_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
log "tree: $NENTRIES entries, $NFILES regular files, $INPUT_MB MB"

# ---- builds (fresh output every run, input read cold)
section "build: $RUNS run(s) each"
mbps() { awk -v b="$INPUT_BYTES" -v t="$1" 'BEGIN { printf "%.6f", b / 1e6 / t }'; }
# After the page cache is dropped, each builder is started once (--help) so
# that its own program and libraries are in memory and only its input is
# read cold: the figure is throughput on the input, not how long a tool's
# shared libraries take to come off the disk (ferry's, with libcurl's
# dependencies, about 0.08 s).
warm_tool() { "$@" >/dev/null 2>&1 || true; }
for fs in erofs squashfuse ferry big; do umount_fs "$fs"; done
FERRY_ID=""
for ((r = 1; r <= RUNS; r++)); do
  rm -f "$EROFS_IMG"; drop_caches; warm_tool mkfs.erofs --help
  if timed timeout -k 5 "$ITEM_TIMEOUT" mkfs.erofs "${EROFS_ARGS[@]}" "$EROFS_IMG" "$ROOTFS" >"$LOGS/mkfs.erofs.log" 2>&1; then
    add build erofs "$(mbps "$ELAPSED")"; log "  mkfs.erofs: ${ELAPSED}s"
  else
    tail -n 20 "$LOGS/mkfs.erofs.log" >&2; die "mkfs.erofs failed"
  fi
  rm -f "$SQUASH_IMG"; drop_caches; warm_tool mksquashfs -version
  if timed timeout -k 5 "$ITEM_TIMEOUT" mksquashfs "$ROOTFS" "$SQUASH_IMG" -comp "$SQUASH_COMP" -noappend -no-progress \
       >"$LOGS/mksquashfs.log" 2>&1; then
    add build squashfuse "$(mbps "$ELAPSED")"; log "  mksquashfs: ${ELAPSED}s"
  else
    tail -n 20 "$LOGS/mksquashfs.log" >&2; die "mksquashfs failed"
  fi
  if ((!PEERS_ONLY)); then
    rm -rf "$STORE"; drop_caches; warm_tool "$FERRY" build --help
    if timed timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "file://$STORE" build "$ROOTFS" --tag "$TAG" "${FERRY_BUILD_ARGS[@]}" \
         >"$LOGS/ferry-build.out" 2>"$LOGS/ferry-build.log"; then
      add build ferry "$(mbps "$ELAPSED")"
      FERRY_ID=$(tail -n 1 "$LOGS/ferry-build.out")
      log "  ferry build: ${ELAPSED}s (image $FERRY_ID)"
    else
      tail -n 20 "$LOGS/ferry-build.log" >&2; die "ferry build failed (see $LOGS/ferry-build.log)"
    fi
  fi
done

RES[size,native]=$(awk -v b="$(du -sB1 "$ROOTFS" | cut -f1)" 'BEGIN { printf "%.6f", b / 1e6 }')
RES[size,erofs]=$(awk -v b="$(stat -c %s "$EROFS_IMG")" 'BEGIN { printf "%.6f", b / 1e6 }')
RES[size,squashfuse]=$(awk -v b="$(stat -c %s "$SQUASH_IMG")" 'BEGIN { printf "%.6f", b / 1e6 }')
((PEERS_ONLY)) || RES[size,ferry]=$(awk -v b="$(du -sB1 "$STORE" | cut -f1)" 'BEGIN { printf "%.6f", b / 1e6 }')

if ((DAEMON)); then
  # A fresh node cache and fresh logs for every run of the benchmark.
  rm -rf "$FERRYD_ROOT"
  mkdir -p "$FERRYD_ROOT"
  : >"$FERRYD_LOG"; : >"$LOGS/ferry-cache.log"; : >"$LOGS/ferry-cache-warm.json"
  start_ferryd "first start"
  log "ferryd: pid $FERRYD_PID, root $FERRYD_ROOT, --cache-size $CACHE_SIZE (log: $FERRYD_LOG)"
fi

# ---- correctness: every mount must show the native tree
VERIFY_NOTE="not checked (--no-verify)"
if ((VERIFY)); then
  section "verify: comparing each mount with the native tree"
  listing() {
    # shellcheck disable=SC2016
    timeout -k 5 "$ITEM_TIMEOUT" sh -c 'cd "$1" &&
      find . -printf "%p|%y|%s|%m|%U|%G|%l|%n\n" | sort &&
      find . -type f -print0 | sort -z | xargs -0r sha256sum' _ "$1"
  }
  # Directory sizes and link counts differ legitimately between filesystems.
  normalize() { awk -F'|' -v OFS='|' 'NF >= 8 { if ($2 == "d") { $3 = "-"; $8 = "-" } } { print }'; }
  listing "$ROOTFS" | normalize >"$LOGS/tree.native"
  VERIFY_NOTE="identical to native:"
  for fs in "${FSES[@]}"; do
    [[ $fs == native ]] && continue
    if ! mount_fs "$fs"; then
      VERIFY_NOTE+=" $fs=MOUNT-FAILED"; log "  $fs: mount failed"; continue
    fi
    listing "${MNT[$fs]}" 2>>"$LOGS/$fs.err" | normalize >"$LOGS/tree.$fs" || true
    if diff -u "$LOGS/tree.native" "$LOGS/tree.$fs" >"$LOGS/verify.$fs.diff"; then
      VERIFY_NOTE+=" $fs=yes"; log "  $fs: identical"
    else
      n=$(grep -c '^[-+][^-+]' "$LOGS/verify.$fs.diff" || true)
      VERIFY_NOTE+=" $fs=NO($n lines differ, logs/verify.$fs.diff)"
      log "  $fs: DIFFERS from native ($n lines, see $LOGS/verify.$fs.diff)"
    fi
    umount_fs "$fs"
  done
fi

# ---- cold measures: fresh mount + dropped caches for every sample
for measure in readall walk_cold py_cold; do
  case $measure in
    readall) fn=read_all ;; walk_cold) fn=walk ;; py_cold) fn=py_start ;;
  esac
  runs=$RUNS
  [[ $measure == py_cold ]] && runs=$PY_RUNS
  section "$measure: $runs cold run(s) each"
  for ((r = 1; r <= runs; r++)); do
    for fs in "${FSES[@]}"; do cold "$measure" "$fs" "$fn"; done
  done
done

# ---- warm measures: one untimed warm-up, then RUNS timed runs
for measure in walk_warm py_warm; do
  case $measure in walk_warm) fn=walk runs=$RUNS ;; py_warm) fn=py_start runs=$PY_RUNS ;; esac
  section "$measure: $runs warm run(s) each"
  for fs in "${FSES[@]}"; do warm "$measure" "$fs" "$fn" "$runs"; done
done

if ((!PEERS_ONLY)) && is_mounted "${MNT[ferry]}"; then
  timeout 30 "$FERRY" stats "${MNT[ferry]}" >"$LOGS/ferry-stats.json" 2>&1 || true
fi

# ---- python cold with a start-up profile: recorded once (untimed), replayed
# by ferryd on every fresh mount; removed afterwards so later runs stay lazy.
PROFILE_NOTE=""
if ((DAEMON)); then
  section "py_prof: recording a start-up profile, then $PY_RUNS cold run(s)"
  umount_fs ferry
  if timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "file://$STORE" profile record "$TAG" -- \
       env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1 \
       python3 -c "$PY_IMPORTS" >>"$LOGS/ferry-profile.log" 2>&1; then
    PROFILE_NOTE="Profile row: \`ferry profile record\` of the same python3 imports, once, untimed; $(tail -1 "$LOGS/ferry-profile.log" | cut -c1-120)."
    for ((r = 1; r <= PY_RUNS; r++)); do
      for fs in native ferry; do cold py_prof "$fs" py_start; done
    done
  else
    PROFILE_NOTE="Profile row: recording failed (see $LOGS/ferry-profile.log)."
  fi
  umount_fs ferry
  "$FERRY" --store "file://$STORE" profile rm "$TAG" >>"$LOGS/ferry-profile.log" 2>&1 || true
fi
for fs in erofs squashfuse ferry; do umount_fs "$fs"; done

# ---- node cache warm: the same read-all, chunks from the node cache
BIG_NOTE="" RAND_NOTE="" MEM_NOTE="" SMALL_NOTE=""
if ((DAEMON)); then
  section "readall_nc: read all with the node cache warm, $RUNS run(s)"
  umount_fs ferry
  if mount_fs ferry && read_all "${MNT[ferry]}" 2>>"$LOGS/ferry.err"; then   # fills the node cache
    umount_fs ferry
    for ((r = 1; r <= RUNS; r++)); do
      drop_caches
      if timed read_all "$ROOTFS" 2>>"$LOGS/native.err"; then add readall_nc native "$ELAPSED"; else add readall_nc native err; fi
      if nc_warm_mount ferry && timed read_all "${MNT[ferry]}" 2>>"$LOGS/ferry.err"; then
        add readall_nc ferry "$ELAPSED"
      else
        add readall_nc ferry err
      fi
      account_warm readall_nc "$r"
      umount_fs ferry
    done
    log "  readall_nc native:${RES[readall_nc,native]}"
    log "  readall_nc ferry:${RES[readall_nc,ferry]}"
  else
    add readall_nc ferry err; log "  readall_nc: warm-up read failed"
    umount_fs ferry
  fi

  # ---- the big file: stream and random reads, node cache warm
  make_big
  drop_caches
  if timed timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "file://$STORE" build "$BIG_DIR" --tag "$BIG_TAG" "${FERRY_BUILD_ARGS[@]}" \
       >"$LOGS/ferry-build-big.out" 2>"$LOGS/ferry-build-big.log"; then
    BIG_NOTE="built in $(printf '%.1f' "$ELAPSED") s ($(awk -v b="$BIG_BYTES" -v t="$ELAPSED" 'BEGIN { printf "%.0f", b / 1e6 / t }') MB/s)"
    log "big: $BIG_MIB MiB image $BIG_NOTE"
    # Warm-up: one full read through the mount, compared with the original.
    umount_fs big
    restart_ferryd "big file warm-up"
    if mount_fs big && timeout -k 5 "$ITEM_TIMEOUT" cmp "$BIG_FILE" "${MNT[big]}/data" >>"$LOGS/big.err" 2>&1; then
      BIG_NOTE+=", read through ferry = the original (cmp)"
    else
      BIG_NOTE+=", CONTENT CHECK FAILED (logs/big.err)"; log "  big: cmp through the mount failed"
    fi
    umount_fs big
    section "stream + random: $RUNS run(s) each"
    for ((r = 1; r <= RUNS; r++)); do
      drop_caches
      if timed stream "$BIG_FILE" 2>>"$LOGS/native.err"; then
        add stream native "$(awk -v b="$BIG_BYTES" -v t="$ELAPSED" 'BEGIN { printf "%.6f", b / 1e6 / t }')"
      else add stream native err; fi
      if nc_warm_mount big && timed stream "${MNT[big]}/data" 2>>"$LOGS/big.err"; then
        add stream ferry "$(awk -v b="$BIG_BYTES" -v t="$ELAPSED" 'BEGIN { printf "%.6f", b / 1e6 / t }')"
      else add stream ferry err; fi
      account_warm stream "$r"
      umount_fs big
      drop_caches
      if v=$(rand_read "$BIG_FILE" "$LOGS/fio.native.$r.json" 2>>"$LOGS/native.err"); then
        add rand native "$v"
      else add rand native err; fi
      if nc_warm_mount big && v=$(rand_read "${MNT[big]}/data" "$LOGS/fio.ferry.$r.json" 2>>"$LOGS/big.err"); then
        add rand ferry "$v"
      else add rand ferry err; fi
      account_warm rand "$r"
      umount_fs big
    done
    for m in stream rand; do
      for fs in native ferry; do log "  $m $fs:${RES[$m,$fs]:-}"; done
    done
  else
    tail -n 20 "$LOGS/ferry-build-big.log" >&2
    log "ferry build of the big file failed (see $LOGS/ferry-build-big.log)"
    BIG_NOTE="BUILD FAILED (logs/ferry-build-big.log)"
    for fs in native ferry; do add stream "$fs" err; add rand "$fs" err; done
  fi

  # ---- mount until usable (mount + stat of a file inside), node cache warm
  section "mount+stat: $RUNS run(s) each, page cache warm and dropped"
  for ((r = 1; r <= RUNS; r++)); do
    for fs in erofs squashfuse ferry; do
      umount_fs "$fs"   # an untimed mount first: the page cache is warm
      mount_stat "$fs" 2>>"$LOGS/$fs.err" || true
      umount_fs "$fs"
      if timed mount_stat "$fs" 2>>"$LOGS/$fs.err"; then add mountw "$fs" "$(ms "$ELAPSED")"; else add mountw "$fs" err; fi
      umount_fs "$fs"
      drop_caches
      if timed mount_stat "$fs" 2>>"$LOGS/$fs.err"; then add mountd "$fs" "$(ms "$ELAPSED")"; else add mountd "$fs" err; fi
      umount_fs "$fs"
    done
  done
  for m in mountw mountd; do
    for fs in erofs squashfuse ferry; do log "  $m $fs (ms):${RES[$m,$fs]}"; done
  done

  # ---- memory per mounted image: NIMAGES small distinct images in one ferryd
  section "memory: building $NIMAGES small images"
  rm -rf "$SMALL_SRC"
  cp -a "$ROOTFS/etc" "$SMALL_SRC"
  SMALL_ENTRIES=$(find "$SMALL_SRC" | wc -l)
  SMALL_MB=$(mb "$(find "$SMALL_SRC" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')")
  : >"$LOGS/ferry-build-small.log"
  small_ok=1
  t0=$EPOCHREALTIME
  for ((i = 0; i < NIMAGES; i++)); do
    echo "ferry-bench image $i" >"$SMALL_SRC/ferry-bench-marker"
    if ! timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "file://$STORE" build "$SMALL_SRC" --tag "$SMALL_TAG-$i" \
         >>"$LOGS/ferry-build-small.out" 2>>"$LOGS/ferry-build-small.log"; then
      small_ok=0; log "  ferry build of small image $i failed (see $LOGS/ferry-build-small.log)"; break
    fi
  done
  SMALL_BUILD=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  ndistinct=$(grep -E '^[0-9a-f]{64}$' "$LOGS/ferry-build-small.out" 2>/dev/null | sort -u | wc -l)
  rm -f "$LOGS/ferry-build-small.out"
  SMALL_NOTE="each a copy of the rootfs's /etc ($SMALL_ENTRIES entries, $SMALL_MB MB) with a marker file naming its number, so $ndistinct distinct image ids; built in $SMALL_BUILD s"
  if ((small_ok)); then
    MOUNT_MS=""
    for ((r = 1; r <= RUNS; r++)); do
      umount_below "$WORKDIR/mnt/small"
      restart_ferryd "memory sample"
      sleep 0.5
      rss0=$(rss_kb "$FERRYD_PID"); thr0=$(threads "$FERRYD_PID")
      bad=0 failed=0
      for ((i = 0; i < NIMAGES; i++)); do
        m=$WORKDIR/mnt/small/$i
        mkdir -p "$m"
        if timed ferry_mount "$SMALL_TAG-$i" "$m"; then
          MOUNT_MS+=" $(ms "$ELAPSED")"
          [[ $(cat "$m/ferry-bench-marker" 2>>"$LOGS/ferry.err") == "ferry-bench image $i" ]] || bad=$((bad + 1))
        else
          failed=$((failed + 1))
        fi
      done
      sleep 0.5
      rss1=$(rss_kb "$FERRYD_PID"); thr1=$(threads "$FERRYD_PID")
      mounted=$(awk -v p="$WORKDIR/mnt/small/" 'index($5, p) == 1' /proc/self/mountinfo | wc -l)
      if ((failed == 0 && bad == 0 && mounted == NIMAGES)); then
        add mem ferry "$(awk -v a="$rss0" -v b="$rss1" -v n="$NIMAGES" 'BEGIN { printf "%.6f", (b - a) * 1024 / 1e6 / n }')"
      else
        add mem ferry err
      fi
      for ((i = 0; i < NIMAGES; i++)); do
        is_mounted "$WORKDIR/mnt/small/$i" && { ferry_umount "$WORKDIR/mnt/small/$i" || true; }
      done
      sleep 0.5
      rss2=$(rss_kb "$FERRYD_PID")
      MEM_NOTE="ferryd VmRSS $(mb $((rss0 * 1024))) MB with 0 mounts, $(mb $((rss1 * 1024))) MB with $mounted mounted, $(mb $((rss2 * 1024))) MB after unmounting them all; threads $thr0 -> $thr1 (last run)"
      ((failed == 0)) || MEM_NOTE+="; $failed MOUNTS FAILED"
      ((bad == 0)) || MEM_NOTE+="; $bad markers read WRONG"
      log "  memory run $r: $MEM_NOTE"
    done
    umount_below "$WORKDIR/mnt/small"
    MOUNT_MED=$(median "$MOUNT_MS")
    MOUNT_MAX=$(tr ' ' '\n' <<<"$MOUNT_MS" | awk 'NF && $1 > m { m = $1 } END { print m + 0 }')
    MEM_NOTE+="; one 'ferry mount' each: median $(fmt1 "$MOUNT_MED") ms, max $(fmt1 "$MOUNT_MAX") ms"
  else
    add mem ferry err
    MEM_NOTE="BUILD FAILED"
  fi
  RAND_NOTE="fio 4 KiB randread, psync, queue depth 1, $RAND_MIB MiB ($((RAND_MIB * 256)) reads, no offset twice) per sample"

  timeout 30 "$FERRY" cache stats --daemon "$FERRYD_ROOT" >"$LOGS/ferry-cache-stats.txt" 2>&1 || true
  for fs in ferry big; do umount_fs "$fs"; done
  stop_ferryd
fi
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)
BUSY=$(awk -v a="$LOAD_START" -v b="$LOAD_END" -v n="$(nproc)" 'BEGIN { print (a > n / 2 || b > n / 2) ? 1 : 0 }')
((BUSY == 0)) || log "warning: the host was busy (load average $LOAD_START at start, $LOAD_END at end): numbers are noisy"
TOTAL=$(awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

# ferryd's log: anything but its ready/serving/stopping lines is reported.
FERRYD_ODD=0
if ((DAEMON)) && [[ -f $FERRYD_LOG ]]; then
  FERRYD_ODD=$(grep -cvE '^(=== bench |ferryd: (ready \(pid|serving image|signal [0-9]+: unmounting|stopped|image [0-9a-f]+: prefetching its start-up profile))' "$FERRYD_LOG" || true)
fi

# ---------------------------------------------------------------- table ---
declare -A MED=()
for key in "${!RES[@]}"; do MED[$key]=$(median "${RES[$key]}"); done

NC_MEASURES=" readall_nc stream rand mountw mountd mem "
val() { # measure fs -> median or n/a / err / skipped
  local v=${MED[$1,$2]:-}
  if [[ -n $v ]]; then echo "$v"
  elif [[ $2 == ferry ]] && ((PEERS_ONLY)); then echo skipped
  elif ((!DAEMON)) && [[ $NC_MEASURES == *" $1 "* ]]; then echo skipped
  else echo n/a; fi
}
fmt() { # value decimals
  case $1 in n/a|err|skipped) echo "$1" ;; *) awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }' ;; esac
}
ratio() { # a b -> a/b
  if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
  else
    echo "–"
  fi
}

BIG_LABEL="$BIG_MIB MiB"
((BIG_MIB % 1024 == 0)) && BIG_LABEL="$((BIG_MIB / 1024)) GiB"
ROWS=(
  "build|build throughput (MB/s of input, higher is better)|1"
  "size|size on disk (MB)|1"
  "mount|mount until ready, cold (s)|3"
  "readall|read all files, cold (s)|3"
  "readall_nc|read all files, page cache dropped, ferry node cache warm (s)|3"
  "walk_cold|walk + stat all entries, cold (s)|3"
  "walk_warm|walk + stat all entries, warm (s)|3"
  "py_cold|python3 imports in chroot, cold (s)|3"
  "py_warm|python3 imports in chroot, warm (s)|3"
  "py_prof|python3 imports in chroot, cold, ferry with a start-up profile (s)|3"
  "stream|stream a $BIG_LABEL random file, page cache dropped, node cache warm (MB/s, higher is better)|0"
  "rand|random 4 KiB reads of that file, page cache dropped, node cache warm (IOPS, higher is better)|0"
  "mountw|mount → stat inside, page cache warm, node cache warm (ms)|1"
  "mountd|mount → stat inside, page cache dropped, node cache warm (ms)|1"
  "mem|ferryd RSS per mounted image, $NIMAGES small images (MB)|2"
)

target() { # label measure op limit [abs]: abs compares ferry's value, else ferry/native
  local label=$1 m=$2 op=$3 limit=$4 v
  if [[ ${5:-} == abs ]]; then
    v=$(val "$m" ferry); [[ $v =~ ^[0-9.]+$ ]] && v=$(fmt "$v" 1) || v="–"
  else
    v=$(ratio "$(val "$m" ferry)" "$(val "$m" native)")
  fi
  if [[ $v == "–" ]]; then
    printf '%s: %s (%s)' "$label" "–" "n/a"
  elif awk -v v="$v" -v l="$limit" -v op="$op" 'BEGIN { exit !(op == "<=" ? v <= l : op == "<" ? v < l : v >= l) }'; then
    printf '%s: %s (PASS)' "$label" "$v"
  else
    printf '%s: %s (FAIL)' "$label" "$v"
  fi
}

if ((PEERS_ONLY)); then
  MODE_NOTE="ferry: not measured (--peers-only)."
elif ((DAEMON)); then
  MODE_NOTE="ferry column: mounted through ferryd (node cache on local disk, --cache-size $CACHE_SIZE, default memory cache), a fresh node cache per run.
Cold rows (mount, read all cold, walk cold, python cold): before every ferry sample the node cache is pruned to 0 and ferryd restarted (empty memory cache), so every chunk comes from the file:// store on the same disk.
Node cache warm rows: the node cache was filled by an untimed read through a mount; before every ferry sample ferryd is restarted (empty memory cache), the page cache dropped, the image mounted afresh and the page cache dropped again; the native column is measured in the same loop with the page cache dropped.
Mount → stat rows: ferryd already running (not restarted), ferry mount / mount -o loop / squashfuse started, then stat -L usr/bin/python3."
else
  MODE_NOTE="ferry column: 'ferry mount --no-daemon' (single process, no ferryd, no node cache); the node-cache rows are skipped."
fi

{
  echo "## ferry benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Command (as root, in $CMD_CWD): \`$CMDLINE\`"
  echo
  echo "Tree: Debian 12 minbase + python3, $NENTRIES entries, $NFILES regular files, $INPUT_MB MB (apparent)."
  echo "Host: $(uname -r), $(nproc) cores, load average $LOAD_START at start, $LOAD_END at end$( ((BUSY)) && echo ' (BUSY: numbers are noisy)'). Runs per item: $RUNS, python items $PY_RUNS (median)."
  echo "Peers: erofs = mkfs.erofs ${EROFS_OPTS:-(uncompressed)} + kernel loop mount;" \
       "squashfuse = mksquashfs -comp $SQUASH_COMP + squashfuse $(squashfuse --version 2>&1 | awk 'NR == 1 { print $2 }')."
  if ((!PEERS_ONLY)); then
    echo "ferry: $FERRY_SRC$( ((DAEMON)) && echo ", ferryd: $FERRYD_SRC") (repo $(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo '?')), image ${FERRY_ID:-?}."
  fi
  echo "$MODE_NOTE"
  echo "Tree check: $VERIFY_NOTE"
  echo
  echo "| measure | native | erofs | squashfuse | ferry | ferry/native | ferry/erofs | ferry/squashfuse |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for row in "${ROWS[@]}"; do
    IFS='|' read -r m label dec <<<"$row"
    line="| $label"
    for fs in "${ALL_FSES[@]}"; do line+=" | $(fmt "$(val "$m" "$fs")" "$dec")"; done
    f=$(val "$m" ferry)
    for fs in native erofs squashfuse; do line+=" | $(ratio "$f" "$(val "$m" "$fs")")"; done
    echo "$line |"
  done
  echo
  echo "Ratios are ferry/peer (times, sizes: < 1 = ferry better; MB/s, IOPS: > 1 = ferry better). n/a = not measured for that column."
  echo "Builds: page cache dropped before each, then the tool started once with --help, so its input is read cold but its own code is already in memory."
  echo
  echo "Targets: $(target 'read-all ≤ 1.5x native' readall '<=' 1.5);" \
       "$(target 'warm walk ≤ 1.5x native' walk_warm '<=' 1.5);" \
       "$(target 'python start (cold) ≤ 1.3x native' py_cold '<=' 1.3);" \
       "$(target 'build ≥ 150 MB/s' build '>=' 150 abs)."
  if ((DAEMON)); then
    echo "With a start-up profile: $(target 'python start (cold) ≤ 1.3x native' py_prof '<=' 1.3). $PROFILE_NOTE"
  fi
  if ((DAEMON)); then
    echo "Node cache targets: $(target 'read-all, node cache warm ≤ 1.3x native' readall_nc '<=' 1.3);" \
         "$(target 'stream ≥ 0.8x native' stream '>=' 0.8);" \
         "$(target 'mount → stat (page cache warm) < 50 ms' mountw '<' 50 abs);" \
         "$(target 'memory per image < 10 MB' mem '<' 10 abs)."
    echo
    echo "- Big file: $BIG_MIB MiB from /dev/urandom, alone in its own image; $BIG_NOTE."
    echo "- Random reads: $RAND_NOTE; ferry/native of IOPS."
    echo "- Node cache warm samples (all of them together): $(mb "$WARM_CACHE_BYTES") MB read from the node cache, $(mb "$WARM_STORE_BYTES") MB from the store, $WARM_MEM_HITS chunk hits in ferryd's memory, $WARM_READ_ERRORS read errors."
    echo "- Bytes ferry returned vs bytes it read from the node cache, all samples: read-all $(amplification readall_nc); stream $(amplification stream); random $(amplification rand)."
    echo "- Memory: $NIMAGES small images (not $NIMAGES copies of the rootfs: building those is too slow), $SMALL_NOTE; all mounted at once through one ferryd, one file read from each; (VmRSS with them − VmRSS with none) / $NIMAGES. $MEM_NOTE."
    echo "- ferryd: started $FERRYD_STARTS times; $FERRYD_ODD log lines other than ready/serving/stopping (logs/ferryd.log)."
    echo "- Load average at the start of each section: logs/run.log."
  fi
  echo
  echo "Total benchmark wall time: ${TOTAL}s."
} >"$WORKDIR/results.md"

{
  echo "Raw samples, $(date -u '+%Y-%m-%d %H:%M UTC') (s, MB, MB/s, IOPS or ms):"
  for key in $(printf '%s\n' "${!RES[@]}" | sort); do echo "  $key:${RES[$key]}"; done
} >"$LOGS/samples.txt"

echo
cat "$WORKDIR/results.md"
echo
log "results written to $WORKDIR/results.md (raw samples: $LOGS/samples.txt)"
