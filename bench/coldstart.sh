#!/usr/bin/env bash
# ferry cold-start benchmark: start python3 from the Debian 12 + python3 root
# filesystem kept in an emulated S3 store (s3rver behind ferry's fault+
# wrapper), node cache and page cache empty, three ways:
#   (a) pull: download the gzip tarball of the image's layer, extract, run;
#   (b) ferry, lazy, no start-up profile;
#   (c) ferry with a recorded start-up profile (prefetched by ferryd).
# Run as root.  See --help.
set -euo pipefail
export LC_ALL=C

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CMDLINE=$(typed_command "$0" "$@")

SETTINGS="20ms/100MB 2ms/1GB"
FETCH_THREADS=""
TAG=coldstart-debian
BUCKET=ferry-coldstart

usage() {
  cat <<EOF
Usage: sudo bench/coldstart.sh [options]

Cold start of python3 -c '$PY_IMPORTS'
in a chroot of the Debian 12 (bookworm, minbase + python3) root filesystem,
the image kept in an S3 store (s3rver on loopback) seen through ferry's
network emulation, with the node cache and the page cache empty:

  (a) pull     the way containers start today: one GET of the gzip tarball
               of the image's single layer (WORKDIR/rootfs.tar.gz, the one
               bench/run.sh keeps), written to disk, 'tar -xzf' into a fresh
               directory, then the workload chrooted into it
  (b) lazy     ferryd freshly started on an empty node cache; 'ferry mount'
               of the image (which has no start-up profile), then the
               workload chrooted into the mount
  (c) profile  the same with a start-up profile recorded (untimed, once) by
               'ferry profile record' of the same workload; ferryd
               prefetches the profile's chunks as soon as it mounts

Time = wall time from the start of the download / 'ferry mount' to the
workload's exit (page cache dropped just before).  Bytes fetched = the
tarball's size for (a); for ferry the store_bytes of 'ferry cache stats'
(compressed chunk bytes fetched, read once the fetches have settled).  Both
are compared with the size of the files the workload opens, measured with
strace on the native root filesystem.

Emulation: each setting LATENCY/BANDWIDTH (e.g. 20ms/100MB) becomes the
store URL fault+s3://...?latency=LATENCY&bandwidth=BANDWIDTH&seed=1 for ferry
(chunkstore/fault_store.h: every request first waits LATENCY, then its
bytes / BANDWIDTH on a link shared by all requests of the process, then is
sent to s3rver).  The pull does exactly the same for its one request: it
sleeps LATENCY + tarball bytes / BANDWIDTH, then GETs the object from
s3rver at full loopback speed.

Options:
  --workdir DIR       work directory (default: $WORKDIR); its rootfs/ and
                      rootfs.tar.gz (from bench/run.sh) are reused, made
                      with debootstrap if missing; this script's own files
                      go to DIR/coldstart/, the table to DIR/coldstart.md
  --runs N            timed runs per method and setting (default: $RUNS; medians)
  --settings "L/B ..."  emulated store settings, the first one is the one
                      the targets are checked at (default: "$SETTINGS")
  --fetch-threads N   ferryd --fetch-threads (default: ferryd's own)
  --cache-size SIZE   ferryd --cache-size (default: $CACHE_SIZE)
  --timeout SECS      limit for one timed step (default: $ITEM_TIMEOUT)
  --mirror URL        Debian mirror, only if the root filesystem must be made
  -h, --help          show this help

Environment: FERRY, FERRYD (default: <repo>/build/ferry, ferryd beside it;
copied into DIR/coldstart/bin/ at the start).  Needs node and s3rver in
tests/s3/node_modules (scripts/install-deps.sh), curl; installs strace with
apt-get if missing.  MB = 10^6 bytes.
EOF
}

# Shared helpers: log, die, mounts, caches, medians, the root filesystem.

while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --workdir|--workdir=*) take_opt WORKDIR "$@"; shift "$OPT_SHIFT" ;;
    --runs|--runs=*) take_opt RUNS "$@"; shift "$OPT_SHIFT" ;;
    --settings|--settings=*) take_opt SETTINGS "$@"; shift "$OPT_SHIFT" ;;
    --fetch-threads|--fetch-threads=*) take_opt FETCH_THREADS "$@"; shift "$OPT_SHIFT" ;;
    --cache-size|--cache-size=*) take_opt CACHE_SIZE "$@"; shift "$OPT_SHIFT" ;;
    --timeout|--timeout=*) take_opt ITEM_TIMEOUT "$@"; shift "$OPT_SHIFT" ;;
    --mirror|--mirror=*) take_opt MIRROR "$@"; shift "$OPT_SHIFT" ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $ITEM_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer"
[[ -z $FETCH_THREADS || $FETCH_THREADS =~ ^[1-9][0-9]*$ ]] || die "--fetch-threads must be a positive integer"
[[ $CACHE_SIZE =~ ^[0-9]+[KMGT]?$ ]] || die "--cache-size must look like 4G or 512M"
[[ $WORKDIR == /* ]] || WORKDIR=$PWD/$WORKDIR
[[ $WORKDIR =~ ^[A-Za-z0-9/._+-]+$ ]] || die "--workdir must not contain spaces or special characters"
((EUID == 0)) || die "must be run as root (FUSE mounts, chroot, drop_caches)"

read -ra SETS <<<"$SETTINGS"
((${#SETS[@]})) || die "--settings is empty"
declare -A SET_LAT=() SET_BW=() SET_LABEL=()
for s in "${SETS[@]}"; do
  parse_link_setting "$s"
  SET_LAT[$s]=$LINK_LAT_S SET_BW[$s]=$LINK_BPS SET_LABEL[$s]=$LINK_LABEL
done

# ---------------------------------------------------------------- tools ---
install_missing debootstrap=debootstrap strace=strace curl=curl node=nodejs python3=python3 fusermount3=fuse3
check_host_and_binaries

# -------------------------------------------------------------- workdir ---
lock_workdir
CS=$WORKDIR/coldstart
mkdir -p "$CS"/{bin,logs,mnt,pull}
LOGS=$CS/logs
RUN_LOG=$LOGS/run.log
: >"$RUN_LOG"
for f in ferry-mount.log ferry-cache.log ferryd.log s3rver.log samples.txt stats.jsonl pull.log workload.log; do
  : >"$LOGS/$f"
done
ROOTFS=$WORKDIR/rootfs
TARBALL=$WORKDIR/rootfs.tar.gz
MNT=$CS/mnt/image
PULL=$CS/pull
FERRYD_ROOT=$CS/ferryd
FERRYD_LOG=$LOGS/ferryd.log
S3_DATA=$CS/s3rver-data
S3_LOG=$LOGS/s3rver.log
S3_PIDFILE=$CS/s3rver.pid
mkdir -p "$MNT"

FERRY_SRC=$FERRY FERRYD_SRC=$FERRYD
FERRY=$CS/bin/ferry FERRYD=$CS/bin/ferryd
snapshot_ferry "$FERRY_SRC" "$FERRY"
snapshot_bin "$FERRYD_SRC" "$FERRYD"

use_s3rver_credentials

# ------------------------------------------------------------ s3rver ---
# start_s3rver, stop_s3rver and s3_curl: bench/lib.sh.
# What s3rver served since byte offset $1 of its log: "REQUESTS BYTES".
# Sizes in its log are rounded (e.g. 9.54mb, 1024-based units): approximate.
s3_served_since() {
  tail -c +$(($1 + 1)) "$S3_LOG" | sed 's/\x1b\[[0-9;]*m//g' |
    awk '$1 == "info:" && $3 ~ /^[0-9][0-9][0-9]$/ {
           n++; s = $5; u = s; sub(/^[0-9.]+/, "", u); x = s + 0
           f = (u == "kb") ? 1024 : (u == "mb") ? 1048576 : (u == "gb") ? 1073741824 : 1
           if (s ~ /^[0-9.]/) b += x * f }
         END { printf "%d %.0f\n", n, b }'
}

# ------------------------------------------------------------- ferryd ---
FERRYD_ODD=0
start_ferryd() { # fresh, empty state (node cache) every time
  local args=(--root "$FERRYD_ROOT" --cache-size "$CACHE_SIZE")
  [[ -z $FETCH_THREADS ]] || args+=(--fetch-threads "$FETCH_THREADS")
  umount_below "$FERRYD_ROOT"
  rm -rf "$FERRYD_ROOT"
  mkdir -p "$FERRYD_ROOT"
  printf '=== coldstart %s: %s\n' "$(date +%H:%M:%S)" "$1" >>"$FERRYD_LOG"
  launch_ferryd "${args[@]}"
  echo "$FERRYD_PID" >"$CS/ferryd.pid"
}
stop_ferryd() { stop_launched_ferryd "$CS/ferryd.pid" "$FERRYD_ROOT"; }
ferry_umount() {
  local i
  is_mounted "$MNT" || return 0
  timeout -k 5 60 "$FERRY" umount "$MNT" --daemon "$FERRYD_ROOT" >>"$LOGS/ferry-mount.log" 2>&1 ||
    log "warning: 'ferry umount $MNT' failed (see $LOGS/ferry-mount.log)"
  for ((i = 0; i < 50; i++)); do is_mounted "$MNT" || return 0; sleep 0.1; done
  log "warning: $MNT still mounted; aborting the FUSE connection, lazy unmount"
  fuse_abort "$MNT"
  umount -l "$MNT" 2>/dev/null || true
}
STATS_FILE=$CS/stats.json

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if is_mounted "$MNT"; then
    if [[ -n $FERRYD_PID ]] && proc_alive "$FERRYD_PID"; then ferry_umount 2>/dev/null || true; fi
    fuse_abort "$MNT"; umount -l "$MNT" 2>/dev/null || true
  fi
  stop_ferryd 2>/dev/null || true
  umount_below "$CS/mnt"
  umount_below "$FERRYD_ROOT"
  stop_s3rver 2>/dev/null || true
  rm -rf "$PULL" 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Leftovers of an earlier run that was killed hard.
stop_leftovers "$CS" "--root $FERRYD_ROOT |--directory $S3_DATA "
umount_below "$CS/mnt"
umount_below "$FERRYD_ROOT"
mkdir -p "$MNT"

# --------------------------------------------------------------- rootfs ---
make_rootfs  # also saves $TARBALL, the layer tarball of method (a)
TAR_BYTES=$(stat -c %s "$TARBALL")

START=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)

# The workload, chrooted into $1; its output goes to the workload log.
workload() {
  timeout -k 5 "$ITEM_TIMEOUT" env -i PATH="$WORKLOAD_PATH" PYTHONDONTWRITEBYTECODE=1 \
    "$CHROOT" "$1" python3 -c "$PY_IMPORTS" >>"$LOGS/workload.log" 2>&1
}

# ------------------------------------- what the workload opens (native) ---
log "measuring the files the workload opens (strace on the native root filesystem)"
measure_opened "$ROOTFS"
ROOTFS_BYTES=$(find "$ROOTFS" -xdev -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }')
log "  opened: $OPEN_N regular files, $(mb "$OPEN_BYTES") MB (openat); executed: $EXEC_N file(s), $(mb "$EXEC_BYTES") MB ($EXEC_NAMES)"

# ------------------------------------------------------ store and image ---
log "starting s3rver"
start_s3rver
log "  s3rver (pid $S3_PID) on $ENDPOINT, bucket $BUCKET, data in $S3_DATA"
PLAIN_URL="s3://$BUCKET/image?endpoint=$ENDPOINT&region=us-east-1&path_style=1"
fault_url() { # setting -> the emulated store URL (second '?': the wrapper splits at the last one)
  local s=$1
  echo "fault+$PLAIN_URL?latency=${s%%/*}&bandwidth=${s#*/}&seed=1"
}
LAYER_KEY=layers/rootfs.tar.gz
log "uploading the layer tarball ($(mb "$TAR_BYTES") MB) as s3://$BUCKET/$LAYER_KEY"
s3_curl -o /dev/null -T "$TARBALL" "$ENDPOINT/$BUCKET/$LAYER_KEY" || die "upload of $TARBALL to s3rver failed"
log "building the image into $PLAIN_URL"
t0=$(now)
timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "$PLAIN_URL" build "$ROOTFS" --tag "$TAG" -q \
  >"$LOGS/ferry-build.out" 2>"$LOGS/ferry-build.log" || { tail -n 20 "$LOGS/ferry-build.log" >&8; die "ferry build failed"; }
BUILD_S=$(secs "$t0" "$(now)")
IMAGE_ID=$(grep -Eo '^[0-9a-f]{64}$' "$LOGS/ferry-build.out" | tail -n 1) || true
"$FERRY" --store "$PLAIN_URL" inspect "$TAG" >"$LOGS/ferry-inspect.txt" 2>&1 || true
IMAGE_META=$(awk '$1 == "metadata" { print $2, $3 }' "$LOGS/ferry-inspect.txt")
IMAGE_FILES=$(awk '$1 == "file" && $2 == "bytes" { print $3, $4 }' "$LOGS/ferry-inspect.txt")
IMAGE_COMP=$(awk '$1 == "chunks" { for (i = 1; i < NF; i++) if ($(i + 1) == "MB" && $(i + 2) == "compressed") print $i " MB" }' "$LOGS/ferry-inspect.txt")
IMAGE_CHUNKS=$(awk '$1 == "chunks" { print $2 }' "$LOGS/ferry-inspect.txt")
log "  image ${IMAGE_ID:0:12} built in $(printf '%.1f' "$BUILD_S") s: $IMAGE_FILES of files, $IMAGE_CHUNKS chunks, $IMAGE_COMP compressed, metadata $IMAGE_META"
# (b) must see no profile: remove any (a fresh store has none anyway).
"$FERRY" --store "$PLAIN_URL" profile rm "$TAG" >>"$LOGS/ferry-profile.log" 2>&1 || true
if "$FERRY" --store "$PLAIN_URL" profile show "$TAG" >>"$LOGS/ferry-profile.log" 2>&1; then
  die "the image still has a profile after 'ferry profile rm'"
fi

# ----------------------------------------------------------- the runs ---
declare -A RES=()   # RES[setting|method|field] = space-separated samples
add() { RES[$1|$2|$3]="${RES[$1|$2|$3]:-} $4"; }
sample() { printf '%s\n' "$*" >>"$LOGS/samples.txt"; }

# (a): one emulated GET of the tarball (latency + bytes / bandwidth, then
# the real request), written to disk, extracted, workload run.
pull_run() { # setting run
  local s=$1 r=$2 dir=$PULL/rootfs-$2 delay t0 t1 t2 t3 ok=1
  rm -rf "$PULL"; mkdir -p "$PULL"
  delay=$(awk -v l="${SET_LAT[$s]}" -v b="$TAR_BYTES" -v bw="${SET_BW[$s]}" 'BEGIN { printf "%.6f", l + b / bw }')
  drop_caches
  t0=$(now)
  sleep "$delay"
  timeout -k 5 "$ITEM_TIMEOUT" curl -sS -f --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    -o "$PULL/layer.tar.gz" "$ENDPOINT/$BUCKET/$LAYER_KEY" 2>>"$LOGS/pull.log" || ok=0
  t1=$(now)
  if ((ok)); then
    mkdir -p "$dir"
    timeout -k 5 "$ITEM_TIMEOUT" tar -C "$dir" --numeric-owner --xattrs --xattrs-include='*' -xpzf "$PULL/layer.tar.gz" \
      2>>"$LOGS/pull.log" || ok=0
  fi
  t2=$(now)
  ((ok)) && { workload "$dir" || ok=0; }
  t3=$(now)
  if ((ok)) && [[ $(stat -c %s "$PULL/layer.tar.gz") == "$TAR_BYTES" ]]; then
    add "$s" a total "$(secs "$t0" "$t3")"
    add "$s" a download "$(secs "$t0" "$t1")"
    add "$s" a extract "$(secs "$t1" "$t2")"
    add "$s" a run "$(secs "$t2" "$t3")"
    add "$s" a bytes "$TAR_BYTES"
    add "$s" a fetches 1
    sample "$s a run $r: total $(secs "$t0" "$t3") download $(secs "$t0" "$t1") (emulated wait $delay) extract $(secs "$t1" "$t2") workload $(secs "$t2" "$t3")"
  else
    add "$s" a total err
    sample "$s a run $r: FAILED (see $LOGS/pull.log, $LOGS/workload.log)"
    log "  (a) run $r failed (see $LOGS/pull.log, $LOGS/workload.log)"
  fi
  rm -rf "$PULL"
}

# (b)/(c): fresh ferryd (empty node cache), page cache dropped, then
# 'ferry mount' + workload timed.
ferry_run() { # setting method(b|c) run
  local s=$1 m=$2 r=$3 url t0 t1 t2 ok=1 off st served
  url=$(fault_url "$s")
  ferry_umount
  stop_ferryd
  start_ferryd "$s ($m) run $r"
  off=$(stat -c %s "$S3_LOG")
  drop_caches
  t0=$(now)
  timeout -k 5 "$ITEM_TIMEOUT" "$FERRY" --store "$url" mount "$TAG" "$MNT" --daemon "$FERRYD_ROOT" \
    >>"$LOGS/ferry-mount.log" 2>&1 || ok=0
  t1=$(now)
  ((ok)) && { workload "$MNT" || ok=0; }
  t2=$(now)
  if ((ok)) && st=$(settled_stats); then
    served=$(s3_served_since "$off")
    printf '{"setting":"%s","method":"%s","run":%d,"stats":%s}\n' "$s" "$m" "$r" "$(tr -d '\n' <"$STATS_FILE")" >>"$LOGS/stats.jsonl"
    read -r sb sf cm dm pc re rt rb lc ab <<<"$st"
    read -r sreq sbytes <<<"$served"
    if [[ $m == b && $pc != 0 ]] || [[ $m == c && $pc == 0 ]]; then
      log "  ($m) run $r: profile_chunks = $pc, not what method $m needs; sample dropped"
      add "$s" "$m" total err
    else
      add "$s" "$m" total "$(secs "$t0" "$t2")"
      add "$s" "$m" mount "$(secs "$t0" "$t1")"
      add "$s" "$m" run "$(secs "$t1" "$t2")"
      add "$s" "$m" bytes "$sb"
      add "$s" "$m" fetches "$sf"
      add "$s" "$m" misses "$cm"
      add "$s" "$m" demand "$dm"
      add "$s" "$m" profile "$pc"
      add "$s" "$m" locality "$lc"
      add "$s" "$m" srv_req "$sreq"
      add "$s" "$m" srv_bytes "$sbytes"
      add "$s" "$m" read_errors "$re"
      add "$s" "$m" retries "$rt"
      add "$s" "$m" read_bytes "$rb"
      add "$s" "$m" admitted "$ab"
    fi
    sample "$s $m run $r: total $(secs "$t0" "$t2") mount $(secs "$t0" "$t1") workload $(secs "$t1" "$t2")" \
      "store_bytes $sb store_fetches $sf cache_misses $cm demand_misses $dm profile_chunks $pc locality_chunks $lc read_errors $re retries $rt" \
      "read_bytes $rb admitted_bytes $ab" \
      "s3rver: $sreq requests, ~$sbytes bytes"
  else
    add "$s" "$m" total err
    sample "$s $m run $r: FAILED"
    log "  ($m) run $r failed (see $LOGS/ferry-mount.log, $LOGS/workload.log, $FERRYD_LOG)"
  fi
  ferry_umount
  stop_ferryd
}

log "timed runs: $RUNS per method and setting; settings: $SETTINGS"
for s in "${SETS[@]}"; do
  log "setting ${SET_LABEL[$s]}: (a) pull and (b) ferry lazy [load $(cut -d' ' -f1 /proc/loadavg)]"
  for ((r = 1; r <= RUNS; r++)); do
    pull_run "$s" "$r"
    ferry_run "$s" b "$r"
  done
  log "  (a) total:${RES[$s|a|total]}"
  log "  (b) total:${RES[$s|b|total]}"
done

log "recording the start-up profile (untimed, plain s3:// store)"
timeout -k 5 "$ITEM_TIMEOUT" env -i PATH="$WORKLOAD_PATH" PYTHONDONTWRITEBYTECODE=1 \
  AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  "$FERRY" --store "$PLAIN_URL" profile record "$TAG" -- python3 -c "$PY_IMPORTS" \
  >>"$LOGS/ferry-profile.log" 2>&1 || { tail -n 20 "$LOGS/ferry-profile.log" >&8; die "ferry profile record failed"; }
"$FERRY" --store "$PLAIN_URL" profile show "$TAG" >"$LOGS/ferry-profile-show.txt" 2>&1 || die "no profile after recording"
PROFILE_NOTE=$(awk '$1 == "chunks" { $1 = ""; sub(/^ /, ""); print }' "$LOGS/ferry-profile-show.txt")
PROFILE_PACK=$(awk '$1 == "pack" { $1 = ""; sub(/^ /, ""); print }' "$LOGS/ferry-profile-show.txt")
[[ -n $PROFILE_PACK ]] && PROFILE_NOTE="$PROFILE_NOTE; start-up pack: $PROFILE_PACK"
log "  profile: $PROFILE_NOTE"

for s in "${SETS[@]}"; do
  log "setting ${SET_LABEL[$s]}: (c) ferry with profile [load $(cut -d' ' -f1 /proc/loadavg)]"
  for ((r = 1; r <= RUNS; r++)); do
    ferry_run "$s" c "$r"
  done
  log "  (c) total:${RES[$s|c|total]}"
done

stop_s3rver
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)
TOTAL_S=$(secs "$START" "$(now)")

# ferryd's log: lines other than its usual ones are reported.
FERRYD_ODD=$(grep -cvE '^(=== coldstart |ferryd: (ready \(pid|serving image|image [0-9a-f]+: prefetching its start-up profile|signal [0-9]+: unmounting|stopped))' "$FERRYD_LOG" || true)

# ---------------------------------------------------------------- table ---
med() { median ${RES[$1|$2|$3]:-}; }
fmt() { # value decimals
  case $1 in err|n/a|"") echo "${1:-n/a}" ;; *) awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }' ;; esac
}
isnum() { [[ $1 =~ ^[0-9.]+$ ]]; }
speedup() { # a x -> a / x
  if isnum "$1" && isnum "$2" && awk -v x="$2" 'BEGIN { exit !(x > 0) }'; then
    awk -v a="$1" -v x="$2" 'BEGIN { printf "%.1f", a / x }'
  else echo "–"; fi
}
ratio_to() { # bytes denominator -> bytes / denominator
  if isnum "$1"; then awk -v b="$1" -v d="$2" 'BEGIN { printf "%.2f", b / d }'; else echo "–"; fi
}
verdict() { # value op limit
  isnum "$1" || { echo "n/a"; return; }
  if awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { exit !(op == ">=" ? v >= l : v <= l) }'; then echo PASS; else echo FAIL; fi
}
declare -A METHOD_NAME=([a]="(a) pull: GET tarball, extract, run" [b]="(b) ferry, lazy, no profile" [c]="(c) ferry + start-up profile")

T1=${SETS[0]}
A1=$(med "$T1" a total) B1=$(med "$T1" b total) C1=$(med "$T1" c total)
SPB=$(speedup "$A1" "$B1") SPC=$(speedup "$A1" "$C1")
BB=$(ratio_to "$(med "$T1" b bytes)" "$OPEN_BYTES") BC=$(ratio_to "$(med "$T1" c bytes)" "$OPEN_BYTES")
BBX=$(ratio_to "$(med "$T1" b bytes)" "$ALL_BYTES") BCX=$(ratio_to "$(med "$T1" c bytes)" "$ALL_BYTES")

{
  echo "## ferry cold start — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Command (as root, in $CMD_CWD): \`$CMDLINE\`"
  echo
  echo "Workload: \`chroot ROOT python3 -c '$PY_IMPORTS'\` (env -i, PYTHONDONTWRITEBYTECODE=1)," \
       "Debian 12 minbase + python3 ($(mb "$ROOTFS_BYTES") MB in regular files)."
  echo "It opens $OPEN_N regular files, $(mb "$OPEN_BYTES") MB (openat, strace on the native root; list: coldstart/logs/opened-files.txt)," \
       "and executes $EXEC_NAMES ($(mb "$EXEC_BYTES") MB): $(mb "$ALL_BYTES") MB in all."
  echo "Image: ${IMAGE_ID:0:12}, $IMAGE_FILES of files, $IMAGE_CHUNKS chunks, $IMAGE_COMP compressed, metadata $IMAGE_META;" \
       "layer tarball (gzip) $(mb "$TAR_BYTES") MB. Store: s3rver on loopback (bucket $BUCKET), read through the fault+ wrapper." \
       "Profile: $PROFILE_NOTE."
  echo "Host: $(uname -r), $(nproc) cores, load average $LOAD_START at start, $LOAD_END at end; ferry $(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo '?');" \
       "ferryd --cache-size $CACHE_SIZE${FETCH_THREADS:+ --fetch-threads $FETCH_THREADS} (a fresh, empty root and node cache every run). Runs: $RUNS (medians)."
  echo
  echo "| store (latency, bandwidth) | method | total (s) | speed-up vs (a) | mount (s) | fetched (MB) | fetched / opened | store requests | notes |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
  for s in "${SETS[@]}"; do
    A=$(med "$s" a total)
    for m in a b c; do
      T=$(med "$s" "$m" total)
      BY=$(med "$s" "$m" bytes)
      if [[ $m == a ]]; then
        MOUNT="–"
        NOTE="GET $(fmt "$(med "$s" a download)" 2) s (emulated wait $(awk -v l="${SET_LAT[$s]}" -v b="$TAR_BYTES" -v bw="${SET_BW[$s]}" 'BEGIN { printf "%.2f", l + b / bw }') s), extract $(fmt "$(med "$s" a extract)" 2) s, workload $(fmt "$(med "$s" a run)" 2) s"
        REQ=1
      else
        MOUNT=$(fmt "$(med "$s" "$m" mount)" 3)
        REQ=$(fmt "$(med "$s" "$m" fetches)" 0)
        NOTE="workload $(fmt "$(med "$s" "$m" run)" 2) s; demand misses $(fmt "$(med "$s" "$m" demand)" 0), profile chunks $(fmt "$(med "$s" "$m" profile)" 0), locality chunks $(fmt "$(med "$s" "$m" locality)" 0), chunks fetched $(fmt "$(med "$s" "$m" misses)" 0) ($(mb "$(med "$s" "$m" admitted)") MB uncompressed) for $(mb "$(med "$s" "$m" read_bytes)") MB read; s3rver saw $(fmt "$(med "$s" "$m" srv_req)" 0) requests, ~$(mb "$(med "$s" "$m" srv_bytes)") MB"
        re=$(med "$s" "$m" read_errors); rt=$(med "$s" "$m" retries)
        if isnum "$re" && awk -v v="$re" 'BEGIN { exit !(v > 0) }'; then NOTE+="; READ ERRORS $re"; fi
        if isnum "$rt" && awk -v v="$rt" 'BEGIN { exit !(v > 0) }'; then NOTE+="; retries $rt"; fi
      fi
      echo "| ${SET_LABEL[$s]} | ${METHOD_NAME[$m]} | $(fmt "$T" 3) | $(speedup "$A" "$T") | $MOUNT | $(isnum "$BY" && mb "$BY" || echo "$BY") | $(ratio_to "$BY" "$OPEN_BYTES") | $REQ | $NOTE |"
    done
  done
  echo
  echo "Targets at ${SET_LABEL[$T1]}:" \
       "(b) ≥ 5x faster than (a): ${SPB}x $(verdict "$SPB" '>=' 5);" \
       "(c) ≥ 10x faster than (a): ${SPC}x $(verdict "$SPC" '>=' 10);" \
       "bytes fetched ≤ 1.5x the files opened: (b) ${BB}x $(verdict "$BB" '<=' 1.5), (c) ${BC}x $(verdict "$BC" '<=' 1.5)" \
       "(against the opened files plus the executable: (b) ${BBX}x, (c) ${BCX}x)."
  echo
  echo "- total: (a) from the start of the download to the workload's exit; (b), (c) from the start of \`ferry mount\`" \
       "(ferryd already running, freshly started on an empty root) to the workload's exit. The page cache is dropped right before each run."
  echo "- Emulation: ferry reads \`fault+s3://$BUCKET/image?endpoint=...&region=us-east-1&path_style=1?latency=L&bandwidth=B&seed=1\`:" \
       "each request waits L, then its bytes / B on one link shared by all of ferryd's requests, then goes to s3rver." \
       "(a) does the same for its single request: it sleeps L + tarball bytes / B, then GETs the object from s3rver" \
       "(curl, SigV4, path style) at loopback speed and writes it to disk; \`tar -xzpf\` then extracts it (numeric owners, xattrs) into a new directory (not synced)." \
       "Manifest/config requests of a real registry pull are not counted for (a)."
  echo "- fetched: (a) the tarball; (b), (c) store_bytes of \`ferry cache stats --json\` (compressed chunk bytes), read once the counters have stopped changing" \
       "(so a profile prefetch still running when the workload exits is counted); it does not include the image metadata ($IMAGE_META), refs or the profile object," \
       "which the s3rver count (all requests it answered in the run, sizes rounded as its log prints them) does."
  echo "- fetched / opened divides by the $(mb "$OPEN_BYTES") MB of the files opened with openat (without the executable)." \
       "store requests: ferry's store_fetches (range reads of chunks); mount: \`ferry mount\` alone."
  echo "- ferryd: started $FERRYD_STARTS times; $FERRYD_ODD log lines other than ready/serving/prefetching/stopping (coldstart/logs/ferryd.log)."
  echo "- Raw samples: coldstart/logs/samples.txt; per-run \`ferry cache stats\` JSON: coldstart/logs/stats.jsonl."
  echo
  echo "Total benchmark wall time: $(printf '%.0f' "$TOTAL_S") s."
} >"$WORKDIR/coldstart.md"

echo
cat "$WORKDIR/coldstart.md"
echo
log "results written to $WORKDIR/coldstart.md (logs: $LOGS)"
