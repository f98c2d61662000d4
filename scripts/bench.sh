#!/usr/bin/env bash
# Installs what the benchmark needs (Debian's nix-bin, nginx-light, wrk, zstd,
# curl, sqlite3), builds provenix in release mode and runs provenix-bench:
# provenixd with its default settings measured beside same-run baselines.
# Usage: scripts/bench.sh [--quick] [--keep]   (figures: docs/performance.md)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v nix-store >/dev/null 2>&1 || need+=(nix-bin)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
# The closure section repeats on PostgreSQL + S3 (s3s-fs).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  # The package starts a system nginx on port 80; the bench runs its own.
  as_root systemctl stop nginx >/dev/null 2>&1 || as_root service nginx stop >/dev/null 2>&1 || true
fi

# Commits are not flushed one by one, as SQLite's WAL with synchronous =
# NORMAL does not flush them either: the two are compared like for like.
PG_OPTIONS="-c synchronous_commit=off"
source scripts/lib/throwaway-postgres.sh

echo "==> building (release)" >&2
cargo build --release --locked -p provenix-server -p provenix-client -p provenix-bench >&2
target/release/provenix-bench "$@"
