#!/usr/bin/env bash
# Benchmark: dump and analyse a conntrack table of N entries (default 1,000,000) with
# `idlereset conntrack` against `conntrack -L > /dev/null` and against the kernel's own cost
# (a netlink dump that only counts messages: conntrack::dump_count), side by side in one run,
# alternating, median of R rounds (default 3); wall time and peak RSS of each.
# The table lives in a throw-away namespace, filled over ctnetlink (UDP entries, 3600 s).
# nf_conntrack_max is global: it is raised for the run and restored on exit.
# Needs root and the conntrack CLI (bench only; the product never calls it).
# Usage: bench/conntrack.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
rounds=${2:-3}
command -v conntrack >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq conntrack >/dev/null; }
cargo build --release -q -p idlereset
cargo build --release -q -p idlereset-linux --example ct_table
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/idlereset
tool=$target/release/examples/ct_table
ns=irct-bench-$$  # not idlereset-*: `lab down --all` sweeps those
max_before=$(cat /proc/sys/net/netfilter/nf_conntrack_max)
cleanup() {
    ip netns del "$ns" 2>/dev/null || true
    echo "$max_before" > /proc/sys/net/netfilter/nf_conntrack_max
}
trap cleanup EXIT
echo $(( n + n / 10 + 1000 )) > /proc/sys/net/netfilter/nf_conntrack_max
ip netns add "$ns"
ip netns exec "$ns" "$tool" fill "$n"
python3 - "$bin" "$tool" "$ns" "$rounds" "$n" <<'PY'
import statistics, subprocess, sys
binary, tool, ns, rounds, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
cases = {
    "conntrack -L > /dev/null": ["ip", "netns", "exec", ns, "conntrack", "-L"],
    "idlereset conntrack (table) > /dev/null": [binary, "conntrack", "--netns", ns],
    "idlereset conntrack --json > /dev/null": [binary, "conntrack", "--netns", ns, "--json"],
    "kernel cost: dump_count": ["ip", "netns", "exec", ns, tool, "count"],
}
res = {k: [] for k in cases}
for _ in range(rounds):
    for name, cmd in cases.items():
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M"] + cmd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, check=True)
        wall, rss = p.stderr.strip().splitlines()[-1].split()
        res[name].append((float(wall), int(rss)))
print(f"conntrack table of {n} entries, median of {rounds} rounds")
med = {}
for name, r in res.items():
    wall = statistics.median(w for w, _ in r)
    rss = max(m for _, m in r)
    med[name] = wall
    print(f"  {name:<42} {wall:6.2f} s   peak RSS {rss/1024:6.1f} MB")
base, kern = med["conntrack -L > /dev/null"], med["kernel cost: dump_count"]
for name in ("idlereset conntrack (table) > /dev/null", "idlereset conntrack --json > /dev/null"):
    print(f"  {name}: {base/med[name]:.2f}x faster than conntrack -L, {med[name]/kern:.2f}x the kernel's cost")
PY
