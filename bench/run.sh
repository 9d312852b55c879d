#!/usr/bin/env bash
# ferry benchmark: ferry side by side with a native directory, kernel erofs
# and squashfuse, on the same Debian 12 root filesystem, in one run.
# Run as root.  See --help.
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

WORKDIR=/var/tmp/ferry-bench
RUNS=3
MIRROR=""
PEERS_ONLY=0
VERIFY=1
SQUASH_COMP=zstd
EROFS_OPTS=""
FERRY_BUILD_OPTS=""
FERRY_MOUNT_OPTS=""
REBUILD_ROOTFS=0
TAG=bench-debian
ITEM_TIMEOUT=600
PY_IMPORTS='import json, sqlite3, asyncio, email, http.client'

usage() {
  cat <<EOF
Usage: sudo bench/run.sh [options]

Benchmarks ferry against a native directory, kernel erofs (loop mount) and
squashfs (squashfuse) on one Debian 12 (bookworm, minbase + python3) root
filesystem, and prints a markdown table with ratios.  The table is also
written to WORKDIR/results.md; logs go to WORKDIR/logs/.

Measures (each timed item is run --runs times, the median is reported):
  build      input MB/s (apparent size of regular files / wall time) of
             mkfs.erofs, mksquashfs and 'ferry build' (fresh output each run)
  size       image / store size
  mount      wall time of the mount command until the mount is usable
  read-all   cat every regular file to /dev/null, page cache dropped, fresh mount
  walk       find -printf '%s %m %U' (lstat of every entry), cold and warm
  python     chroot M python3 -c '$PY_IMPORTS', cold and warm

Options:
  --workdir DIR        work directory (default: $WORKDIR); the root
                       filesystem is made there once and reused
  --runs N             timed repetitions per item (default: $RUNS)
  --mirror URL         Debian mirror for debootstrap (default: from
                       /etc/apt sources, else http://deb.debian.org/debian)
  --peers-only         skip ferry (measure native, erofs, squashfuse only)
  --no-verify          skip the check that every mount shows the same tree
                       (names, types, sizes, modes, owners, links, file
                       contents) as the native directory
  --squashfs-comp C    mksquashfs compressor (default: $SQUASH_COMP)
  --erofs-opts "..."   extra mkfs.erofs options, e.g. "-zlz4hc"
                       (default: none, i.e. uncompressed)
  --ferry-build-opts "..."   extra options for 'ferry build'
  --ferry-mount-opts "..."   extra options for 'ferry mount'
  --rebuild-rootfs     remake the root filesystem even if cached
  --timeout SECS       limit for one timed item or one mount/unmount/verify
                       (default: $ITEM_TIMEOUT); a hung FUSE mount is aborted
  -h, --help           show this help

Environment:
  FERRY   ferry binary (default: <repo>/build/ferry)

Ratios are ferry/peer: for times and sizes lower is better for ferry (< 1
means ferry is faster/smaller); for build MB/s higher is better (> 1 means
ferry builds faster).  MB = 10^6 bytes.
EOF
}

# Messages go to the original stderr (fd 8) even inside redirections.
exec 8>&2
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&8; }
die() { printf 'error: %s\n' "$*" >&8; exit 1; }

while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --workdir) WORKDIR=${2:?--workdir needs a value}; shift 2 ;;
    --workdir=*) WORKDIR=${1#*=}; shift ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --mirror) MIRROR=${2:?--mirror needs a value}; shift 2 ;;
    --mirror=*) MIRROR=${1#*=}; shift ;;
    --peers-only) PEERS_ONLY=1; shift ;;
    --no-verify) VERIFY=0; shift ;;
    --squashfs-comp) SQUASH_COMP=${2:?}; shift 2 ;;
    --squashfs-comp=*) SQUASH_COMP=${1#*=}; shift ;;
    --erofs-opts) EROFS_OPTS=${2?}; shift 2 ;;
    --erofs-opts=*) EROFS_OPTS=${1#*=}; shift ;;
    --ferry-build-opts) FERRY_BUILD_OPTS=${2?}; shift 2 ;;
    --ferry-build-opts=*) FERRY_BUILD_OPTS=${1#*=}; shift ;;
    --ferry-mount-opts) FERRY_MOUNT_OPTS=${2?}; shift 2 ;;
    --ferry-mount-opts=*) FERRY_MOUNT_OPTS=${1#*=}; shift ;;
    --rebuild-rootfs) REBUILD_ROOTFS=1; shift ;;
    --timeout) ITEM_TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
    --timeout=*) ITEM_TIMEOUT=${1#*=}; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $ITEM_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer"
[[ $WORKDIR == /* ]] || WORKDIR=$PWD/$WORKDIR
[[ $WORKDIR =~ ^[A-Za-z0-9/._+-]+$ ]] || die "--workdir must not contain spaces or special characters"
read -ra EROFS_ARGS <<<"$EROFS_OPTS"
read -ra FERRY_BUILD_ARGS <<<"$FERRY_BUILD_OPTS"
read -ra FERRY_MOUNT_ARGS <<<"$FERRY_MOUNT_OPTS"
((EUID == 0)) || die "must be run as root (mounts, chroot, drop_caches)"

# ---------------------------------------------------------------- tools ---
need_pkgs=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
need_cmd debootstrap debootstrap
need_cmd mkfs.erofs erofs-utils
need_cmd mksquashfs squashfs-tools
need_cmd squashfuse squashfuse
need_cmd fusermount3 fuse3
need_cmd python3 python3
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
if ((${#need_pkgs[@]})); then
  log "installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
[[ -w /proc/sys/vm/drop_caches ]] || die "/proc/sys/vm/drop_caches is not writable"
[[ -e /dev/fuse ]] || die "/dev/fuse missing"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null || true
grep -qw erofs /proc/filesystems || die "kernel has no erofs support"
CHROOT=$(command -v chroot)

FERRY=${FERRY:-$REPO_ROOT/build/ferry}
if ((PEERS_ONLY)); then
  FSES=(native erofs squashfuse)
else
  [[ $FERRY == /* ]] || FERRY=$PWD/$FERRY
  [[ -x $FERRY ]] || die "ferry binary not found at $FERRY (build it first, set \$FERRY, or use --peers-only)"
  FSES=(native erofs squashfuse ferry)
fi
ALL_FSES=(native erofs squashfuse ferry)

# -------------------------------------------------------------- workdir ---
mkdir -p "$WORKDIR"/{logs,img,mnt/erofs,mnt/squashfuse,mnt/ferry}
exec 9>"$WORKDIR/.lock"
flock -n 9 || die "another benchmark is running on $WORKDIR"
ROOTFS=$WORKDIR/rootfs
if ((!PEERS_ONLY)); then
  # Snapshot the binary: a rebuild during the run must not mix two versions.
  FERRY_SRC=$FERRY
  FERRY=$WORKDIR/ferry.bin
  cp "$FERRY_SRC" "$FERRY.tmp" && mv "$FERRY.tmp" "$FERRY"
fi
LOGS=$WORKDIR/logs
EROFS_IMG=$WORKDIR/img/rootfs.erofs
SQUASH_IMG=$WORKDIR/img/rootfs.squashfs
STORE=$WORKDIR/store
declare -A MNT=([native]=$ROOTFS [erofs]=$WORKDIR/mnt/erofs
                [squashfuse]=$WORKDIR/mnt/squashfuse [ferry]=$WORKDIR/mnt/ferry)

is_mounted() { awk -v p="$1" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo; }

# Unmount every mount at or below $1, deepest first.
umount_below() {
  local m
  awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

mount_fs() {
  local fs=$1 m=${MNT[$1]}
  case "$fs" in
    native) ;;
    erofs) timeout -k 5 "$ITEM_TIMEOUT" mount -t erofs -o loop,ro "$EROFS_IMG" "$m" ;;
    squashfuse) timeout -k 5 "$ITEM_TIMEOUT" squashfuse "$SQUASH_IMG" "$m" ;;
    ferry) timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "file://$STORE" mount "$TAG" "$m" "${FERRY_MOUNT_ARGS[@]}" \
             >>"$LOGS/ferry-mount.log" 2>&1 ;;
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
    ferry) timeout -k 5 60 "$FERRY" umount "$m" >>"$LOGS/ferry-mount.log" 2>&1 ||
             log "warning: 'ferry umount $m' failed (see $LOGS/ferry-mount.log)" ;;
  esac
  for ((i = 0; i < 50; i++)); do is_mounted "$m" || return 0; sleep 0.1; done
  log "warning: $m still mounted, aborting/lazy unmount"
  fuse_abort "$m"
  umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
}

# Abort the FUSE connection behind mount point $1 (unblocks hung requests).
fuse_abort() {
  local dev
  dev=$(awk -v p="$1" '$5 == p && $9 ~ /^fuse/ { print $3 }' /proc/self/mountinfo | tail -n 1)
  [[ -n $dev ]] || return 0
  [[ -d /sys/fs/fuse/connections/${dev#*:} ]] ||
    mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true
  echo 1 >"/sys/fs/fuse/connections/${dev#*:}/abort" 2>/dev/null || true
}

cleanup() {
  local rc=$? fs
  trap - EXIT INT TERM
  for fs in erofs squashfuse ferry; do umount_fs "$fs" 2>/dev/null || true; done
  umount_below "$WORKDIR/mnt"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Leftovers of an earlier run that was killed hard.
umount_below "$WORKDIR/mnt"

# --------------------------------------------------------------- rootfs ---
detect_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                       if ($(i + 1) == "bookworm" && $i ~ /^https?:/) { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
         { uris = ""; suites = ""; types = ""
           for (i = 1; i <= NF; i++) {
             if ($i ~ /^[ \t]*#/) continue
             if ($i ~ /^URIs:/) uris = substr($i, 6)
             else if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
             else if ($i ~ /^Types:/) types = " " substr($i, 7) " " }
           if (types ~ /[ \t]deb[ \t]/ && suites ~ /[ \t]bookworm[ \t]/) {
             split(uris, u, /[ \t]+/)
             for (j in u) if (u[j] ~ /^https?:/) { print u[j]; exit } } }' "$f"
  done
}

make_rootfs() {
  local tmp=$WORKDIR/rootfs.tmp tarball=$WORKDIR/rootfs.tar.gz
  if ((REBUILD_ROOTFS)); then
    rm -f "$WORKDIR/rootfs.done" "$tarball"
  fi
  if [[ -f $WORKDIR/rootfs.done && -d $ROOTFS ]]; then
    log "reusing root filesystem $ROOTFS"
  else
    umount_below "$tmp"; umount_below "$ROOTFS"
    rm -rf "$tmp" "$ROOTFS"
    if [[ -s $tarball ]]; then
      log "restoring root filesystem from $tarball"
      mkdir -p "$tmp"
      tar -C "$tmp" --numeric-owner --xattrs --xattrs-include='*' -xpzf "$tarball"
    else
      [[ -n $MIRROR ]] || MIRROR=$(detect_mirror | head -n1 || true)
      [[ -n $MIRROR ]] || MIRROR=http://deb.debian.org/debian
      log "debootstrap bookworm from $MIRROR (a few minutes; log: $LOGS/debootstrap.log)"
      if ! debootstrap --variant=minbase --include=python3 bookworm "$tmp" "$MIRROR" \
           >"$LOGS/debootstrap.log" 2>&1; then
        umount_below "$tmp"
        tail -n 20 "$LOGS/debootstrap.log" >&2
        die "debootstrap failed (see $LOGS/debootstrap.log)"
      fi
      umount_below "$tmp"
    fi
    mv "$tmp" "$ROOTFS"
    touch "$WORKDIR/rootfs.done"
  fi
  if [[ ! -s $tarball ]]; then
    log "saving root filesystem as $tarball"
    tar -C "$ROOTFS" --numeric-owner --xattrs --xattrs-include='*' -czf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
  fi
  [[ -x $ROOTFS/usr/bin/python3 ]] || die "$ROOTFS has no python3; rerun with --rebuild-rootfs"
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

median() {
  tr ' ' '\n' <<<"$*" | awk 'NF { if ($1 == "err") e = 1; else v[n++] = $1 + 0 }
    END { if (e || n == 0) { print (e ? "err" : "n/a"); exit }
          # insertion sort: n is small
          for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
          m = (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
          printf "%.6f\n", m }'
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

# Fresh mount (timed into "mount"), caches dropped, then the timed item.
cold() {
  local measure=$1 fs=$2 fn=$3
  umount_fs "$fs"
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

warm() {
  local measure=$1 fs=$2 fn=$3 i
  if [[ $fs != native ]] && ! is_mounted "${MNT[$fs]}"; then
    mount_fs "$fs" || { add "$measure" "$fs" err; return 0; }
  fi
  "$fn" "${MNT[$fs]}" 2>>"$LOGS/$fs.err" || true   # warm-up, not timed
  for ((i = 1; i <= RUNS; i++)); do
    if timed "$fn" "${MNT[$fs]}" 2>>"$LOGS/$fs.err"; then
      add "$measure" "$fs" "$ELAPSED"
    else
      add "$measure" "$fs" err
    fi
  done
  log "  $measure $fs:${RES[$measure,$fs]}"
}

# ----------------------------------------------------------------- main ---
START=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
make_rootfs

read -r NFILES INPUT_BYTES < <(find "$ROOTFS" -type f -printf '%s\n' | awk '{ s += $1; n++ } END { print n + 0, s + 0 }')
NENTRIES=$(find "$ROOTFS" | wc -l)
INPUT_MB=$(awk -v b="$INPUT_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
log "tree: $NENTRIES entries, $NFILES regular files, $INPUT_MB MB"

# ---- builds (fresh output every run, input read cold)
log "build: $RUNS run(s) each"
mbps() { awk -v b="$INPUT_BYTES" -v t="$1" 'BEGIN { printf "%.6f", b / 1e6 / t }'; }
for fs in erofs squashfuse ferry; do umount_fs "$fs"; done
FERRY_ID=""
for ((r = 1; r <= RUNS; r++)); do
  rm -f "$EROFS_IMG"; drop_caches
  if timed timeout -k 5 "$ITEM_TIMEOUT" mkfs.erofs "${EROFS_ARGS[@]}" "$EROFS_IMG" "$ROOTFS" >"$LOGS/mkfs.erofs.log" 2>&1; then
    add build erofs "$(mbps "$ELAPSED")"; log "  mkfs.erofs: ${ELAPSED}s"
  else
    tail -n 20 "$LOGS/mkfs.erofs.log" >&2; die "mkfs.erofs failed"
  fi
  rm -f "$SQUASH_IMG"; drop_caches
  if timed timeout -k 5 "$ITEM_TIMEOUT" mksquashfs "$ROOTFS" "$SQUASH_IMG" -comp "$SQUASH_COMP" -noappend -no-progress \
       >"$LOGS/mksquashfs.log" 2>&1; then
    add build squashfuse "$(mbps "$ELAPSED")"; log "  mksquashfs: ${ELAPSED}s"
  else
    tail -n 20 "$LOGS/mksquashfs.log" >&2; die "mksquashfs failed"
  fi
  if ((!PEERS_ONLY)); then
    rm -rf "$STORE"; drop_caches
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

# ---- correctness: every mount must show the native tree
VERIFY_NOTE="not checked (--no-verify)"
if ((VERIFY)); then
  log "verify: comparing each mount with the native tree"
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
  log "$measure: $RUNS cold run(s) each"
  for ((r = 1; r <= RUNS; r++)); do
    for fs in "${FSES[@]}"; do cold "$measure" "$fs" "$fn"; done
  done
done

# ---- warm measures: one untimed warm-up, then RUNS timed runs
for measure in walk_warm py_warm; do
  case $measure in walk_warm) fn=walk ;; py_warm) fn=py_start ;; esac
  log "$measure: $RUNS warm run(s) each"
  for fs in "${FSES[@]}"; do warm "$measure" "$fs" "$fn"; done
done

if ((!PEERS_ONLY)) && is_mounted "${MNT[ferry]}"; then
  timeout 30 "$FERRY" stats "${MNT[ferry]}" >"$LOGS/ferry-stats.json" 2>&1 || true
fi
for fs in erofs squashfuse ferry; do umount_fs "$fs"; done
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)
BUSY=$(awk -v a="$LOAD_START" -v b="$LOAD_END" -v n="$(nproc)" 'BEGIN { print (a > n / 2 || b > n / 2) ? 1 : 0 }')
((BUSY == 0)) || log "warning: the host was busy (load average $LOAD_START at start, $LOAD_END at end): numbers are noisy"
TOTAL=$(awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

# ---------------------------------------------------------------- table ---
declare -A MED=()
for key in "${!RES[@]}"; do MED[$key]=$(median "${RES[$key]}"); done

val() { # measure fs -> median or n/a / err / skipped
  local v=${MED[$1,$2]:-}
  if [[ -n $v ]]; then echo "$v"
  elif [[ $2 == ferry ]] && ((PEERS_ONLY)); then echo skipped
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

ROWS=(
  "build|build throughput (MB/s of input, higher is better)|1"
  "size|size on disk (MB)|1"
  "mount|mount until ready (s)|3"
  "readall|read all files, cold (s)|3"
  "walk_cold|walk + stat all entries, cold (s)|3"
  "walk_warm|walk + stat all entries, warm (s)|3"
  "py_cold|python3 imports in chroot, cold (s)|3"
  "py_warm|python3 imports in chroot, warm (s)|3"
)

target() { # label measure peer op limit [absolute]
  local label=$1 m=$2 op=$3 limit=$4 v
  if [[ $m == build ]]; then
    v=$(val build ferry); [[ $v =~ ^[0-9.]+$ ]] && v=$(fmt "$v" 1) || v="–"
  else
    v=$(ratio "$(val "$m" ferry)" "$(val "$m" native)")
  fi
  if [[ $v == "–" ]]; then
    printf '%s: %s (%s)' "$label" "–" "n/a"
  elif awk -v v="$v" -v l="$limit" -v op="$op" 'BEGIN { exit !(op == "<=" ? v <= l : v >= l) }'; then
    printf '%s: %s (PASS)' "$label" "$v"
  else
    printf '%s: %s (FAIL)' "$label" "$v"
  fi
}

{
  echo "## ferry benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Tree: Debian 12 minbase + python3, $NENTRIES entries, $NFILES regular files, $INPUT_MB MB (apparent)."
  echo "Host: $(uname -r), $(nproc) cores, load average $LOAD_START at start, $LOAD_END at end$( ((BUSY)) && echo ' (BUSY: numbers are noisy)'). Runs per item: $RUNS (median)."
  echo "Peers: erofs = mkfs.erofs ${EROFS_OPTS:-(uncompressed)} + kernel loop mount;" \
       "squashfuse = mksquashfs -comp $SQUASH_COMP + squashfuse $(squashfuse --version 2>&1 | awk 'NR == 1 { print $2 }')."
  ((PEERS_ONLY)) || echo "ferry: $FERRY_SRC (repo $(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo '?')), image ${FERRY_ID:-?}."
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
  echo "Ratios are ferry/peer (times, sizes: < 1 = ferry better; build MB/s: > 1 = ferry better)."
  echo
  echo "Targets: $(target 'read-all ≤ 1.5x native' readall '<=' 1.5);" \
       "$(target 'warm walk ≤ 1.5x native' walk_warm '<=' 1.5);" \
       "$(target 'python start (cold) ≤ 1.3x native' py_cold '<=' 1.3);" \
       "$(target 'build ≥ 150 MB/s' build '>=' 150)."
  echo
  echo "Total benchmark wall time: ${TOTAL}s."
} >"$WORKDIR/results.md"

{
  echo "Raw samples, $(date -u '+%Y-%m-%d %H:%M UTC') (s, MB or MB/s):"
  for key in $(printf '%s\n' "${!RES[@]}" | sort); do echo "  $key:${RES[$key]}"; done
} >"$LOGS/samples.txt"

echo
cat "$WORKDIR/results.md"
echo
log "results written to $WORKDIR/results.md (raw samples: $LOGS/samples.txt)"
