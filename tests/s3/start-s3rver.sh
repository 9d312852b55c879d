#!/usr/bin/env bash
# Starts s3rver (installed here by scripts/install-deps.sh: npm ci) for ferry's
# tests: data in DIR, listening on 127.0.0.1 at a free port that it prints as
# "S3rver listening on 127.0.0.1:PORT", bucket BUCKET created. Virtual-hosted
# requests work as BUCKET.s3.localhost:PORT. Extra arguments go to s3rver
# (e.g. --key KEY.pem --cert CERT.pem for TLS).
# Usage: tests/s3/start-s3rver.sh DIR BUCKET [s3rver args...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="$1"; bucket="$2"; shift 2
server="$here/node_modules/s3rver/bin/s3rver.js"
if ! command -v node >/dev/null || [ ! -f "$server" ]; then
  echo "start-s3rver: node or s3rver missing (run scripts/install-deps.sh)" >&2
  exit 3
fi
# s3rver makes its continuation tokens with DES, which OpenSSL 3 keeps in
# its legacy provider.
exec node --openssl-legacy-provider "$server" --directory "$dir" --address 127.0.0.1 --port 0 \
  --silent --service-endpoint localhost --configure-bucket "$bucket" "$@"
