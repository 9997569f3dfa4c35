#!/usr/bin/env bash
# Benchmark: inventory validation scales linearly in the number of hops.
#
# Usage: bench/inventory.sh [HOPS]   (default 20000; inventories go to /tmp, never committed)
#
# Generates inventories with HOPS and 2 x HOPS hops (one client), then runs
# `idlereset plan FILE --json > /dev/null` (parse, validate, plan, render JSON) on each, and
# `python3 -c 'tomllib.load(...)'` on the same files: what a user would otherwise run just to
# check the TOML parses. Each runs 5 times; medians of wall time, CPU time (user + sys) and
# peak RSS come from /usr/bin/time. Prints the 2x/1x ratio (linear: about 2; the quadratic
# validator of before took 21 s for 20,000 hops) and idlereset / python ratios.
set -euo pipefail

HOPS="${1:-20000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="${BENCH_DIR:-/tmp/idlereset-bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$CARGO_TARGET_DIR/release/idlereset"
mkdir -p "$DATA"

echo "building the release binary" >&2
cargo build --release -p idlereset --manifest-path "$ROOT/Cargo.toml" >&2

gen() { # gen N FILE
    python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write('name = "generated"\n')
    for i in range(n):
        f.write(f'[[hop]]\nname = "h{i}"\nkind = "nat"\nidle_timeout_s = {300 + i % 1000}\n'
                f'matches = ["198.18.{i % 256}.0/24:5432"]\n\n')
    f.write('[[client]]\nname = "c"\nlibrary = "go"\nconnections = 10\n')
PY
}

# median of a column over 5 runs: wall s, cpu s, peak KB
measure() { # measure CMD...
    for _ in 1 2 3 4 5; do
        /usr/bin/time -f '%e %U %S %M' "$@" >/dev/null 2>>"$DATA/time.$$" || true
    done
    python3 - "$DATA/time.$$" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 4]
wall = statistics.median(float(r[0]) for r in rows)
cpu = statistics.median(float(r[1]) + float(r[2]) for r in rows)
rss = statistics.median(int(r[3]) for r in rows)
print(f"{wall:.3f} {cpu:.3f} {rss}")
PY
    rm -f "$DATA/time.$$"
}

declare -A WALL CPU RSS PYWALL PYCPU
for n in "$HOPS" $((HOPS * 2)); do
    f="$DATA/inventory-$n.toml"
    [ -s "$f" ] || gen "$n" "$f"
    read -r w c r < <(measure "$BIN" plan "$f" --json)
    WALL[$n]=$w; CPU[$n]=$c; RSS[$n]=$r
    read -r pw pc _ < <(measure python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$f")
    PYWALL[$n]=$pw; PYCPU[$n]=$pc
    printf '%6d hops: idlereset plan --json wall %.3f s cpu %.3f s peak RSS %d KB | python tomllib wall %.3f s cpu %.3f s\n' \
        "$n" "$w" "$c" "$r" "$pw" "$pc"
done
python3 - "${WALL[$HOPS]}" "${WALL[$((HOPS * 2))]}" "${PYWALL[$HOPS]}" "${CPU[$HOPS]}" "${PYCPU[$HOPS]}" <<'PY'
import sys
w1, w2, pw, c1, pc = map(float, sys.argv[1:])
print(f"scaling: {w2 / max(w1, 1e-3):.2f}x wall for 2x hops (linear = 2.0)")
print(f"idlereset / python tomllib: wall {w1 / max(pw, 1e-3):.2f}, cpu {c1 / max(pc, 1e-3):.2f}")
PY
