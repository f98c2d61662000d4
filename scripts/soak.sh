#!/usr/bin/env bash
# The soak (issue 21; not run in CI): two provenixd replicas over a
# throwaway PostgreSQL and S3 (s3s-fs) under CI pushers, Nix pullers,
# revocations and GC at once, judged by an independent checker. Installs
# what it needs as scripts/test-all.sh does, builds in release mode and
# runs provenix-soak, which prints Markdown for docs/reliability.md and
# exits 1 if anything acknowledged was lost or anything revoked was served.
# Usage: scripts/soak.sh [--minutes N] [--pushers N] [--revoke-every SECS]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v nix-store >/dev/null 2>&1 || need+=(nix-bin)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Durable as a deployment would be: fsync stays on.
PG_OPTIONS=""
source scripts/lib/throwaway-postgres.sh

echo "==> building (release)" >&2
cargo build --release --locked -p provenix-server -p provenix-client -p provenix-bench >&2
target/release/provenix-soak "$@"
