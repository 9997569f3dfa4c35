#!/usr/bin/env bash
# Benchmark: `idlereset lab up` + `lab down` (release build, with the supervisor, database
# server and workload started) against the same topology built by hand with iproute2 + nft
# (bench/baseline_ip_nft.sh). Side by side in one run, alternating, median of N rounds each.
# Needs root. Usage: bench/lab_up_down.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
command -v nft >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2 >/dev/null; }
cargo build --release -q -p idlereset
bin=target/release/idlereset
"$bin" lab down --all >/dev/null
python3 - "$bin" "$rounds" <<'PY'
import statistics, subprocess, sys, time
binary, rounds = sys.argv[1], int(sys.argv[2])
def idlereset():
    subprocess.run([binary, "lab", "up", "--pool-size", "1", "--time-scale", "300", "--name", "idlereset-bench0"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([binary, "lab", "down", "idlereset-bench0"], check=True, stdout=subprocess.DEVNULL)
def baseline():
    subprocess.run(["bash", "bench/baseline_ip_nft.sh"], check=True)
names = ("idlereset lab up + lab down", "ip + nft script, same topology")
res = {n: [] for n in names}
for _ in range(rounds):
    for name, f in zip(names, (idlereset, baseline)):
        t = time.perf_counter(); f(); res[name].append(time.perf_counter() - t)
print("| command | median ms | min ms | max ms | rounds |")
print("|---|---|---|---|---|")
for name, v in res.items():
    print(f"| {name} | {statistics.median(v)*1000:.1f} | {min(v)*1000:.1f} | {max(v)*1000:.1f} | {len(v)} |")
a, b = statistics.median(res[names[0]]), statistics.median(res[names[1]])
print(f"\nspeed-up vs the ip + nft script: {b/a:.1f}x; target idlereset median < 300 ms: {'PASS' if a < 0.3 else 'FAIL'}")
PY
