#!/usr/bin/env bash
# Benchmark of `idlereset pcap` against the tools an engineer would otherwise use, on one
# generated capture of at least 1 GB with millions of packets:
#   tcpdump -nn -r FILE 'tcp[tcpflags] & tcp-rst != 0'   (only filters RSTs)
#   tshark  -n  -r FILE -Y 'tcp.flags.reset==1'          (only filters RSTs, full dissection)
#   idlereset pcap FILE --json                           (full per-flow analysis)
# Targets: idlereset at least as fast as tcpdump, at least 50x faster than tshark, peak RSS
# under 100 MB. Prints wall times, ratios and peak RSS (/usr/bin/time), checks that every
# planted failure was found, and exits 1 if a target is missed.
#
# Usage: bench/pcap/run.sh            (SIZE_MB=1100 by default; WORK=dir to keep the files)
# Addresses use -n so neither tool waits on reverse DNS.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZE_MB=${SIZE_MB:-1100}
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

"${CARGO_TARGET_DIR:-$PWD/target}/release/examples/gen_capture" "$cap" "$SIZE_MB" 2> "$WORK/gen.log"
cat "$WORK/gen.log"
planted_resets=$(sed -n 's/.*planted \([0-9]*\) middlebox resets.*/\1/p' "$WORK/gen.log")
planted_blackholes=$(sed -n 's/.* and \([0-9]*\) blackholes.*/\1/p' "$WORK/gen.log")

# Warm the page cache so every tool reads from memory.
cat "$cap" > /dev/null

# measure NAME CMD...: best wall time of $RUNS runs, peak RSS of the last run.
measure() {
  local name=$1; shift
  local runs=${RUNS:-3}
  [ "$name" = tshark ] && runs=1
  local best=""
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || true
    local t
    t=$(awk '{print $1}' "$WORK/$name.time" | tail -1)
    if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$t; fi
  done
  echo "$best $(awk '{print $2}' "$WORK/$name.time" | tail -1)"
}

read -r t_ours rss_ours < <(measure idlereset "$bin" pcap "$cap" --json)
read -r t_tcpdump rss_tcpdump < <(measure tcpdump tcpdump -nn -r "$cap" 'tcp[tcpflags] & tcp-rst != 0')
read -r t_tshark rss_tshark < <(measure tshark tshark -n -r "$cap" -Y 'tcp.flags.reset==1')

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
printf '%-10s %10s %14s\n' tool wall_s peak_rss_MB
printf '%-10s %10s %14.1f\n' idlereset "$t_ours" "$(awk -v k="$rss_ours" 'BEGIN{print k/1024}')"
printf '%-10s %10s %14.1f\n' tcpdump "$t_tcpdump" "$(awk -v k="$rss_tcpdump" 'BEGIN{print k/1024}')"
printf '%-10s %10s %14.1f\n' tshark "$t_tshark" "$(awk -v k="$rss_tshark" 'BEGIN{print k/1024}')"
r_tcpdump=$(awk -v a="$t_tcpdump" -v b="$t_ours" 'BEGIN{printf "%.2f", a/(b>0?b:0.01)}')
r_tshark=$(awk -v a="$t_tshark" -v b="$t_ours" 'BEGIN{printf "%.1f", a/(b>0?b:0.01)}')
printf 'speed-up vs tcpdump: %sx (target >= 1), vs tshark: %sx (target >= 50)\n' "$r_tcpdump" "$r_tshark"
printf 'found %s/%s middlebox resets and %s/%s blackholes\n' \
  "$found_resets" "$planted_resets" "$found_blackholes" "$planted_blackholes"

fail=0
awk -v r="$r_tcpdump" 'BEGIN{exit !(r>=1)}' || { echo "MISS: slower than tcpdump"; fail=1; }
awk -v r="$r_tshark" 'BEGIN{exit !(r>=50)}' || { echo "MISS: less than 50x faster than tshark"; fail=1; }
[ "$rss_ours" -lt 102400 ] || { echo "MISS: peak RSS ${rss_ours} kB >= 100 MB"; fail=1; }
[ "$found_resets" = "$planted_resets" ] && [ "$found_blackholes" = "$planted_blackholes" ] \
  || { echo "MISS: planted failures not all found"; fail=1; }
[ "$fail" = 0 ] && echo "all targets met"
[ -n "${KEEP:-}" ] || rm -f "$cap"
exit "$fail"
