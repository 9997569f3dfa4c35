#!/usr/bin/env bash
# Benchmark: `idlereset audit --json` (sock_diag + /proc process ownership + findings) against
# `ss -tnoip` on the same established TCP sockets, side by side in one run.
#
# Usage: bench/audit.sh [SOCKETS] [ROUNDS]     (default 100000 sockets, 5 rounds; needs root)
#
# The sockets come from crates/idlereset-linux/examples/sockets_bench.rs: it creates a throw-away
# namespace idlereset-bench-<pid>, spreads SOCKETS loopback sockets (SOCKETS/2 connections) over
# helper processes (the open-file limit is 20,000 per process here) and, with BENCH_HOLD, keeps
# them open. Both tools then run inside that namespace through `ip netns exec`, alternating
# (ss, audit, ss, audit, ...) so both see the same table and the same machine load. Wall time and
# peak RSS come from /usr/bin/time -v; the median of the rounds counts. Goal: audit <= 0.5 x ss.
#
# Two audit variants are timed: the default (loopback connections are attributed to processes
# but not judged) and `--include-loopback --path-timeout 5`, which judges every socket and writes
# one finding per client socket (the heaviest JSON output).
set -euo pipefail

SOCKETS="${1:-100000}"
ROUNDS="${2:-5}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$(mktemp -d /tmp/idlereset-audit-bench.XXXXXX)"

cargo build --release -q -p idlereset --bin idlereset
cargo build --release -q -p idlereset-linux --example sockets_bench
BIN="$CARGO_TARGET_DIR/release/idlereset"
HOLDER="$CARGO_TARGET_DIR/release/examples/sockets_bench"

BENCH_HOLD=3600 "$HOLDER" "$SOCKETS" 0 2>"$OUT/holder.log" &
HOLDER_PID=$!
NS=""
cleanup() {
    kill "$HOLDER_PID" 2>/dev/null || true
    wait "$HOLDER_PID" 2>/dev/null || true
    [ -n "$NS" ] && ip netns delete "$NS" 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT INT TERM

for _ in $(seq 1 600); do
    NS="$(sed -n 's/^holding for [0-9]* s: namespace //p' "$OUT/holder.log")"
    [ -n "$NS" ] && break
    kill -0 "$HOLDER_PID" 2>/dev/null || { cat "$OUT/holder.log" >&2; exit 1; }
    sleep 1
done
[ -n "$NS" ] || { echo "socket holder did not get ready" >&2; exit 1; }
grep '^setup' "$OUT/holder.log" >&2

# run NAME CMD... : one timed run; appends "wall_s rss_kb" to $OUT/NAME.
run() {
    local name="$1"
    shift
    local rc=0
    /usr/bin/time -v -o "$OUT/time.txt" ip netns exec "$NS" "$@" >"$OUT/$name.out" || rc=$?
    # audit exits 1 when it has findings; anything else is a failed run.
    [ "$rc" -le 1 ] || { echo "$name failed (exit $rc)" >&2; exit 1; }
    local wall rss
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$OUT/time.txt")"
    rss="$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$OUT/time.txt")"
    echo "$wall $rss" >>"$OUT/$name"
}

for r in $(seq 1 "$ROUNDS"); do
    run ss ss -tnoip
    run audit "$BIN" audit --json
    run audit_all "$BIN" audit --json --include-loopback --path-timeout 5
    echo "round $r: ss $(tail -1 "$OUT/ss") | audit $(tail -1 "$OUT/audit") | audit --include-loopback $(tail -1 "$OUT/audit_all")  (wall s, peak RSS KiB)" >&2
done

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{ print $c }' "$OUT/$1" | median; }

SS_LINES="$(grep -c '^ESTAB' "$OUT/ss.out" || true)"  # -i adds a second line per socket
AUDIT_SOCKETS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sockets"])' "$OUT/audit.out")"
AUDIT_ALL_FINDINGS="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["findings"]))' "$OUT/audit_all.out")"
SS_T="$(col ss 1)"
A_T="$(col audit 1)"
AA_T="$(col audit_all 1)"
echo "sockets: ss lists $SS_LINES established, audit counts $AUDIT_SOCKETS established; --include-loopback wrote $AUDIT_ALL_FINDINGS findings"
echo "median wall: ss -tnoip ${SS_T} s ($(col ss 2) KiB peak) | audit --json ${A_T} s ($(col audit 2) KiB peak) | audit --include-loopback --path-timeout 5 ${AA_T} s ($(col audit_all 2) KiB peak)"
python3 - "$SS_T" "$A_T" "$AA_T" <<'PY'
import sys
ss, a, aa = (float(x) for x in sys.argv[1:])
print(f"ratio audit/ss: {a / ss:.2f} (goal <= 0.50); with every socket judged: {aa / ss:.2f}")
PY
