#!/usr/bin/env bash
# Installs what the tests need (Nix from Debian's nix-bin, PostgreSQL, openssl, sqlite3, nginx,
# s3s-fs from crates.io), starts
# a throwaway PostgreSQL server on loopback, builds the workspace and runs
# every test. Usage: scripts/test-all.sh [extra nextest/cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v nix-store >/dev/null 2>&1 || need+=(nix-bin)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# The certificate tests parse and verify with the openssl CLI.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Uploads in parts are tested through a real nginx with a body limit.
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
# The transparency log tests rewrite history in a SQLite database directly.
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
# The packaging test verifies the systemd unit with systemd-analyze.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  # The nginx package starts a system nginx on port 80; the tests run their own.
  as_root systemctl stop nginx >/dev/null 2>&1 || as_root service nginx stop >/dev/null 2>&1 || true
fi

# s3s-fs and a private PostgreSQL cluster for this run (fsync off: tests
# need no durability), removed on exit.
PG_OPTIONS="-c fsync=off"
source scripts/lib/throwaway-postgres.sh

# The end-to-end tests run the real binaries, so build them first.
cargo build --workspace --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
