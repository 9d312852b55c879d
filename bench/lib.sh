# Shared helpers of the benchmark scripts (bench/run.sh, bench/coldstart.sh).
# Sourced, not run. Expects WORKDIR, ROOTFS, LOGS, MIRROR and REBUILD_ROOTFS
# to be set before make_rootfs is called.

# Messages go to the original stderr (fd 8) even inside redirections, and
# (once the work directory is set up) to $RUN_LOG.
exec 8>&2
RUN_LOG=""
log() {
  local line
  line=$(printf '[%s] %s' "$(date +%H:%M:%S)" "$*")
  printf '%s\n' "$line" >&8
  [[ -z $RUN_LOG ]] || printf '%s\n' "$line" >>"$RUN_LOG"
}
die() { log "error: $*"; exit 1; }

# The repository (this file is in its bench/) and where the script was run.
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMD_CWD=$PWD

# Installs the Debian package of each missing command: install_missing
# CMD=PACKAGE ... (a CMD with a slash is checked as a path).
install_missing() {
  local spec cmd need=()
  for spec in "$@"; do
    cmd=${spec%%=*}
    if [[ $cmd == */* ]]; then [[ -x $cmd ]] || need+=("${spec#*=}")
    else command -v "$cmd" >/dev/null 2>&1 || need+=("${spec#*=}"); fi
  done
  ((${#need[@]})) || return 0
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
}

# The command as typed, with the binaries' variables, for the results header:
# typed_command "$0" "$@".
typed_command() {
  local line=""
  [[ -n ${FERRY:-} ]] && line+="FERRY=$(printf '%q' "$FERRY") "
  [[ -n ${FERRYD:-} ]] && line+="FERRYD=$(printf '%q' "$FERRYD") "
  line+=$(printf '%q ' "$@")
  printf '%s\n' "${line% }"
}

# Snapshot the binaries: a rebuild during the run must not mix two versions.
snapshot_bin() { # src dst
  cp "$1" "$2.tmp" && mv "$2.tmp" "$2"
  "$2" --help >/dev/null 2>&1 || die "the copy of $1 does not run (caught in the middle of a rebuild?)"
}
# ferry execs ferry-tool from its own directory: both are copied.
snapshot_ferry() { # src dst
  snapshot_bin "$(dirname "$1")/ferry-tool" "$(dirname "$2")/ferry-tool"
  snapshot_bin "$1" "$2"
}

is_mounted() { awk -v p="$1" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo; }

# Unmount every mount at or below $1, deepest first.
umount_below() {
  local m
  awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}

# Before every sample: a running ferryd first writes the chunks waiting for
# node cache admission (it defers them to a quiet moment, which would
# otherwise fall in the next sample, of whatever filesystem), then the page
# cache is written back and dropped.
drop_caches() {
  if [[ -n ${FERRYD_PID:-} ]] && proc_alive "$FERRYD_PID"; then
    timeout -k 5 120 "$FERRY" cache stats --flush --daemon "$FERRYD_ROOT" >/dev/null 2>&1 || true
  fi
  sync; echo 3 >/proc/sys/vm/drop_caches
}

# True while process $1 exists and is not a zombie.
proc_alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $st && $st != Z ]]
}

# SIGTERM to process $1 (named $2 in the log), SIGKILL after 30 s.
stop_pid() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  proc_alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 600; i++)); do proc_alive "$pid" || break; sleep 0.05; done
  if proc_alive "$pid"; then
    log "warning: $2 (pid $pid) still running 30 s after SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.3
  fi
  wait "$pid" 2>/dev/null || true
}

# Starts "$FERRYD" with the arguments given, in its own session, logging to
# $FERRYD_LOG, and waits for its "ready" line: sets FERRYD_PID and counts
# FERRYD_STARTS.
FERRYD_PID="" FERRYD_STARTS=0
launch_ferryd() {
  local off pid="" launcher i
  off=$(stat -c %s "$FERRYD_LOG")
  setsid "$FERRYD" "$@" </dev/null >>"$FERRYD_LOG" 2>&1 &
  launcher=$!
  for ((i = 0; i < 300; i++)); do
    pid=$(tail -c +$((off + 1)) "$FERRYD_LOG" | sed -n 's/^ferryd: ready (pid \([0-9]*\)).*/\1/p' | head -n 1)
    [[ -n $pid ]] && break
    proc_alive "$launcher" || break
    sleep 0.05
  done
  if [[ -z $pid ]]; then
    tail -n 20 "$FERRYD_LOG" >&8
    stop_pid "$launcher" ferryd
    die "ferryd did not start (see $FERRYD_LOG)"
  fi
  FERRYD_PID=$pid
  FERRYD_STARTS=$((FERRYD_STARTS + 1))
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

median() {
  tr ' ' '\n' <<<"$*" | awk 'NF { if ($1 == "err") e = 1; else v[n++] = $1 + 0 }
    END { if (e || n == 0) { print (e ? "err" : "n/a"); exit }
          # insertion sort: n is small
          for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
          m = (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
          printf "%.6f\n", m }'
}

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
