#!/usr/bin/env bash
# make demo: three braid nodes as network namespaces on an underlay bridge and
# an external client, pods attached through the real CNI chain with cnitool,
# then, in both routing modes (VXLAN overlay, native routing): same-node and
# cross-node traffic, a ClusterIP service balanced by sock-lb, a NodePort
# service answered with direct server return; a node leaving. Then the same
# nodes afresh under braid agent with etcd: they join, claim pod CIDRs,
# follow a service added in etcd, and drop a node whose agent stops.
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
procs=() # agents and etcd
stop_servers() { for p in "${pods[@]}"; do ip netns pids "$p" 2>/dev/null | xargs -r kill; done; }
drop_nodes() {
	stop_servers
	for p in "${pods[@]}"; do ip netns del "$p" 2>/dev/null; done
	pods=()
	for n in "${nodes[@]}"; do
		umount "$work/node$n/bpf" 2>/dev/null
		ip netns del "bd-node$n" 2>/dev/null
		rmdir "$cgroups/node$n" 2>/dev/null
		rm -rf "$work/node$n"
	done
}
cleanup() {
	set +e
	for p in "${procs[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	drop_nodes
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
make_node() { # make_node <n>: netns on the underlay, its cgroup, no braid state yet
	ip netns add "bd-node$1"
	attach "bd-node$1" "n$1" "198.18.0.$1/24"
	ip -n "bd-node$1" route add 198.18.1.0/24 dev eth0
	mkdir -p "$cgroups/node$1"
}
for n in "${nodes[@]}"; do
	make_node "$n"
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
	if [ "$mode" = vxlan-lb.conflist ]; then braid 1 endpoint list | sed 's/^/        /'; fi
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

	stop_servers
	for n in "${nodes[@]}"; do
		for x in a b; do cni "$n" del braid "/run/netns/bd-p$n$x"; ip netns del "bd-p$n$x"; done
	done
	pods=()
}

say "VXLAN overlay: veth-ebpf, sock-lb, vxlan-tunnel, dsr (chain-configs/vxlan-lb.conflist)"
run_mode vxlan-lb.conflist
say "native routing: veth-ebpf, sock-lb, dsr, native-route (chain-configs/native-lb.conflist)"
run_mode native-lb.conflist
in_node 1 ip route show proto 157 | sed 's/^/    node1 route: /'

say "node3 leaves: braid node del + braid sync on node1"
braid 1 node del node3 >/dev/null
braid 1 sync --conflist "$work/node1/net.d/braid.conflist" | grep -v 'in sync' | sed 's/^/    /'

say "node1 after teardown"
braid 1 status | grep -E 'endpoints|allocations|endpoint map' | sed 's/^/    /'

say "braid agent with etcd: the three nodes afresh, no braid node init or node add"
drop_nodes
etcd_url=http://198.18.0.254:2379
ip -n $underlay addr add 198.18.0.254/24 dev br0
ip -n $underlay link set lo up # etcd's peer URL
mkdir -p "$work/etcd"
ip netns exec $underlay etcd --name demo --data-dir "$work/etcd/data" --listen-client-urls $etcd_url \
	--advertise-client-urls $etcd_url --listen-peer-urls http://127.0.0.1:2380 \
	--initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster demo=http://127.0.0.1:2380 \
	>"$work/etcd/log" 2>&1 &
procs+=($!)
wait_for() { # wait_for <tries of 0.1 s> <command...>
	local tries=$1; shift
	for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return; sleep 0.1; done
	echo "    timed out waiting for: $*" >&2; return 1
}
wait_for 100 ip netns exec $underlay timeout 1 bash -c "exec 3<>/dev/tcp/198.18.0.254/2379"
agent() { # agent <n>: braid agent on node n, logging to its dir (nsenter execs it: $! is the agent)
	nsenter --net=/run/netns/bd-node"$1" "$bin/braid" agent --name "node$1" --node-ip "198.18.0.$1" --device eth0 \
		--datastore etcd --etcd-endpoints $etcd_url --cluster-cidr 198.19.0.0/16 --lease-ttl 3s \
		--conflist "$work/node$1/net.d/braid.conflist" --cni-path "$CNI_PATH" --metrics-address 127.0.0.1:9962 \
		--state-dir "$work/node$1/state" --bpf-root "$work/node$1/bpf" >"$work/node$1/agent.log" 2>&1 &
	procs+=($!)
	agent_pid[$1]=$!
}
declare -A agent_pid
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }
start=$EPOCHREALTIME
for n in "${nodes[@]}"; do
	make_node "$n"
	conflist "$n" vxlan-lb.conflist
	agent "$n"
done
initialized() { braid "$1" status -o json | jq -e '.initialized' >/dev/null; }
knows_all() { [ "$(braid "$1" node list -o json | jq length)" = "${#nodes[@]}" ]; }
for n in "${nodes[@]}"; do wait_for 100 initialized "$n"; done
for n in "${nodes[@]}"; do wait_for 100 knows_all "$n"; done
ok "3 agents registered, each claimed a pod CIDR in one etcd transaction" "$(since "$start")"
braid 1 node list --etcd-endpoints $etcd_url | sed 's/^/    /'
for p in bd-p1a bd-p2a bd-p3a bd-p3b; do
	ip netns add "$p"; pods+=("$p"); ip -n "$p" link set lo up
	cni "${p:4:1}" add braid "/run/netns/$p" >/dev/null
done
a1=$(pod_ip bd-p1a) a2=$(pod_ip bd-p2a) a3=$(pod_ip bd-p3a) b3=$(pod_ip bd-p3b)
ok "cross node: ping $a1 -> $a2, $a3 -> $a1 (routes from etcd)" "$(ping_ok bd-p1a "$a2"), $(ping_ok bd-p3a "$a1")"
serve 2 bd-p2a; serve 3 bd-p3a
braid 1 service add web --vip 198.18.100.10 --port 80 --backend "$a2:8080,$a3:8080" --etcd-endpoints $etcd_url >/dev/null
start=$EPOCHREALTIME
wait_for 50 in_pod 3 bd-p3a socat -T1 - TCP:198.18.100.10:80
answers=$(for _ in $(seq 6); do in_pod 1 bd-p1a socat -T1 - TCP:198.18.100.10:80 </dev/null; done | sort | uniq -c | awk '{printf "%s x%s  ", $2, $1}')
ok "service added in etcd, then ClusterIP from node1 (6 connects)" "$answers"
kill "${agent_pid[3]}"; wait "${agent_pid[3]}" 2>/dev/null || true
start=$EPOCHREALTIME
forgot_node3() { ! braid 1 node list -o json | jq -e '.[] | select(.name == "node3")' >/dev/null; }
wait_for 100 forgot_node3
ok "node3's agent stopped: its 3 s lease lapsed, node1 dropped it after" "$(since "$start")"
ok "  node1's routes to other nodes' pods now" "$(in_node 1 ip -br route show proto 157 | awk '$1 ~ /\/24$/ {print $1}' | paste -sd' ')"
ok "  node3's own pods still talk without their agent: ping $a3 -> $b3" "$(ping_ok bd-p3a "$b3")"
say "done"
