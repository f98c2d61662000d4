#!/usr/bin/env bash
# Runs the cargo-fuzz (libFuzzer) targets in fuzz/ one after another, never
# two at once, each for a fixed time, and prints for each the executions
# libFuzzer reported and whether it found a crash. Not part of CI.
#
#   scripts/fuzz.sh [--time SECONDS] [target...]
#
# Default: every target, 600 seconds each. New corpus entries are written to
# fuzz/corpus/<target>/ (minimise with `cargo +nightly fuzz cmin <target>`
# before committing any); crashes to fuzz/artifacts/<target>/; full logs to
# fuzz/target/fuzz-logs/<target>.log. docs/fuzzing.md describes the targets.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

all_targets=(nar_validator narinfo store_path upload_statement closure_statement nixbase32 jwt server_toml tlog)
time=600
targets=()

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    echo "targets: ${all_targets[*]}"
}

while [ $# -gt 0 ]; do
    case "$1" in
    --time)
        [ $# -ge 2 ] || { echo "--time needs a value" >&2; exit 2; }
        time=$2
        shift 2
        ;;
    --time=*)
        time=${1#--time=}
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*)
        echo "unknown option $1" >&2
        usage >&2
        exit 2
        ;;
    *)
        targets+=("$1")
        shift
        ;;
    esac
done
case "$time" in
'' | *[!0-9]*)
    echo "--time must be a whole number of seconds, not $time" >&2
    exit 2
    ;;
esac
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "unknown target $t (have: ${all_targets[*]})" >&2; exit 2; }
done

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# Builds take one core; the fuzzer itself is one process (no -jobs, -workers
# or -fork: with -jobs=1 libFuzzer would add a supervising process and move
# the output into ./fuzz-0.log).
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

# server_toml links the whole server crate (behind the fuzz crate's
# `server` feature); every other target only the pure provenance crate.
flags_for() {
    case "$1" in
    server_toml) echo "--features server" ;;
    *) echo "" ;;
    esac
}

logs=$root/fuzz/target/fuzz-logs
mkdir -p "$logs"
summary=()
failed=0
for t in "${targets[@]}"; do
    # shellcheck disable=SC2046 # flags are words on purpose
    set -- $(flags_for "$t")
    corpus=$root/fuzz/corpus/$t
    mkdir -p "$corpus" "$root/fuzz/artifacts/$t"
    echo "=== $t: building" >&2
    cargo +nightly fuzz build "$@" "$t"
    echo "=== $t: fuzzing for $time s" >&2
    log=$logs/$t.log
    set +e
    cargo +nightly fuzz run "$@" "$t" "$corpus" -- \
        -max_total_time="$time" -print_final_stats=1 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    # The last status line, e.g. "#1234567 DONE cov: 412 ft: 1203 corp: 80/4Kb".
    execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 || true)
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
    artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
    files=$(find "$corpus" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        result="no crash"
    else
        result="CRASH (exit $rc) ${artifact:-see $log}"
        failed=1
    fi
    summary+=("$(printf '%-18s %8ss  last %-12s executed %-12s corpus %5s files  %s' \
        "$t" "$time" "${execs:-?}" "${runs:-?}" "$files" "$result")")
done

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
