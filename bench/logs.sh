#!/usr/bin/env bash
# Benchmark: `idlereset logs` against `rg -c` counting the same signatures on a generated log.
#
# Usage: bench/logs.sh [SIZE_MB]   (default 1024, i.e. 1 GB; data goes to /tmp, never committed)
#
# The log is an application log with one reset-like line per ~5,000 lines, spread over the
# built-in signatures, some with 4-tuples (so the idle-bracket pass runs too) and some stack-trace
# lines without a timestamp. Both tools read the same page-cached file; each runs 3 times and the
# best wall time counts. The script checks that both count the same matching lines and prints the
# ratio idlereset / rg (goal: <= 2.0) and the peak RSS of both (and of idlereset reading the log
# from a pipe).
set -euo pipefail

SIZE_MB="${1:-1024}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="${BENCH_DIR:-/tmp/idlereset-bench}"
LOG="$DATA/app-${SIZE_MB}mb.log"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

if ! command -v rg >/dev/null; then
    echo "installing ripgrep" >&2
    apt-get install -y ripgrep >/dev/null
fi
mkdir -p "$DATA"

if [ ! -s "$LOG" ]; then
    echo "generating $LOG (${SIZE_MB} MB)" >&2
    python3 - "$LOG" "$SIZE_MB" <<'PY'
import random, sys, datetime
path, size_mb = sys.argv[1], int(sys.argv[2])
target = size_mb * 1024 * 1024
rnd = random.Random(42)
resets = [
    "ERROR stream failed: java.net.SocketException: Connection reset",
    "ERROR read tcp 198.18.1.10:{p}->198.18.2.10:5432: read: connection reset by peer",
    "ERROR pq: server closed the connection unexpectedly",
    "WARN rpc error: code = Unavailable desc = transport is closing",
    "ERROR reconnecting upstream: unexpected EOF",
    "ERROR write: broken pipe",
    "ERROR com.mysql.cj.jdbc.exceptions.CommunicationsException: Communications link failure",
]
paths = ["/api/v1/items", "/api/v1/users", "/healthz", "/api/v2/orders", "/metrics"]
t = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc).timestamp()
written = 0
n = 0
with open(path, "w", buffering=1 << 22) as f:
    while written < target:
        chunk = []
        for _ in range(20000):
            n += 1
            t += 0.013
            stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if n % 5000 == 0:
                line = f"{stamp} {rnd.choice(resets).format(p=40000 + n % 1000)}\n"
                if n % 15000 == 0:
                    line += "Caused by: java.net.SocketException: Connection reset\n"
            else:
                line = (f"{stamp} INFO request handled method=GET path={rnd.choice(paths)}/{n % 9973} "
                        f"status=200 dur_ms={n % 97} bytes={n % 65521} user_agent=bench/1.0\n")
            chunk.append(line)
        s = "".join(chunk)
        f.write(s)
        written += len(s)
PY
fi

echo "building idlereset (release)" >&2
cargo build --release -q -p idlereset --manifest-path "$ROOT/Cargo.toml"
BIN="$CARGO_TARGET_DIR/release/idlereset"

# Every built-in signature literal (tests/logs_cli.rs checks this list against the code).
SIGS=(-e "an i/o error occurred while sending to the backend" -e "this connection has been closed"
      -e "failed to validate connection" -e "server closed the connection unexpectedly"
      -e "connection terminated unexpectedly" -e "error while reading from" -e "stream removed" -e "recvmsg:connection reset by peer"
      -e "communications link failure" -e "server has gone away" -e "lost connection to mysql server"
      -e "transport is closing" -e "connection reset" -e "econnreset" -e "forcibly closed by the remote host"
      -e "socket hang up" -e "broken pipe" -e "epipe" -e "unexpected eof" -e "conn closed"
      -e "connection abort" -e "etimedout" -e "connection timed out")

cat "$LOG" >/dev/null # page cache

best() { # best wall time in seconds of 3 runs of "$@" (stdout to /dev/null)
    local b=""
    for _ in 1 2 3; do
        local s e
        s=$(date +%s.%N)
        "$@" >/dev/null || true
        e=$(date +%s.%N)
        b=$(python3 -c "import sys; d=$e-$s; b='$b'; print(d if b=='' else min(d, float(b)))")
    done
    echo "$b"
}

RG_COUNT=$(rg -c -i -F "${SIGS[@]}" "$LOG")
OUR_JSON=$("$BIN" logs "$LOG" --json || true)
OUR_COUNT=$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(r['events'] + r['lines_without_timestamp'] + r['lines_in_records'])" "$OUR_JSON")
if [ "$RG_COUNT" != "$OUR_COUNT" ]; then
    echo "MISMATCH: rg counts $RG_COUNT matching lines, idlereset $OUR_COUNT" >&2
    exit 1
fi

peak_kb() { # peak RSS (KiB) of "$@"
    { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null || true; } | tail -1
}

RG_T=$(best rg -c -i -F "${SIGS[@]}" "$LOG")
RG_KB=$(peak_kb rg -c -i -F "${SIGS[@]}" "$LOG")
OUR_KB=$(peak_kb "$BIN" logs "$LOG" --json)
PIPE_KB=$( { /usr/bin/time -f "%M" "$BIN" logs - --json <"$LOG" >/dev/null || true; } 2>&1 | tail -1)
OUR_T=$(best "$BIN" logs "$LOG" --json)
OUR_NC_T=$(best "$BIN" logs "$LOG" --json --no-connections)

python3 - "$LOG" "$RG_COUNT" "$RG_T" "$OUR_T" "$OUR_NC_T" "$RG_KB" "$OUR_KB" "$PIPE_KB" <<'PY'
import os, sys
log, count = sys.argv[1], int(sys.argv[2])
rg, ours, ours_nc = map(float, sys.argv[3:6])
rg_kb, our_kb, pipe_kb = map(int, sys.argv[6:9])
gb = os.path.getsize(log) / 1e9
print(f"log: {log} ({gb:.2f} GB), {count} matching lines (same count from both tools)")
print(f"rg -c -i -F (every built-in signature):{rg:6.2f} s  {gb / rg:5.2f} GB/s")
print(f"idlereset logs --json:                {ours:6.2f} s  {gb / ours:5.2f} GB/s  ratio {ours / rg:.2f}")
print(f"idlereset logs --json --no-connections: {ours_nc:4.2f} s  {gb / ours_nc:5.2f} GB/s  ratio {ours_nc / rg:.2f}")
print(f"peak RSS: rg {rg_kb / 1024:.1f} MiB, idlereset {our_kb / 1024:.1f} MiB, idlereset logs - (pipe) {pipe_kb / 1024:.1f} MiB")
print("goal: ratio <= 2.0:", "met" if ours / rg <= 2.0 else "NOT met")
PY
