#!/usr/bin/env bash
# make demo: three braid nodes as network namespaces on an underlay bridge and
# an external client, pods attached through the real CNI chain with cnitool,
# then, in both routing modes (VXLAN overlay, native routing): same-node and
# cross-node traffic, a ClusterIP service balanced by sock-lb, a NodePort
# service answered with direct server return; finally a node leaving.
# Everything is torn down afterwards, also on failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
export CNI_PATH=$bin:$bin/tools/cni
cnitool=$bin/tools/cnitool
work=/run/braid-demo
cgroups=/sys/fs/cgroup/unified/braid-demo
nodes=(1 2 3)
underlay=bd-underlay
client=bd-client

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
ok() { printf '    %-62s %s\n' "$1" "$2"; }
in_node() { local n=$1; shift; nsenter --net=/run/netns/bd-node$n "$@"; }
braid() { local n=$1; shift; in_node "$n" "$bin/braid" --state-dir "$work/node$n/state" --bpf-root "$work/node$n/bpf" "$@"; }
cni() { local n=$1; shift; NETCONFPATH=$work/node$n/net.d in_node "$n" "$cnitool" "$@"; }
pod_ip() { ip -n "$1" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
ping_ok() { ip netns exec "$1" ping -c 2 -i 0.2 -W 1 -q "$2" >/dev/null 2>&1 && echo ok || echo FAILED; }
# in_pod <node> <pod> cmd...: a process of the pod: its netns, its node's cgroup.
in_pod() { local n=$1 p=$2; shift 2; sh -c 'echo $$ >"$0/cgroup.procs"; exec "$@"' "$cgroups/node$n" nsenter --net=/run/netns/"$p" "$@"; }

pods=()
cleanup() {
	set +e
	pkill -f 'socat TCP-LISTEN:8080' 2>/dev/null
	for p in "${pods[@]}"; do ip netns del "$p" 2>/dev/null; done
	for n in "${nodes[@]}"; do
		umount "$work/node$n/bpf" 2>/dev/null
		ip netns del "bd-node$n" 2>/dev/null
		rmdir "$cgroups/node$n" 2>/dev/null
	done
	rmdir "$cgroups" 2>/dev/null
	ip netns del $client 2>/dev/null
	ip netns del $underlay 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
cleanup

say "underlay 198.18.0.0/24, three nodes (pods 198.19.N.0/24), a client 198.18.1.10 outside"
ip netns add $underlay
ip -n $underlay link add br0 type bridge
ip -n $underlay link set br0 up
attach() { # attach <netns> <port> <address>
	ip -n $underlay link add "$2" type veth peer name eth0 netns "$1"
	ip -n $underlay link set "$2" master br0 up
	ip -n "$1" addr add "$3" dev eth0
	ip -n "$1" link set eth0 up
	ip -n "$1" link set lo up
}
ip netns add $client
attach $client c0 198.18.1.10/24
ip -n $client route add 198.18.0.0/24 dev eth0
for n in "${nodes[@]}"; do
	ip netns add "bd-node$n"
	attach "bd-node$n" "n$n" "198.18.0.$n/24"
	ip -n "bd-node$n" route add 198.18.1.0/24 dev eth0
	mkdir -p "$cgroups/node$n"
	braid "$n" node init --name "node$n" --node-ip "198.18.0.$n" --pod-cidr "198.19.$n.0/24" --device eth0 >/dev/null
	for m in "${nodes[@]}"; do
		[ "$m" = "$n" ] || braid "$n" node add "node$m" --node-ip "198.18.0.$m" --pod-cidr "198.19.$m.0/24" >/dev/null
	done
done
braid 1 node list | sed 's/^/    /'

# conflist <node> <file>: a chain-configs conflist with the node's own paths.
conflist() {
	mkdir -p "$work/node$1/net.d"
	jq --arg s "$work/node$1/state" --arg b "$work/node$1/bpf" --arg c "$cgroups/node$1" \
		'.plugins |= map(. + {stateDir: $s, bpfRoot: $b} + (if .type == "sock-lb" then {cgroupRoot: $c} else {} end))' \
		"$root/chain-configs/$2" >"$work/node$1/net.d/braid.conflist"
}

# capture start|stop <port>: the first packets on a node's underlay port.
capture() {
	if [ "$1" = start ]; then
		ip netns exec $underlay tcpdump -l -nn -T vxlan -i "$2" -c "${3:-1}" 'icmp or udp or tcp' >"$work/capture" 2>/dev/null &
		capture_pid=$!
		sleep 0.3
		return
	fi
	sleep 0.3
	kill "$capture_pid" 2>/dev/null; wait "$capture_pid" 2>/dev/null || true
}
show_capture() { sed -E 's/^[0-9:.]+ //; s/, length.*//; s/^/        /' "$work/capture" | head -"${1:-1}"; }

serve() { # serve <node> <pod>: a TCP server on 8080 answering with its pod name
	in_pod "$1" "$2" socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:"echo $2" &
	for _ in $(seq 50); do ip netns exec "$2" ss -ltn | grep -q ':8080' && return; sleep 0.05; done
}

# run_mode <conflist>: pods, traffic and services in one routing mode.
run_mode() {
	local mode=$1
	for n in "${nodes[@]}"; do
		conflist "$n" "$mode"
		for x in a b; do
			local p=bd-p$n$x
			ip netns add "$p"; pods+=("$p")
			ip -n "$p" link set lo up
			cni "$n" add braid "/run/netns/$p" >/dev/null
		done
		braid "$n" sync --conflist "$work/node$n/net.d/braid.conflist" >/dev/null
	done
	local a1 b1 a2 a3
	a1=$(pod_ip bd-p1a) b1=$(pod_ip bd-p1b) a2=$(pod_ip bd-p2a) a3=$(pod_ip bd-p3a)
	ok "pods: node1 $a1 $b1, node2 $a2, node3 $a3" "MTU $(ip -n bd-p1a -o link show eth0 | grep -o 'mtu [0-9]*' | cut -d' ' -f2)"
	ok "same node:  ping $a1 -> $b1 (bpf_redirect_peer)" "$(ping_ok bd-p1a "$b1")"
	capture start n1
	ok "cross node: ping $a1 -> $a2" "$(ping_ok bd-p1a "$a2")"
	capture stop; show_capture
	ok "cross node: ping $a3 -> $a1" "$(ping_ok bd-p3a "$a1")"

	serve 2 bd-p2a; serve 3 bd-p3a
	for n in "${nodes[@]}"; do
		braid "$n" service add web --vip 198.18.100.10 --port 80 --backend "$a2:8080,$a3:8080" >/dev/null
		braid "$n" service add shop --vip 198.18.100.11 --port 80 --type NodePort --node-port 30080 --backend "$a2:8080" >/dev/null
		braid "$n" sync --conflist "$work/node$n/net.d/braid.conflist" >/dev/null
	done
	local answers
	answers=$(for _ in $(seq 12); do in_pod 1 bd-p1a socat -T1 - TCP:198.18.100.10:80 </dev/null; done | sort | uniq -c | awk '{printf "%s x%s  ", $2, $1}')
	ok "ClusterIP 198.18.100.10:80 from $a1, 12 connects (sock-lb)" "$answers"

	capture start n1 4
	local reply
	reply=$(ip netns exec $client python3 -c '
import socket; s = socket.create_connection(("198.18.0.1", 30080), timeout=2)
print(s.recv(64).decode().strip(), "from", "%s:%d" % s.getpeername())')
	capture stop
	ok "NodePort 198.18.0.1:30080 from the client (backend on node2)" "$reply"
	ok "  node1's underlay port: packets in from client / back to client" "$(grep -c '198.18.1.10.[0-9]* > 198.18.0.1.30080' "$work/capture") / $(grep -c '> 198.18.1.10' "$work/capture")"

	pkill -f 'socat TCP-LISTEN:8080' || true
	for n in "${nodes[@]}"; do
		for x in a b; do cni "$n" del braid "/run/netns/bd-p$n$x"; ip netns del "bd-p$n$x"; done
	done
	pods=()
}

say "VXLAN overlay: veth-ebpf, sock-lb, vxlan-tunnel, dsr (chain-configs/vxlan-lb.conflist)"
run_mode vxlan-lb.conflist
say "native routing: veth-ebpf, sock-lb, dsr, native-route (chain-configs/native-lb.conflist)"
run_mode native-lb.conflist
in_node 1 ip route show proto 189 | sed 's/^/    node1 route: /'

say "node3 leaves: braid node del + braid sync on node1"
braid 1 node del node3 >/dev/null
braid 1 sync --conflist "$work/node1/net.d/braid.conflist" | grep -v 'in sync' | sed 's/^/    /'

say "node1 after teardown"
braid 1 status | grep -E 'endpoints|allocations|endpoint map' | sed 's/^/    /'
say "done"
