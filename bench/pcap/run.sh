#!/usr/bin/env bash
# Benchmark of `idlereset pcap` against the tools an engineer would otherwise use, on one
# generated capture of at least 1 GB with millions of packets:
#   tcpdump -nn -r FILE 'tcp[tcpflags] & tcp-rst != 0'   (only filters RSTs)
#   tshark  -n  -r FILE -Y 'tcp.flags.reset==1'          (only filters RSTs, full dissection)
#   idlereset pcap FILE --json                           (full per-flow analysis)
# Targets, side by side in one run on the same warm file: idlereset uses at most the CPU time
# (user + system) of tcpdump, finishes in at most 0.6 of tcpdump's wall time (it reads and
# tracks flows on two threads; 2 cores), is at least 50x faster than tshark, and peaks under
# 64 MB RSS. Prints CPU and wall times (/usr/bin/time), the ratios against tcpdump, peak RSS
# and the time of reading the file alone on one core (dd: how fast the machine copies today), checks
# that every planted failure was found, and exits 1 if a target is missed.
#
# Usage: bench/pcap/run.sh            (SIZE_MB=1100 by default; WORK=dir to keep the files;
#                                      RUNS=N interleaved runs per tool, 5 by default;
#                                      KEEP=1 keeps the capture, REUSE=1 measures the capture
#                                      an earlier run left in WORK instead of writing a new
#                                      one, and keeps it)
# Addresses use -n so neither tool waits on reverse DNS.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZE_MB=${SIZE_MB:-1100}
if [ -n "${REUSE:-}" ] && [ -z "${WORK:-}" ]; then
  echo "REUSE=1 needs WORK=dir (the folder of an earlier run's capture)" >&2
  exit 2
fi
WORK=${WORK:-$(mktemp -d /tmp/idlereset-bench.XXXXXX)}
# The benchmark measures the shipped binary: the workspace's one release profile.
mkdir -p "$WORK"

need=()
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v tshark >/dev/null || need+=(tshark)
[ -x /usr/bin/time ] || need+=(time)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

cargo build --release -q -p idlereset
cargo build --release -q -p idlereset-core --example gen_capture
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/idlereset"
cap="$WORK/bench.pcap"

if [ -n "${REUSE:-}" ] && [ -s "$cap" ] && [ -s "$WORK/gen.log" ]; then
  echo "reusing $cap (REUSE=1; SIZE_MB is not checked)"
else
  [ -z "${REUSE:-}" ] || echo "REUSE=1: no capture in $WORK yet; writing one"
  "${CARGO_TARGET_DIR:-$PWD/target}/release/examples/gen_capture" "$cap" "$SIZE_MB" 2> "$WORK/gen.log"
fi
cat "$WORK/gen.log"
planted_resets=$(sed -n 's/.*planted \([0-9]*\) middlebox resets.*/\1/p' "$WORK/gen.log")
planted_blackholes=$(sed -n 's/.* and \([0-9]*\) blackholes.*/\1/p' "$WORK/gen.log")

# Write the new capture out first: otherwise the kernel flushes its dirty pages about 30 s
# later, in the middle of the measured runs, and both tools pay for it unevenly.
sync "$cap"
# Warm the page cache so every tool reads from memory, and run each tool once unmeasured.
cat "$cap" > /dev/null
"$bin" pcap "$cap" --json > /dev/null 2>&1 || true
tcpdump -nn -r "$cap" 'tcp[tcpflags] & tcp-rst != 0' > /dev/null 2>&1 || true

# measure NAME CMD...: one run; prints wall seconds, CPU seconds (user + system), peak RSS kB.
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || true
  awk '{printf "%s %.2f %s\n", $1, $2 + $3, $4}' "$WORK/$name.time" | tail -1
}

# median NAME FIELD: median of field FIELD over the runs recorded in $WORK/NAME.runs.
median() {
  sort -n -k"$2" "$WORK/$1.runs" | awk -v f="$2" '{v[NR]=$f} END{print v[int((NR+1)/2)]}'
}

# Interleave the two tools run by run so both see the same machine load; medians of $RUNS.
runs=${RUNS:-5}
: > "$WORK/idlereset.runs"; : > "$WORK/tcpdump.runs"; : > "$WORK/read.runs"
for _ in $(seq "$runs"); do
  measure idlereset "$bin" pcap "$cap" --json >> "$WORK/idlereset.runs"
  measure tcpdump tcpdump -nn -r "$cap" 'tcp[tcpflags] & tcp-rst != 0' >> "$WORK/tcpdump.runs"
  # Not a target: reading the file and nothing else on one core, how fast the machine copies
  # on the day (its memory speed drifts; tcpdump pays this copy on one core, idlereset
  # shares it between two).
  measure read dd if="$cap" of=/dev/null bs=256k >> "$WORK/read.runs"
done
t_ours=$(median idlereset 1); cpu_ours=$(median idlereset 2); rss_ours=$(median idlereset 3)
t_tcpdump=$(median tcpdump 1); cpu_tcpdump=$(median tcpdump 2); rss_tcpdump=$(median tcpdump 3)
t_read=$(median read 1)
read -r t_tshark cpu_tshark rss_tshark < <(measure tshark tshark -n -r "$cap" -Y 'tcp.flags.reset==1')

packets=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sum(f['packets'] for f in d['files']))" "$WORK/idlereset.out")
found=$(python3 -c "
import json,sys
d=json.load(open(sys.argv[1]))
r=sum(1 for e in d['events'] if e['kind']=='reset' and e['origin']=='middlebox')
b=sum(1 for e in d['events'] if e['kind']=='blackhole')
print(r, b, d['flows'])" "$WORK/idlereset.out")
read -r found_resets found_blackholes flows <<< "$found"
rst_lines=$(wc -l < "$WORK/tcpdump.out")

printf '\ncapture: %s bytes, %s packets, %s flows (%s RST packets per tcpdump)\n' \
  "$(stat -c %s "$cap")" "$packets" "$flows" "$rst_lines"
mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
printf '%-10s %8s %8s %12s\n' tool wall_s cpu_s peak_rss_MB
printf '%-10s %8s %8s %12s\n' idlereset "$t_ours" "$cpu_ours" "$(mb "$rss_ours")"
printf '%-10s %8s %8s %12s\n' tcpdump "$t_tcpdump" "$cpu_tcpdump" "$(mb "$rss_tcpdump")"
printf '%-10s %8s %8s %12s\n' tshark "$t_tshark" "$cpu_tshark" "$(mb "$rss_tshark")"
wall_ratio=$(awk -v a="$t_ours" -v b="$t_tcpdump" 'BEGIN{printf "%.2f", a/(b>0?b:0.01)}')
cpu_ratio=$(awk -v a="$cpu_ours" -v b="$cpu_tcpdump" 'BEGIN{printf "%.2f", a/(b>0?b:0.01)}')
r_tshark=$(awk -v a="$t_tshark" -v b="$t_ours" 'BEGIN{printf "%.1f", a/(b>0?b:0.01)}')
printf 'idlereset / tcpdump (medians of %s interleaved runs): CPU %s (target <= 1), wall %s (target <= 0.6); peak RSS %s MB (target < 64)\n' \
  "$runs" "$cpu_ratio" "$wall_ratio" "$(mb "$rss_ours")"
# The machine's speed drifts over minutes (shared hosts): the ratio of each interleaved pair
# cancels the drift; its median and range show how steady the comparison was.
paste -d' ' "$WORK/idlereset.runs" "$WORK/tcpdump.runs" | awk '
  { w[NR] = $1 / ($4 > 0 ? $4 : 0.01); c[NR] = $2 / ($5 > 0 ? $5 : 0.01) }
  function med(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return sprintf("%.2f (%.2f-%.2f)", a[int((n+1)/2)], a[1], a[n])
  }
  END { printf "per-pair ratios, median (min-max): CPU %s, wall %s\n", med(c, NR), med(w, NR) }'
printf 'speed-up vs tshark: %sx (target >= 50)\n' "$r_tshark"
printf 'reading the file alone (dd bs=256k, median): %s s wall, %s of tcpdump'"'"'s (one core'"'"'s copy today)\n' \
  "$t_read" "$(awk -v a="$t_read" -v b="$t_tcpdump" 'BEGIN{printf "%.2f", a/(b>0?b:0.01)}')"
printf 'found %s/%s middlebox resets and %s/%s blackholes\n' \
  "$found_resets" "$planted_resets" "$found_blackholes" "$planted_blackholes"

fail=0
awk -v r="$cpu_ratio" 'BEGIN{exit !(r<=1)}' || { echo "MISS: more CPU than tcpdump"; fail=1; }
awk -v r="$wall_ratio" 'BEGIN{exit !(r<=0.6)}' || { echo "MISS: wall time above 0.6 of tcpdump's"; fail=1; }
awk -v r="$r_tshark" 'BEGIN{exit !(r>=50)}' || { echo "MISS: less than 50x faster than tshark"; fail=1; }
[ "$rss_ours" -lt 65536 ] || { echo "MISS: peak RSS ${rss_ours} kB >= 64 MB"; fail=1; }
[ "$found_resets" = "$planted_resets" ] && [ "$found_blackholes" = "$planted_blackholes" ] \
  || { echo "MISS: planted failures not all found"; fail=1; }
[ "$fail" = 0 ] && echo "all targets met"
[ -n "${KEEP:-}${REUSE:-}" ] || rm -f "$cap"
exit "$fail"
