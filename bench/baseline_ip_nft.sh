#!/usr/bin/env bash
# Bench-only baseline: the lab's app -> fw -> db topology built and removed with iproute2 + nft,
# as a user would script it. The product never runs ip or nft.
set -euo pipefail
p=idlereset-bench
for h in app fw db; do ip netns add $p-$h; done
ip link add idlereset-fw netns $p-app type veth peer name idlereset-app netns $p-fw
ip link add idlereset-db netns $p-fw type veth peer name idlereset-fw netns $p-db
for h in app fw db; do ip -n $p-$h link set lo up; done
ip netns exec $p-fw sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.netfilter.nf_conntrack_tcp_timeout_established=3
ip -n $p-app addr add 198.18.1.10/24 dev idlereset-fw; ip -n $p-app addr add 2001:db8:1::10/64 dev idlereset-fw nodad
ip -n $p-fw addr add 198.18.1.1/24 dev idlereset-app; ip -n $p-fw addr add 2001:db8:1::1/64 dev idlereset-app nodad
ip -n $p-fw addr add 198.18.2.1/24 dev idlereset-db; ip -n $p-fw addr add 2001:db8:2::1/64 dev idlereset-db nodad
ip -n $p-db addr add 198.18.2.10/24 dev idlereset-fw; ip -n $p-db addr add 2001:db8:2::10/64 dev idlereset-fw nodad
ip -n $p-app link set idlereset-fw up; ip -n $p-fw link set idlereset-app up
ip -n $p-fw link set idlereset-db up; ip -n $p-db link set idlereset-fw up
ip -n $p-app route add default via 198.18.1.1; ip -n $p-app -6 route add default via 2001:db8:1::1
ip -n $p-db route add default via 198.18.2.1; ip -n $p-db -6 route add default via 2001:db8:2::1
ip netns exec $p-fw nft -f - <<'NFT'
table inet idlereset_bench {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related counter accept
    meta l4proto tcp ct state new tcp flags & (fin|syn|rst|ack) != syn counter reject with tcp reset
  }
}
NFT
for h in app fw db; do ip netns del $p-$h; done
