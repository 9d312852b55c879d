# Shared helpers of the benchmark scripts (bench/run.sh, bench/coldstart.sh,
# bench/snapshot.sh). Sourced, not run. Expects WORKDIR, ROOTFS, LOGS, MIRROR
# and REBUILD_ROOTFS to be set before make_rootfs is called; the s3rver
# helpers expect S3RVER_JS, S3_DATA, S3_LOG, S3_PIDFILE and BUCKET.

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

# Defaults every benchmark starts from (a script changes its own after
# sourcing this, and its options change them again): the work directory
# (its root filesystem is shared), runs per item, ferryd's node cache, the
# time one item may take, the Debian mirror, and the Python workload.
WORKDIR=/var/tmp/ferry-bench
RUNS=3
CACHE_SIZE=4G
ITEM_TIMEOUT=300
MIRROR=""
REBUILD_ROOTFS=0
PY_IMPORTS='import json, sqlite3, asyncio, email, http.client'
WORKLOAD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The repository (this file is in its bench/) and where the script was run.
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMD_CWD=$PWD

# In an option loop, at "--name VALUE" or "--name=VALUE": take_opt VAR
# "$@" sets VAR to VALUE and OPT_SHIFT to the number of words it took.
take_opt() {
  local var=$1
  shift
  if [[ $1 == *=* ]]; then
    printf -v "$var" '%s' "${1#*=}"
    OPT_SHIFT=1
  else
    (($# >= 2)) || die "$1 needs a value"
    printf -v "$var" '%s' "$2"
    OPT_SHIFT=2
  fi
}

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

# Stops the ferryd launch_ferryd started (SIGTERM: it unmounts what it
# serves; SIGKILL after 30 s), removes its pid file and unmounts whatever
# is left below DIR (a killed daemon's mounts).
stop_launched_ferryd() { # pidfile dir
  [[ -n $FERRYD_PID ]] || return 0
  stop_pid "$FERRYD_PID" ferryd
  FERRYD_PID=""
  rm -f "$1"
  umount_below "$2"
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

# ------------------------------------------------------ time and units ---
now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

# Link settings "LATENCY/BANDWIDTH" in the fault store's units
# (chunkstore/fault_store.h, as its ParseSeconds/ParseRate read them):
# to_seconds 20ms -> 0.020000000; to_bps 100MB -> 100000000.
to_seconds() {
  awk -v v="$1" 'BEGIN { if (!match(v, /^[0-9.]+/)) exit 1; x = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
    if (u == "" || u == "s") f = 1; else if (u == "ms") f = 1e-3; else if (u == "us") f = 1e-6; else exit 1
    printf "%.9f\n", x * f }'
}
to_bps() {
  awk -v v="$1" 'BEGIN { if (!match(v, /^[0-9.]+/)) exit 1; x = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
    sub(/[Bb]$/, "", u)
    if (u == "") f = 1; else if (u == "K" || u == "k") f = 1e3; else if (u == "M" || u == "m") f = 1e6
    else if (u == "G" || u == "g") f = 1e9; else exit 1
    printf "%.0f\n", x * f }'
}

# Link setting "LATENCY/BANDWIDTH" (e.g. 20ms/100MB) -> LINK_LAT_S
# (seconds), LINK_BPS (bytes per second) and LINK_LABEL ("20 ms, 100
# MB/s"); dies naming the setting if it is not one.
parse_link_setting() { # setting
  [[ $1 == */* ]] || die "bad link setting '$1' (want LATENCY/BANDWIDTH, e.g. 20ms/100MB)"
  LINK_LAT_S=$(to_seconds "${1%%/*}") || die "bad latency in link setting '$1' (e.g. 20ms, 2ms, 500us)"
  LINK_BPS=$(to_bps "${1#*/}") || die "bad bandwidth in link setting '$1' (e.g. 100MB, 1GB)"
  ((LINK_BPS > 0)) || die "bandwidth must be > 0 in link setting '$1'"
  LINK_LABEL=$(awk -v l="$LINK_LAT_S" -v b="$LINK_BPS" 'BEGIN {
    printf "%g ms, ", l * 1e3; if (b >= 1e9) printf "%g GB/s", b / 1e9; else printf "%g MB/s", b / 1e6 }')
}

# ------------------------------------------------- host and binaries ---
# For the benchmarks that serve a store from s3rver to a chrooted workload
# (coldstart.sh, snapshot.sh): checks the host and sets S3RVER_JS, CHROOT,
# HOST_PY (the host's python3 for JSON, not a pyenv shim), FERRY and
# FERRYD (absolute paths; from the environment if set there).
check_host_and_binaries() {
  S3RVER_JS=$REPO_ROOT/tests/s3/node_modules/s3rver/bin/s3rver.js
  [[ -f $S3RVER_JS ]] || die "s3rver missing at $S3RVER_JS (run scripts/install-deps.sh)"
  [[ -w /proc/sys/vm/drop_caches ]] || die "/proc/sys/vm/drop_caches is not writable"
  [[ -e /dev/fuse ]] || die "/dev/fuse missing"
  CHROOT=$(command -v chroot) || die "chroot not found"
  HOST_PY=/usr/bin/python3
  [[ -x $HOST_PY ]] || HOST_PY=$(command -v python3)
  FERRY=${FERRY:-$REPO_ROOT/build/ferry}
  [[ $FERRY == /* ]] || FERRY=$PWD/$FERRY
  FERRYD=${FERRYD:-$(dirname "$FERRY")/ferryd}
  [[ $FERRYD == /* ]] || FERRYD=$PWD/$FERRYD
  [[ -x $FERRY ]] || die "ferry binary not found at $FERRY (build it first or set \$FERRY)"
  [[ -x $FERRYD ]] || die "ferryd binary not found at $FERRYD (build it first or set \$FERRYD)"
}

# Creates $WORKDIR and holds its lock on fd 9 until the script exits: one
# benchmark at a time per work directory.
lock_workdir() {
  mkdir -p "$WORKDIR"
  exec 9>"$WORKDIR/.lock"
  flock -n 9 || die "another benchmark is running on $WORKDIR ($WORKDIR/.lock is held)"
}

# Stops what an earlier run killed hard left running: for each of ferryd
# and s3rver, the pid in DIR/NAME.pid if that process is still the one
# (its command line matches the extended regex PATTERN).
stop_leftovers() { # dir pattern
  local what f old
  for what in ferryd s3rver; do
    f=$1/$what.pid
    [[ -r $f ]] || continue
    old=$(cat "$f")
    if [[ $old =~ ^[0-9]+$ ]] && proc_alive "$old" && tr '\0' ' ' <"/proc/$old/cmdline" | grep -qE -- "$2"; then
      log "stopping the $what (pid $old) of an earlier run"
      stop_pid "$old" "$what"
    fi
    rm -f "$f"
  done
}

# s3rver takes any credentials; every ferry process (and ferryd) reads them
# from the environment.
use_s3rver_credentials() {
  export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
  unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 || true
}

# ------------------------------------------------------------- s3rver ---
# s3rver on loopback with bucket $BUCKET, data in $S3_DATA (emptied first),
# its request log in $S3_LOG (without --silent: path, status and size of
# each request are the server-side count of what a run asked for); sets
# S3_PID, S3_PORT and ENDPOINT. As tests/s3/start-s3rver.sh: the legacy
# OpenSSL provider, since s3rver's List tokens use DES.
S3_PID="" S3_PORT="" ENDPOINT=""
start_s3rver() {
  local i
  [[ -f $S3RVER_JS ]] || die "s3rver missing at $S3RVER_JS (run scripts/install-deps.sh)"
  rm -rf "$S3_DATA"
  mkdir -p "$S3_DATA"
  setsid node --openssl-legacy-provider "$S3RVER_JS" --directory "$S3_DATA" --address 127.0.0.1 \
    --port 0 --service-endpoint localhost --configure-bucket "$BUCKET" </dev/null >"$S3_LOG" 2>&1 &
  S3_PID=$!
  echo "$S3_PID" >"$S3_PIDFILE"
  for ((i = 0; i < 300; i++)); do
    S3_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$S3_LOG" | head -n 1)
    [[ -n $S3_PORT ]] && break
    proc_alive "$S3_PID" || break
    sleep 0.1
  done
  [[ -n $S3_PORT ]] || { tail -n 20 "$S3_LOG" >&8; die "s3rver did not start (see $S3_LOG)"; }
  ENDPOINT=http://127.0.0.1:$S3_PORT
}
stop_s3rver() { stop_pid "$S3_PID" s3rver; S3_PID=""; rm -f "$S3_PIDFILE"; }
# curl ARGS...: SigV4-signed with $AWS_ACCESS_KEY_ID (s3rver accepts any
# key), unsigned payload.
s3_curl() {
  curl -sS -f --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}
# Uploads every object of the file:// store at directory $1 to
# s3://$BUCKET/$2/KEY (an s3:// store URL with that prefix then reads the
# same store: both map object KEY to PREFIX/KEY). Prints "OBJECTS BYTES".
copy_store_to_s3() { # store-dir prefix
  local f key n=0 bytes=0
  while IFS= read -r -d '' f; do
    key=${f#"$1"/}
    s3_curl -o /dev/null -T "$f" "$ENDPOINT/$BUCKET/$2/$key" || die "upload of $f to s3rver failed"
    n=$((n + 1)); bytes=$((bytes + $(stat -c %s "$f")))
  done < <(find "$1" -path "$1/.tmp" -prune -o -type f -print0)
  echo "$n $bytes"
}
# The pull of bench/coldstart.sh's method (a), through the same emulation
# as ferry's fault+ store: sleeps LATENCY + BYTES / BANDWIDTH (seconds,
# bytes per second), then GETs s3://$BUCKET/KEY from s3rver at loopback
# speed into OUT. emulated_get KEY OUT BYTES LATENCY_S BPS TIMEOUT
emulated_get() {
  sleep "$(awk -v l="$4" -v b="$3" -v bw="$5" 'BEGIN { printf "%.6f", l + b / bw }')"
  timeout -k 5 "$6" curl -sS -f --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    -o "$2" "$ENDPOINT/$BUCKET/$1"
}

# ------------------------------------- what the workload opens (native) ---
# measure_opened ROOT: runs the caller's `workload ROOT` once, then python3 -c "$PY_IMPORTS" (env -i
# PATH=$WORKLOAD_PATH, chrooted with $CHROOT, $ITEM_TIMEOUT) under strace
# and sets OPEN_N, OPEN_BYTES (regular files opened), EXEC_N, EXEC_BYTES
# (executed), EXEC_NAMES and ALL_BYTES; the lists go to $LOGS.
measure_opened() {
  workload "$1" || die "the workload fails on the native root filesystem (see $LOGS/workload.log)"
  timeout -k 5 "$ITEM_TIMEOUT" env -i PATH="$WORKLOAD_PATH" PYTHONDONTWRITEBYTECODE=1 \
    strace -f -qq -o "$LOGS/strace.txt" -e trace=chroot,execve,open,openat,openat2 \
    "$CHROOT" "$1" python3 -c "$PY_IMPORTS" >>"$LOGS/workload.log" 2>&1 ||
    die "strace of the workload failed (see $LOGS/workload.log)"
  # Paths opened (or executed) successfully after the chroot() call, tagged
  # with the call; sizes are then taken inside the chroot (symlinks resolve
  # as the workload saw them), regular files only, each file once.
  awk 'f && / = [0-9]+$/ && match($0, /(openat2?|open|execve)\((AT_FDCWD, )?"[^"]*"/) {
         c = substr($0, RSTART, RLENGTH); p = c; sub(/\(.*/, "", c); sub(/^[^"]*"/, "", p); sub(/"$/, "", p)
         print (c == "execve" ? "exec" : "open") "\t" p }
       /chroot\(.*\) = 0/ { f = 1 }' "$LOGS/strace.txt" >"$LOGS/opened-paths.txt"
  # (python3 of the root filesystem itself, chrooted: no /proc or /dev needed.)
  env -i PATH="$WORKLOAD_PATH" PYTHONDONTWRITEBYTECODE=1 "$CHROOT" "$1" python3 -c '
import os, stat, sys
kind = {}
for line in sys.stdin.read().splitlines():
    how, _, p = line.partition("\t")
    if not p.startswith("/"):
        continue
    r = os.path.realpath(p)
    try:
        st = os.stat(r)
    except OSError:
        continue
    if stat.S_ISREG(st.st_mode) and kind.get(r, ("", 0))[0] != "open":
        kind[r] = (how, st.st_size)
for r in sorted(kind):
    print("%s\t%d\t%s" % (kind[r][0], kind[r][1], r))
o = [s for h, s in kind.values() if h == "open"]
e = [s for h, s in kind.values() if h == "exec"]
print("summary", len(o), sum(o), len(e), sum(e))' <"$LOGS/opened-paths.txt" >"$LOGS/opened-files.tmp" ||
    die "could not measure the opened files"
  OPEN_SUMMARY=$(awk '$1 == "summary" { print $2, $3, $4, $5 }' "$LOGS/opened-files.tmp")
  grep -v '^summary ' "$LOGS/opened-files.tmp" >"$LOGS/opened-files.txt" || true
  rm -f "$LOGS/opened-files.tmp"
  read -r OPEN_N OPEN_BYTES EXEC_N EXEC_BYTES <<<"$OPEN_SUMMARY"
  [[ $OPEN_N =~ ^[0-9]+$ && $OPEN_N -gt 0 ]] || die "could not measure the opened files (see $LOGS/strace.txt)"
  EXEC_NAMES=$(awk -F'\t' '$1 == "exec" { printf "%s%s", s, $3; s = ", " }' "$LOGS/opened-files.txt")
  ALL_BYTES=$((OPEN_BYTES + EXEC_BYTES))
}

# ------------------------------------------------- ferryd's counters ---
# Sum of per-image counters over all images, once the numbers have settled
# (a profile prefetch may still be fetching when the workload exits):
# prints "store_bytes store_fetches cache_misses demand_misses profile_chunks read_errors retries
# read_bytes locality_chunks admitted_bytes" (the last: uncompressed chunk bytes put in the node cache);
# the last JSON is left in $STATS_FILE. Uses $FERRY, $FERRYD_ROOT, $HOST_PY.
settled_stats() {
  local prev="" cur="" i
  for ((i = 0; i < 100; i++)); do
    timeout -k 5 60 "$FERRY" cache stats --json --daemon "$FERRYD_ROOT" >"$STATS_FILE" 2>>"$LOGS/ferry-cache.log" || return 1
    cur=$("$HOST_PY" -c '
import json, sys
j = json.loads(sys.stdin.read())
keys = ["store_bytes", "store_fetches", "cache_misses", "demand_misses", "profile_chunks", "read_errors", "retries", "read_bytes", "locality_chunks"]
v = [sum(int(im.get(k, 0)) for im in j.get("images", [])) for k in keys] + [int(j.get("admitted_bytes", 0))]
print(" ".join(str(x) for x in v))' <"$STATS_FILE") || return 1
    if [[ $cur == "$prev" ]]; then
      echo "$cur"
      return 0
    fi
    prev=$cur
    sleep 0.5
  done
  echo "$cur"
}

# ------------------------------------------------------ ferryd's state ---
# The overlay upper directory of writable target $2 of the ferryd rooted at
# $1: ROOT/mounts.json names the target's sandbox directory ("upper"), whose
# upper/ the overlay writes to (snapshotter/attachments.h).
ferryd_upper() { # ferryd-root target
  /usr/bin/python3 - "$1/mounts.json" "$2" <<'PY'
import json, sys
path, target = sys.argv[1], sys.argv[2]
for t in json.load(open(path)).get("targets", []):
    if t.get("target") == target and t.get("writable") and t.get("upper"):
        print(t["upper"] + "/upper")
        sys.exit(0)
sys.exit("no writable target %s in %s" % (target, path))
PY
}

# The mount point of the cgroup v2 hierarchy (unified or hybrid), or nothing.
# (mountinfo: the filesystem type is the field after the lone "-".)
cgroup2_root() {
  awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
    /proc/self/mountinfo
}
