#!/usr/bin/env bash
# Regenerates the lab-captured pcap fixtures in crates/idlereset-core/tests/fixtures/lab/ with the
# product's own `lab reproduce --capture-dir` and `lab capture` (AF_PACKET), at time scale 100 so
# idle gaps are ~12 s. The pcapng fixture is written by dumpcap inside the lab namespace (a format
# test input only; the product never runs dumpcap). Needs root. Each fixture is a few kB.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p idlereset
bin=$PWD/target/debug/idlereset
out=crates/idlereset-core/tests/fixtures/lab
tmp=$(mktemp -d)
run() { # name, args...
  local name=$1; shift
  "$bin" lab reproduce --time-scale 100 --capture-dir "$tmp/$name" "$@" --json > "$tmp/$name.json" || true
  cp "$tmp/$name/app.pcap" "$out/$name.pcap"
  python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(sys.argv[2], d['outcome'], d['error'])" "$tmp/$name.json" "$name"
}
run reset-v4 &
run reset-v6 --ipv6 &
run drop --profile drop --user-timeout 2m &
wait
run server-idle-close --fw-timeout 1d --server-idle-close 600 &
run keepalive-alive --keepalive-time 300 --keepalive-intvl 60 --idle 1800 &
run router-hop --hops 1 &
wait
# `any` (Linux cooked) and pcapng while a supervised lab runs its workload (resets every cycle);
# 40 s covers a whole cycle: reconnect, query, 12 s idle, reset.
"$bin" lab up --name idlereset-fixture --time-scale 100 --pool-size 1 >/dev/null
"$bin" lab exec app --lab idlereset-fixture -- dumpcap -q -i idlereset-fw -a duration:40 -w "$tmp/ng.pcapng" 2>/dev/null &
"$bin" lab capture app any --lab idlereset-fixture --duration 40s --out "$out/any-sll.pcap"
wait
cp "$tmp/ng.pcapng" "$out/dumpcap.pcapng"
"$bin" lab down idlereset-fixture >/dev/null
rm -rf "$tmp"
ls -l "$out"
