# Sourced by scripts/test-all.sh and scripts/bench.sh: installs s3s-fs if
# missing, starts a private PostgreSQL cluster on loopback for this run
# (removed on exit) and exports PROVENIX_TEST_POSTGRES_URL. Set PG_OPTIONS
# first to pass server settings (-c name=value ...).

# A real S3-compatible server for the S3 storage tests (see docs/architecture.md).
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "$cargo_bin/s3s-fs" ]; then
  echo "==> installing s3s-fs 0.14.1 (S3-compatible server)" >&2
  cargo install s3s-fs@0.14.1 --features binary --locked --quiet
fi

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pg_dir=$(mktemp -d /tmp/provenix-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_root chown postgres "$pg_dir" 2>/dev/null || true
pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres --no-sync >/dev/null
pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w start \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=300 ${PG_OPTIONS:-}" >/dev/null
trap 'pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pg_dir"' EXIT
export PROVENIX_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
echo "==> PostgreSQL on 127.0.0.1:$pg_port" >&2
