#!/usr/bin/env bash
# Builds ferry's libFuzzer targets with clang (ASan + UBSan), generates seed
# corpora and runs each target for a bounded time. Run tests/fuzz/run.sh --help.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: tests/fuzz/run.sh [options] [-- extra libFuzzer flags...]

Configures a clang build with -fsanitize=fuzzer-no-link,address,undefined
(-DFERRY_FUZZ=ON -DFERRY_BUILD_TESTS=OFF), builds the fuzz targets, writes
seed corpora, then runs each target for a bounded time with
  -max_total_time=$FUZZ_SECONDS -rss_limit_mb=2048 -timeout=10
Exits 1 if any target finds a crash, leak, timeout or out-of-memory, and
prints the reproducer paths; exits 2 on usage or build errors.

Targets:
  image_reader_fuzz   arbitrary bytes as an image metadata object:
                      ImageReader::Open, every accessor, ImageFs calls
  tar_import_fuzz     arbitrary bytes as a tar layer (any compression):
                      ImageBuilder::AddTar twice, Finish, reload and read back
  python_imports_fuzz arbitrary bytes as Python source: the builder's import
                      parser and collector

Options:
  -h, --help          show this help
  -t, --target NAME   run only NAME (repeatable; default: all targets)
  --no-build          do not configure or build, use the existing binaries
  --seeds-only        build and write the seed corpora, do not fuzz

Environment:
  FUZZ_SECONDS        seconds per target (default 60)
  FUZZ_BUILD_DIR      build directory (default build-fuzz; relative paths
                      are relative to the repository root)
  FUZZ_CORPUS_DIR     where the growing corpora live, as corpus-<target>/
                      (default tests/fuzz, git-ignored)
  FERRY_FUZZ_TMPDIR   scratch space of tar_import_fuzz (default /dev/shm)
  CC, CXX             compilers (default clang, clang++)

Inputs that once failed live in tests/fuzz/regressions/<target>/ and are
run first, as part of the corpus (a raw image there may have stale
checksums: image_reader_fuzz also opens every input with them fixed up).

Outputs under the build directory: fuzz-seeds/<target>/ (regenerated every
run), fuzz-artifacts/<target>/ (reproducers), fuzz-logs/<target>.log.
Reproduce a finding with: <build>/tests/fuzz/<target> <reproducer file>
EOF
}

die() { echo "run.sh: $*" >&2; exit 2; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
SRC_DIR=${FERRY_SRC_DIR:-$REPO}  # source tree to configure (for testing the script)
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
[[ $BUILD_DIR == /* ]] || BUILD_DIR=$REPO/$BUILD_DIR
CORPUS_ROOT=${FUZZ_CORPUS_DIR:-$SCRIPT_DIR}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
ALL_TARGETS=(image_reader_fuzz tar_import_fuzz python_imports_fuzz)

targets=()
build=1
fuzz=1
extra=()
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    -t|--target)
      (($# >= 2)) || die "$1 needs a target name"
      [[ " ${ALL_TARGETS[*]} " == *" $2 "* ]] || die "unknown target '$2' (${ALL_TARGETS[*]})"
      targets+=("$2"); shift 2 ;;
    --no-build) build=0; shift ;;
    --seeds-only) fuzz=0; shift ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; exit 2 ;;
  esac
done
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")
[[ $FUZZ_SECONDS =~ ^[0-9]+$ ]] && ((FUZZ_SECONDS > 0)) ||
  die "FUZZ_SECONDS must be a positive integer, not '$FUZZ_SECONDS'"

BIN_DIR=$BUILD_DIR/tests/fuzz
SAN_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

if ((build)); then
  export CC=${CC:-clang} CXX=${CXX:-clang++}
  command -v "$CXX" >/dev/null || die "$CXX not found (libFuzzer needs clang)"
  echo "== configuring $BUILD_DIR ($CXX)"
  mkdir -p "$BUILD_DIR"
  cmake -S "$SRC_DIR" -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_FUZZ=ON -DFERRY_BUILD_TESTS=OFF \
    -DCMAKE_CXX_FLAGS="$SAN_FLAGS" >"$BUILD_DIR/fuzz-configure.log" 2>&1 ||
    { cat "$BUILD_DIR/fuzz-configure.log" >&2; die "cmake configure failed"; }
  if ! grep -q 'ferry_fuzz_make_seeds' "$BUILD_DIR/build.ninja"; then
    die "the build has no fuzz targets: the top-level CMakeLists.txt needs
  if(FERRY_FUZZ)
    add_subdirectory(tests/fuzz)
  endif()
(and CXX must be clang; see $BUILD_DIR/fuzz-configure.log)"
  fi
  echo "== building ${targets[*]}"
  ninja -C "$BUILD_DIR" ferry_fuzz_make_seeds "${targets[@]}" || die "build failed"
fi
for t in ferry_fuzz_make_seeds "${targets[@]}"; do
  [[ -x $BIN_DIR/$t ]] || die "$BIN_DIR/$t missing (build first, without --no-build)"
done

# --- seeds -------------------------------------------------------------------

# Small archives made with GNU tar (-b1: 512-byte records, so they stay
# small), well-formed ones in every compression and hostile ones.
make_tar_seeds() (  # a subshell: set -e applies, the trap cleans up
  local out=$1 w
  w=$(mktemp -d)
  trap 'rm -rf "$w"' EXIT
  local T=(tar -b1 --sort=name --mtime=2020-01-01 --owner=0 --group=0 --numeric-owner)

  mkdir -p "$w/t/dir/sub" "$w/t/dir/emptydir"
  echo hello >"$w/t/dir/file"
  : >"$w/t/dir/empty"
  seq 1 400 >"$w/t/dir/sub/numbers"             # several small chunks
  cat "$w/t/dir/sub/numbers" "$w/t/dir/sub/numbers" >"$w/t/dir/sub/twice"  # dedup
  ln -s file "$w/t/dir/link"
  ln -s ../../etc/passwd "$w/t/dir/sub/uplink"    # a target outside is just text
  ln "$w/t/dir/file" "$w/t/dir/hard"
  mkfifo "$w/t/dir/fifo"
  mknod "$w/t/dir/null" c 1 3 2>/dev/null || true
  chmod 4755 "$w/t/dir/file"
  (cd "$w/t" && "${T[@]}" -cf "$out/basic.tar" dir)
  gzip -9 -n <"$out/basic.tar" >"$out/basic.tar.gz"
  if command -v zstd >/dev/null; then zstd -q -19 <"$out/basic.tar" >"$out/basic.tar.zst"; fi
  if command -v xz >/dev/null; then xz -9 <"$out/basic.tar" >"$out/basic.tar.xz"; fi
  if command -v bzip2 >/dev/null; then bzip2 -9 <"$out/basic.tar" >"$out/basic.tar.bz2"; fi

  # pax: a long name, an xattr, a sparse file.
  local long=a123456789b123456789c123456789d123456789e123456789f123456789
  mkdir -p "$w/p/$long/$long"
  echo deep >"$w/p/$long/$long/$long"
  truncate -s 1M "$w/p/sparse"
  printf 'in the middle' | dd of="$w/p/sparse" bs=1 seek=500000 conv=notrunc status=none
  (cd "$w/p" && "${T[@]}" --format=pax --sparse \
    --pax-option='SCHILY.xattr.user.ferry=fuzz' -cf "$out/pax.tar" .)
  (cd "$w/p" && "${T[@]}" --format=gnu --sparse -cf "$out/gnu-sparse.tar" sparse)

  # OCI whiteouts (the target applies every input twice, as two layers).
  mkdir -p "$w/wh/dir/opq"
  : >"$w/wh/dir/.wh.file"
  : >"$w/wh/dir/opq/.wh..wh..opq"
  echo kept >"$w/wh/dir/opq/kept"
  echo file >"$w/wh/dir/file"
  (cd "$w/wh" && "${T[@]}" -cf "$out/whiteout.tar" dir)

  # Hostile: ../ paths (-P keeps them), an absolute path.
  mkdir -p "$w/h/in" && echo evil >"$w/h/evil" && echo ok >"$w/h/in/ok"
  (cd "$w/h/in" && "${T[@]}" -P -cf "$out/dotdot.tar" ok ../evil)
  (cd "$w/h/in" && "${T[@]}" -P --transform='s,^,/etc/,' -cf "$out/absolute.tar" ok)
  (cd "$w/h/in" && "${T[@]}" -P --transform='s,^,a/../../,' -cf "$out/dotdot-mid.tar" ok)

  # Hostile: a symlink, then a file through it (to an absolute and a relative
  # outside target).
  mkdir -p "$w/s1" "$w/s2/l" "$w/s3" "$w/s4/up"
  ln -s /etc "$w/s1/l"
  echo pwned >"$w/s2/l/passwd"
  (cd "$w/s1" && "${T[@]}" -cf "$out/symlink-then-file.tar" l)
  (cd "$w/s2" && "${T[@]}" --no-recursion -rf "$out/symlink-then-file.tar" l/passwd)
  ln -s .. "$w/s3/up"
  echo pwned >"$w/s4/up/x"
  (cd "$w/s3" && "${T[@]}" -cf "$out/symlink-dotdot.tar" up)
  (cd "$w/s4" && "${T[@]}" --no-recursion -rf "$out/symlink-dotdot.tar" up/x)

  # Hostile: hard links to ../x, to /etc/passwd, to a missing name and to a
  # directory (link targets rewritten with --transform's h flag).
  mkdir -p "$w/l/d"
  echo x >"$w/l/x" && ln "$w/l/x" "$w/l/y"
  (cd "$w/l" && "${T[@]}" -P --transform='s,^x$,../x,RSh' -cf "$out/hardlink-dotdot.tar" x y)
  (cd "$w/l" && "${T[@]}" -P --transform='s,^x$,/etc/passwd,RSh' -cf "$out/hardlink-abs.tar" x y)
  (cd "$w/l" && "${T[@]}" --transform='s,^x$,missing,RSh' -cf "$out/hardlink-missing.tar" x y)
  (cd "$w/l" && "${T[@]}" --transform='s,^x$,d,RSh' -cf "$out/hardlink-dir.tar" d x y)

  # Truncated and garbage-tailed archives.
  head -c 1536 "$out/basic.tar" >"$out/truncated.tar"
  head -c 200 "$out/basic.tar.gz" >"$out/truncated.tar.gz"
)

# Python sources: a handwritten one with every statement form the parser
# knows, and a few of the host's standard library modules if it has them.
make_py_seeds() {
  local out=$1 f n=0
  printf '%s\n' '"""doc: import no"""' 'from __future__ import annotations' 'import os, sys as s' \
    'from . import a' 'from ..b.c import (d,' '    e as f)  # import no' 'try:' '    import _json' \
    'except ImportError:' '    pass' 'if TYPE_CHECKING:' '    import t' 'def g():' '    import lazy' \
    'class C:' '    import k' "x =  'import no' " 'import \' '    last; import z' >"$out/forms.py"
  for f in /usr/lib/python3*/json/*.py /usr/lib/python3*/asyncio/base_events.py; do
    [[ -f $f ]] || continue
    cp "$f" "$out/host-$((n += 1)).py"
    ((n < 8)) || break
  done
}

seed_dir() { echo "$BUILD_DIR/fuzz-seeds/$1"; }
for t in "${targets[@]}"; do
  s=$(seed_dir "$t")
  rm -rf "$s" && mkdir -p "$s" "$CORPUS_ROOT/corpus-$t"
  case $t in
    image_reader_fuzz) "$BIN_DIR/ferry_fuzz_make_seeds" "$s" || die "seed images failed" ;;
    tar_import_fuzz) make_tar_seeds "$s" ;;  # (not under ||, so that set -e holds)
    python_imports_fuzz) make_py_seeds "$s" ;;
  esac
  echo "== seeds for $t: $(ls "$s" | wc -l) files in $s"
done
((fuzz)) || exit 0

# --- fuzzing -----------------------------------------------------------------

scratch=${FERRY_FUZZ_TMPDIR:-}
if [[ -z $scratch ]]; then
  base=/dev/shm
  [[ -w $base ]] || base=${TMPDIR:-/tmp}
  scratch=$(mktemp -d "$base/ferry-fuzz.XXXXXX")
  trap 'rm -rf "$scratch"' EXIT
fi
export FERRY_FUZZ_TMPDIR=$scratch

failed=()
for t in "${targets[@]}"; do
  art=$BUILD_DIR/fuzz-artifacts/$t
  log=$BUILD_DIR/fuzz-logs/$t.log
  mkdir -p "$art" "$(dirname "$log")"
  marker=$(mktemp)
  echo "== fuzzing $t for ${FUZZ_SECONDS}s (log: $log)"
  dirs=("$CORPUS_ROOT/corpus-$t" "$(seed_dir "$t")")
  [[ -d $SCRIPT_DIR/regressions/$t ]] && dirs+=("$SCRIPT_DIR/regressions/$t")
  rc=0
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$BIN_DIR/$t" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$art/" -print_final_stats=1 ${extra[@]+"${extra[@]}"} \
      "${dirs[@]}" >"$log" 2>&1 || rc=$?
  repro=$(find "$art" -maxdepth 1 -type f -newer "$marker" \
            \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) |
          sort)
  rm -f "$marker"
  if ((rc != 0)) || [[ -n $repro ]]; then
    failed+=("$t")
    echo "!! $t FAILED (exit $rc)"
    grep -m1 -E '^==[0-9]+==ERROR|^SUMMARY|runtime error|ERROR: libFuzzer|invariant violated|tar_import_fuzz:' "$log" || true
    echo "-- last lines of $log:"
    tail -n 40 "$log" | sed 's/^/   /'
    for r in $repro; do
      echo "!! reproducer: $r"
      echo "   reproduce: $BIN_DIR/$t $r"
    done
  else
    stats=$(grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" |
              sed 's/^stat:://; s/: */=/' | tr '\n' ' ')
    cov=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -n1 |
            grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+' || true)
    echo "ok $t: $stats$cov; corpus $(ls "$CORPUS_ROOT/corpus-$t" | wc -l) files"
  fi
done

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all fuzz targets ran ${FUZZ_SECONDS}s without findings"
