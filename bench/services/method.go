package main

import (
	"fmt"
	"strings"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// method is the report's description of what was measured and how.
func method(cfg config) string {
	return fmt.Sprintf(`### Method

The topology: an underlay bridge in its own netns (198.18.0.0/24, MTU 1500, bridge netfilter
off), eight "nodes" on it (netns with eth0 = 198.18.0.i, pods 198.19.i.0/24) and an external
client (198.18.1.10/24, outside the cluster, an on-link route to the nodes; every node has an
on-link route back). No namespace has a route out. Sysctls are set in every netns: ip_forward
(1 on nodes, 0 elsewhere), rp_filter 0, accept_local 0, IPv6 off. Pods are attached with
`+"`cnitool add`"+` run in the node's netns (`+"`nsenter`"+`).

* **braid nodes**: `+"`braid node init`"+`, `+"`chain-configs/native-lb.conflist`"+` (veth-ebpf, sock-lb,
  dsr, native-route) with the node's own `+"`stateDir`"+`, `+"`bpfRoot`"+` (a bpffs mounted under
  /run/braid-bench-services) and sock-lb's `+"`cgroupRoot`"+` (a cgroup2 directory of the node under
  /sys/fs/cgroup/unified/braid-bench-services). Every pod process (servers, and the ClusterIP
  client) is started in that cgroup, as a runtime would. Services come from
  `+"`braid service apply -f`"+` and reach the datapath with `+"`braid sync`"+`.
* **kernel nodes**: the reference `+"`ptp`"+` plugin with `+"`host-local`"+`; services are the nat table
  kube-proxy's iptables mode writes, loaded with `+"`iptables-restore`"+` (the system's iptables, see
  Environment): PREROUTING and OUTPUT jump to KUBE-SERVICES, one rule per service port there
  (`+"`-d VIP/32 -p tcp -m comment --comment \"ns/svc:port cluster IP\" -m tcp --dport P -j KUBE-SVC-<hash>`"+`),
  each KUBE-SVC chain marks off-cluster sources for masquerade and jumps to its endpoint's
  KUBE-SEP-<hash> chain, which DNATs; KUBE-SERVICES ends with the jump to KUBE-NODEPORTS for local
  addresses (KUBE-NODEPORTS: KUBE-MARK-MASQ, then KUBE-SVC); KUBE-POSTROUTING masquerades marked
  traffic (`+"`--random-fully`"+`).

**ClusterIP** (issue 5). One braid node (lb) and one kernel node (kp), each with a client pod and
a backend pod. The measured service is 198.18.100.10 with two ports (7000 for the connect loop,
11111 for sockperf), backend the backend pod; the other services (fillers: 198.18.100.20-219,
ports 1000 up, one backend each) are defined before it, so that in iptables the measured one is
last in KUBE-SERVICES: the linear walk's worst case, what any service meets with that many
defined before it. Phases of %[1]s services (the measured one included), measured in that
order, services added between phases. Datapaths:

* **braid sock-lb**: the client pod dials the VIP; sock-lb's connect4 rewrites it to the backend.
* **direct, braid node**: the same pods, the client dials the backend's pod IP, started outside
  sock-lb's cgroup (no sock-lb program runs for it): braid's datapath alone, the limit.
* **kube-proxy iptables**: the client pod dials the VIP on the kernel node; the node's nat table
  DNATs the first packet of each connection, conntrack the rest.
* **direct, kube-proxy node**: the same pods, the client dials the backend's pod IP (still
  through the node's PREROUTING, as on a kube-proxy node).

**NodePort** (issue 6). Three node pairs, the backend pod on the second node of each, the client
dials the first node's IP:30700 (connect loop) and :31111 (sockperf), service 198.18.100.11:
**braid dsr** (default mode: the entry node adds option 0x9a, the backend's node replies straight
to the client), **braid dsr, mode snat** (`+"`\"mode\": \"snat\"`"+` in dsr's config), and
**kube-proxy iptables** on a kernel pair (entry node DNAT + MASQUERADE, a route to the other
node's pods via its IP). Braid pairs know each other with `+"`braid node add`"+`; both nodes of a
pair hold the service (`+"`--type NodePort --node-port`"+` in the applied JSON).

* **connect+request+close /s**: the bench binary itself (`+"`services connrate-client -request`"+` /
  `+"`connrate-server -echo`"+`), client and server pinned to CPU %[2]s: blocking socket, connect, a
  16-byte request and its echo, close with SO_LINGER 0 (a RST: no TIME_WAIT), for %[3]s after a
  0.5 s warm-up.
* **TCP RTT**: `+"`sockperf ping-pong --tcp -m 64 --full-rtt -t %[4]s`"+` against `+"`sockperf server --tcp`"+`,
  both pinned to CPU %[2]s, so the round trip runs on one core and the figure is the path's length.
* Each runs %[5]d times per datapath and phase; within a repetition the datapaths take turns
  (all connect runs, then all RTT runs) and the order rotates between repetitions. Tables show
  the median; "best of" is the fastest run (load from elsewhere only ever slows a run down);
  "µs per connection" is 1e6 / the median rate, so that what the rules add shows as a
  difference. The runs of one phase spread by about ±10%% on a shared machine and phases are
  minutes apart, so the "within 5%% of direct" verdicts take the median of every phase's runs
  together, and flatness is braid's rate relative to direct (measured alongside it, and
  untouched by the services) at the last phase over that at the first.
* **Reply path**: after the measurements, for each NodePort datapath, one 1 s connect run while
  tcpdump (`+"`-Q in|out`"+`, in the underlay netns) counts on the entry node's bridge port the
  client's TCP packets delivered to the node and the TCP packets the node sends to the client,
  and on the backend's node's port the packets that node sends to the client. DSR's replies
  leave the backend's node for the client: none pass the entry node.
* **Datapath check**: the braid plugins' per-CPU counters (`+"`<bpfRoot>/<plugin>/counters`"+`, names
  in `+"`plugins/<plugin>/counters.go`"+`) read before and after every run of a braid datapath; the
  lines list those that moved.
* The machine is shared: other work may have run at the same time; the load averages in
  Environment show how busy it was. The bench's session runs at autogroup nice %[6]d
  (`+"`-nice`"+`; 0 leaves it alone): CFS shares a CPU between sessions' autogroups whatever the
  processes' own nice values, so without it a pinned client and server get a fraction of their
  CPU that depends on how many other sessions are busy on it.
`, countsText(cfg.counts), cfg.cpu, cfg.duration, kit.Seconds(cfg.duration), cfg.reps, cfg.nice)
}

func countsText(counts []int) string {
	s := make([]string, len(counts))
	for i, c := range counts {
		s[i] = thousands(c)
	}
	return strings.Join(s, ", ")
}
