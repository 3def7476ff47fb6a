#!/usr/bin/env bash
# make demo: a braid node as a network namespace, pods attached through the
# real CNI chain with cnitool, traffic between them, the node's tables, and
# everything torn down afterwards (also on failure or Ctrl-C).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
export CNI_PATH=$bin:$bin/tools/cni
work=/run/braid-demo
cnitool=$bin/tools/cnitool

node=bd-node1
pods=(bd-pod-a bd-pod-b bd-pod-c)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
in_node() { nsenter --net=/run/netns/$node "$@"; }
braid() { in_node "$bin/braid" --state-dir "$work/$node/state" --bpf-root "$work/$node/bpf" "$@"; }
cni() { NETCONFPATH=$work/$node/net.d in_node "$cnitool" "$@"; }
pod_ip() { ip -n "$1" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }

cleanup() {
	set +e
	for p in "${pods[@]}"; do
		[ -e "/run/netns/$p" ] && cni del braid "/run/netns/$p" >/dev/null 2>&1
		ip netns del "$p" 2>/dev/null
	done
	ip netns del "$node" 2>/dev/null
	umount "$work/$node/bpf" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
cleanup

say "node $node: a network namespace with eth0 198.18.0.1, pod CIDR 198.19.1.0/24"
ip netns add "$node"
ip -n "$node" link add eth0 type veth peer name uplink
ip -n "$node" addr add 198.18.0.1/24 dev eth0
ip -n "$node" link set lo up
ip -n "$node" link set eth0 up
ip -n "$node" link set uplink up
braid node init --name node1 --node-ip 198.18.0.1 --pod-cidr 198.19.1.0/24 --device eth0

mkdir -p "$work/$node/net.d"
node_conflist() {
	sed "s|{ \"type\": \"veth-ebpf\" }|{ \"type\": \"veth-ebpf\", \"stateDir\": \"$work/$node/state\", \"bpfRoot\": \"$work/$node/bpf\" }|" \
		"$root/chain-configs/node-local.conflist"
}
node_conflist > "$work/$node/net.d/braid.conflist"

say "pods: cnitool add with chain-configs/node-local.conflist"
for p in "${pods[@]}"; do
	ip netns add "$p"
	ip -n "$p" link set lo up
	cni add braid "/run/netns/$p" >/dev/null
	echo "    $p -> $(pod_ip "$p")"
done

a=$(pod_ip bd-pod-a) b=$(pod_ip bd-pod-b) c=$(pod_ip bd-pod-c)
say "ping pod-a -> pod-b, pod-b -> pod-c (same node: bpf_redirect_peer)"
ip netns exec bd-pod-a ping -c 3 -i 0.2 -q "$b" | tail -2 | head -1
ip netns exec bd-pod-b ping -c 3 -i 0.2 -q "$c" | tail -2 | head -1

say "TCP pod-c -> pod-a (nc)"
ip netns exec bd-pod-a timeout 5 nc -l -p 8080 >"$work/tcp.out" &
listener=$!
for _ in $(seq 50); do ip netns exec bd-pod-a ss -ltn | grep -q ':8080' && break; sleep 0.05; done
echo "hello from pod-c over braid" | ip netns exec bd-pod-c nc -N -w 2 "$a" 8080
wait $listener || true
echo "    pod-a received: $(cat "$work/tcp.out")"

say "anti-spoofing: pod-c sends from 198.19.1.200, which is not its address"
ip -n bd-pod-c addr add 198.19.1.200/32 dev eth0
if ip netns exec bd-pod-c ping -c 1 -W 1 -I 198.19.1.200 "$a" >/dev/null 2>&1; then
	echo "    spoofed packet got through: FAIL"; exit 1
else
	echo "    spoofed ping dropped by veth-ebpf"
fi

say "braid endpoint list"
braid endpoint list
say "braid bpf endpoint list"
braid bpf endpoint list

say "teardown: cnitool del, then the node"
for p in "${pods[@]}"; do cni del braid "/run/netns/$p"; done
braid status | grep -E 'endpoints|allocations|endpoint map'
say "done"
