#!/usr/bin/env bash
# ferry's main job on the embedded default (a file:// store, no service):
# make a real Debian 12 root filesystem with python3, build it into a ferry
# image, mount it lazily, start python3 from the mount, and print what was
# fetched compared with the size of the image. Needs root (debootstrap,
# mount, chroot). The root filesystem is cached in $WORK for later runs.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/var/tmp/ferry-demo}
STORE=${FERRY_STORE:-file://$WORK/store}
export FERRY_STORE=$STORE

if [ "$(id -u)" -ne 0 ]; then
  echo "quickstart: run as root (it uses debootstrap, FUSE and chroot)" >&2
  exit 1
fi
scripts/install-deps.sh
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
scripts/build.sh
FERRY=$PWD/build/ferry

mkdir -p "$WORK"
if [ ! -f "$WORK/rootfs/.complete" ]; then
  echo "== making a Debian 12 root filesystem with python3 (once; a few minutes)"
  rm -rf "$WORK/rootfs"
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  debootstrap --variant=minbase --include=python3 bookworm "$WORK/rootfs" "${mirror:-http://deb.debian.org/debian}" >"$WORK/debootstrap.log"
  touch "$WORK/rootfs/.complete"
fi

echo "== ferry build $WORK/rootfs --tag demo/debian-python"
"$FERRY" build "$WORK/rootfs" --tag demo/debian-python
mnt="$WORK/mnt"
mkdir -p "$mnt"
mountpoint -q "$mnt" && "$FERRY" umount "$mnt"
echo "== ferry mount demo/debian-python $mnt --start-daemon"
# ferryd, the host daemon, serves the mount from its node cache
# (/var/lib/ferryd); --start-daemon starts it if it is not running yet.
"$FERRY" mount demo/debian-python "$mnt" --start-daemon
trap '"$FERRY" umount "$mnt" 2>/dev/null || true' EXIT
echo "== chroot $mnt python3 -c 'import json, sqlite3, asyncio, email, http.client'"
chroot "$mnt" /usr/bin/python3 -c 'import json, sqlite3, asyncio, email, http.client, sys; print("python", sys.version.split()[0], "started from a lazily fetched ferry image")'
echo "== what was fetched (ferry stats $mnt)"
stats=$("$FERRY" stats "$mnt")
echo "$stats"
python3 - "$stats" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
print(f"fetched {s['store_bytes']/1e6:.1f} MB compressed in {s['store_fetches']} range reads "
      f"for an image of {s['image_bytes']/1e6:.1f} MB "
      f"({100*s['store_bytes']/max(s['image_bytes'],1):.1f}%); "
      f"{s['cache_hit_bytes']/1e6:.1f} MB came from the node cache")
PY
echo "== ferry cache stats (run this script again: the node cache is warm)"
"$FERRY" cache stats
