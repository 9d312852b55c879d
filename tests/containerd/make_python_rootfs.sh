#!/usr/bin/env bash
# Makes DIR a small Debian 12 + python3 root filesystem from this host's own
# files (Debian 12 is what the tests run on): python3.11, its standard
# library, and every shared library the interpreter and its extension
# modules load (found with ldd), at the paths they have here, with the
# merged-/usr symlinks. Enough to run `python3 -c 'import json, sqlite3'`.
# Usage: tests/containerd/make_python_rootfs.sh DIR
set -euo pipefail
dir=${1:?usage: make_python_rootfs.sh DIR}
py=/usr/bin/python3.11
[[ -x $py ]] || { echo "make_python_rootfs.sh: $py is missing" >&2; exit 1; }
rm -rf "$dir"
mkdir -p "$dir/usr/bin" "$dir/usr/lib" "$dir/usr/lib64" "$dir/tmp" "$dir/etc" "$dir/proc" "$dir/dev" "$dir/sys"
chmod 1777 "$dir/tmp"
for l in bin lib lib64; do ln -s "usr/$l" "$dir/$l"; done
cp -a "$py" "$dir/usr/bin/"
ln -s python3.11 "$dir/usr/bin/python3"
cp -a /usr/lib/python3.11 "$dir/usr/lib/"
# Shared libraries, at their resolved paths (and the names they are asked by).
{
  ldd "$py"
  find /usr/lib/python3.11/lib-dynload -name '*.so' -exec ldd {} \; 2>/dev/null
} | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$lib" "$dir$lib"
    real=$(realpath "$lib")
    [[ -e $dir$real ]] || { mkdir -p "$dir$(dirname "$real")"; cp -L "$lib" "$dir$real"; }
  done
echo "root:x:0:0:root:/root:/bin/sh" > "$dir/etc/passwd"
echo "root:x:0:" > "$dir/etc/group"
