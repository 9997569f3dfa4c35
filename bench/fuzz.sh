#!/usr/bin/env bash
# Fuzz every cargo-fuzz target for N seconds and print executions and crashes per target.
#
# Usage: bench/fuzz.sh [SECONDS] [TARGET...]   (default 30 s, every target in fuzz/Cargo.toml)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); RUSTC_BOOTSTRAP=1 lets it use the
# stable toolchain. Each target starts from its committed seeds (fuzz/corpus-seeds/TARGET) and
# writes new inputs to fuzz/corpus/TARGET (ignored by git); a crash stops that target and
# leaves its input in fuzz/artifacts/TARGET/ (commit it as a seed once fixed). Exit 1 when any
# target crashed.
set -uo pipefail

SECONDS_PER_TARGET="${1:-30}"
shift || true
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT/fuzz"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <(cargo fuzz list)
fi
echo "building ${#TARGETS[@]} targets" >&2
cargo fuzz build >&2 || exit 2

failed=0
printf '%-16s %12s %10s %8s %s\n' target execs execs/s crashes note
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    seeds="corpus-seeds/$t"
    [ -d "$seeds" ] || seeds=""
    before=$(find "artifacts/$t" -type f | wc -l)
    log=$(mktemp)
    cargo fuzz run "$t" "corpus/$t" $seeds -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -rss_limit_mb=2048 \
        -timeout=10 >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
    note=""
    if [ "$rc" -ne 0 ]; then
        failed=1
        note="exit $rc: $(grep -m1 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | cut -c1-120)"
    fi
    printf '%-16s %12s %10s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "$crashes" "$note"
    rm -f "$log"
done
exit "$failed"
