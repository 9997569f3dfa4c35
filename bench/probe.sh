#!/usr/bin/env bash
# Benchmark: `idlereset probe` wall time against a sequential bisection baseline
# (bench/probe_bisect_baseline.py) on the same lab path, for firewall timeouts T = 10 s and 30 s.
# Targets: 5 % precision <= 1.2 T + 3 s; 1 s precision <= 2.2 T + 3 s. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p idlereset
bin=$PWD/target/release/idlereset
"$bin" lab down --all >/dev/null
echo "| T | measurement | bracket | wall s | target s | ratio baseline/idlereset |"
echo "|---|---|---|---|---|---|"
for T in 10 30; do
  lab=idlereset-bprobe$T
  "$bin" lab up --name $lab --time-scale 1 --fw-timeout $T --pool-size 1 --idle 1h >/dev/null
  base=$("$bin" lab exec app --lab $lab -- python3 bench/probe_bisect_baseline.py 198.18.2.10 5432 1 $((T * 3)) 1)
  b_wall=$(python3 -c "import json,sys;print(round(json.loads(sys.argv[1])['elapsed_s'],1))" "$base")
  b_br=$(python3 -c "import json,sys;d=json.loads(sys.argv[1]);print(f\"[{d['low']:.1f}, {d['high']:.1f}]\")" "$base")
  echo "| $T | sequential bisection, 1 s | $b_br | $b_wall | - | 1.0 |"
  for prec in 5% 1s; do
    out=$("$bin" lab exec app --lab $lab -- "$bin" probe 198.18.2.10:5432 --max $((T * 3))s --precision $prec --json 2>/dev/null || true)
    python3 - "$out" "$T" "$prec" "$b_wall" <<'PY'
import json, sys
d = json.loads(sys.argv[1]); T = float(sys.argv[2]); prec = sys.argv[3]; base = float(sys.argv[4])
target = (1.2 if prec.endswith('%') else 2.2) * T + 3
w = d["elapsed_s"]
ok = "PASS" if w <= target else "FAIL"
print(f"| {T:.0f} | idlereset probe, {prec} | [{d['timeout_s']['low']}, {d['timeout_s']['high']}] {d['failure']} | {w:.1f} | {target:.0f} ({ok}) | {base / w:.1f}x |")
PY
  done
  "$bin" lab down $lab >/dev/null
done
