#!/usr/bin/env bash
# make demo: three braid nodes as network namespaces on an underlay bridge,
# pods attached through the real CNI chain with cnitool, traffic on one node
# and across nodes in both routing modes (VXLAN overlay, native routing),
# the node's tables, and everything torn down afterwards (also on failure).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
export CNI_PATH=$bin:$bin/tools/cni
cnitool=$bin/tools/cnitool
work=/run/braid-demo
nodes=(1 2 3)
underlay=bd-underlay

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
ok() { printf '    %-58s %s\n' "$1" "$2"; }
in_node() { local n=$1; shift; nsenter --net=/run/netns/bd-node$n "$@"; }
braid() { local n=$1; shift; in_node "$n" "$bin/braid" --state-dir "$work/node$n/state" --bpf-root "$work/node$n/bpf" "$@"; }
cni() { local n=$1; shift; NETCONFPATH=$work/node$n/net.d in_node "$n" "$cnitool" "$@"; }
pod_ip() { ip -n "$1" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
ping_ok() { ip netns exec "$1" ping -c 2 -i 0.2 -W 1 -q "$2" >/dev/null 2>&1 && echo ok || echo FAILED; }

pods=()
cleanup() {
	set +e
	for p in "${pods[@]}"; do ip netns del "$p" 2>/dev/null; done
	for n in "${nodes[@]}"; do
		umount "$work/node$n/bpf" 2>/dev/null
		ip netns del "bd-node$n" 2>/dev/null
	done
	ip netns del $underlay 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
cleanup

say "underlay 198.18.0.0/24 and three nodes (pod CIDRs 198.19.N.0/24)"
ip netns add $underlay
ip -n $underlay link add br0 type bridge
ip -n $underlay link set br0 up
for n in "${nodes[@]}"; do
	ip netns add "bd-node$n"
	ip -n $underlay link add "n$n" type veth peer name eth0 netns "bd-node$n"
	ip -n $underlay link set "n$n" master br0 up
	ip -n "bd-node$n" addr add "198.18.0.$n/24" dev eth0
	ip -n "bd-node$n" link set eth0 up
	ip -n "bd-node$n" link set lo up
	braid "$n" node init --name "node$n" --node-ip "198.18.0.$n" --pod-cidr "198.19.$n.0/24" --device eth0 >/dev/null
	for m in "${nodes[@]}"; do
		[ "$m" = "$n" ] || braid "$n" node add "node$m" --node-ip "198.18.0.$m" --pod-cidr "198.19.$m.0/24" >/dev/null
	done
done
braid 1 node list

# conflist <node> <file>: a chain-configs conflist with the node's paths.
conflist() {
	mkdir -p "$work/node$1/net.d"
	jq --arg s "$work/node$1/state" --arg b "$work/node$1/bpf" \
		'.plugins |= map(. + {stateDir: $s, bpfRoot: $b})' "$root/chain-configs/$2" \
		>"$work/node$1/net.d/braid.conflist"
}

# capture start|stop: what the node1 -> node2 ping looks like on the underlay.
capture() {
	if [ "$1" = start ]; then
		ip netns exec $underlay tcpdump -l -nn -T vxlan -i n1 -c 2 'icmp or udp' >"$work/capture" 2>/dev/null &
		capture_pid=$!
		sleep 0.3
		return
	fi
	wait "$capture_pid" 2>/dev/null || true
	sed -E 's/^[0-9:.]+ //; s/(length [0-9]+).*/\1/' "$work/capture" | head -1 | sed 's/^/      underlay: /'
}

# run_mode <conflist>: pods on every node, same-node and cross-node traffic.
run_mode() {
	local mode=$1
	for n in "${nodes[@]}"; do conflist "$n" "$mode"; done
	for n in "${nodes[@]}"; do
		for x in a b; do
			local p=bd-p$n$x
			ip netns add "$p"; pods+=("$p")
			ip -n "$p" link set lo up
			cni "$n" add braid "/run/netns/$p" >/dev/null
		done
	done
	local a1 b1 a2 a3
	a1=$(pod_ip bd-p1a) b1=$(pod_ip bd-p1b) a2=$(pod_ip bd-p2a) a3=$(pod_ip bd-p3a)
	ok "node1 pods $a1, $b1; node2 pod $a2; node3 pod $a3" ""
	ok "same node: ping $a1 -> $b1" "$(ping_ok bd-p1a "$b1")"
	capture start
	ok "cross node: ping $a1 -> $a2" "$(ping_ok bd-p1a "$a2")"
	capture stop
	ok "cross node: ping $a3 -> $a1" "$(ping_ok bd-p3a "$a1")"
	ip netns exec bd-p2a timeout 5 nc -l -p 8080 >"$work/tcp.out" &
	local listener=$!
	for _ in $(seq 50); do ip netns exec bd-p2a ss -ltn | grep -q ':8080' && break; sleep 0.05; done
	echo "hello across nodes" | ip netns exec bd-p3a nc -N -w 2 "$a2" 8080 || true
	wait $listener || true
	ok "cross node: TCP $a3 -> $a2:8080" "$([ "$(cat "$work/tcp.out")" = "hello across nodes" ] && echo ok || echo FAILED)"
	ok "pod MTU on node1 ($(cut -d. -f1 <<<"$mode") mode)" "$(ip -n bd-p1a -o link show eth0 | grep -o 'mtu [0-9]*')"
	for n in "${nodes[@]}"; do
		for x in a b; do cni "$n" del braid "/run/netns/bd-p$n$x"; ip netns del "bd-p$n$x"; done
	done
	pods=()
}

say "VXLAN overlay: veth-ebpf + vxlan-tunnel (chain-configs/vxlan.conflist)"
run_mode vxlan.conflist
say "native routing: veth-ebpf + native-route (chain-configs/native.conflist)"
run_mode native.conflist
in_node 1 ip route show proto 189 | sed 's/^/    node1 route: /'

say "node3 leaves: braid node del + braid sync on node1"
braid 1 node del node3 >/dev/null
conflist 1 native.conflist
braid 1 sync --conflist "$work/node1/net.d/braid.conflist" | sed 's/^/    /'

say "endpoints, maps and status on node1 after teardown"
braid 1 status | grep -E 'endpoints|allocations|endpoint map' | sed 's/^/    /'
say "done"
