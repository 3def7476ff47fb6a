package main

import (
	"fmt"
	"os/exec"
	"strings"
)

func etcdVersion() string {
	out, err := exec.Command("etcd", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "etcd Version: ")
}

func method(cfg config) string {
	return fmt.Sprintf(`### Method

One control plane: etcd and kube-apiserver started by internal/kubetest (token auth, RBAC,
`+"`--service-cluster-ip-range %[1]s`"+`) on loopback, reached from the nodes at %[2]s:%[3]d on the
underlay bridge through kubetest's Proxy. Three nodes, netns on that bridge (eth0 198.18.0.i/24,
pods 198.19.i.0/24), each with a Node object (spec.podCIDR, InternalIP, Ready), a client pod and a
backend pod:

* **braid sock-lb**: `+"`chain-configs/native-lb.conflist`"+` (veth-ebpf, sock-lb, dsr, native-route) with
  the node's own state dir, bpffs and sock-lb cgroup; `+"`braid agent --datastore kubernetes`"+` in the
  node's netns follows the API server (no `+"`braid node init`"+`, no `+"`braid service`"+` command). Pod
  processes run in the node's cgroup, as a runtime would put them.
* **kube-proxy iptables** and **kube-proxy nftables**: the reference `+"`ptp`"+` plugin with `+"`host-local`"+`;
  the real `+"`kube-proxy`"+` (`+"`--proxy-mode iptables|nftables --hostname-override <node> --cluster-cidr %[4]s`"+`)
  run inside the node's netns with `+"`nsenter`"+`, so that its tables are the node's; every
  `+"`--conntrack-*`"+` size and timeout flag is 0 (kube-proxy then leaves those machine-wide sysctls
  alone); its metrics and healthz listen on the node's own loopback. Its sync periods are the
  defaults (`+"`--iptables-min-sync-period`"+`/`+"`--nftables-min-sync-period`"+` 1s).

**Services.** Each phase adds selector-less filler Services (port 80, ClusterIPs from 198.18.130.0
up) with one hand-made EndpointSlice of 3 ready endpoints each (addresses in 198.19.200.0/24, a pod
CIDR no node has), created in parallel by 32 client-go workers, until %[5]s fillers exist; every
node sees every Service. Each node also has its measured Service (`+"`measured-<node>`"+`, two ports: the
connect loop's and sockperf's, one endpoint: that node's backend pod), created before the fillers.
"Enforced after" is the time from the last create to the node's proxy holding every Service port:
braid's store (`+"`braid service list`"+`, what the agent wrote and synced), the cluster-IP rules of
KUBE-SERVICES in `+"`iptables-save -t nat`"+`, the elements of nftables' `+"`service-ips`"+` map; polled every 0.2 s,
the time taken when the poll that saw them all returned: an upper bound that includes the reading
command's own run (braid's CLI reading a 10,000-Service store takes longer than iptables-save).
kube-proxy's iptables mode writes KUBE-SERVICES in a Go map's iteration order (rewritten on every
sync), so the measured Service sits at a random place among the rules (not the last): the
table gives it as measured. nftables and braid look the Service up in a map (no walk).

**Datapaths** (per phase, alternating, the order rotating between repetitions): the client pod dials
its node's measured ClusterIP; "direct" dials the backend pod's IP on the iptables node (the path
with no service translation). connects/s: the bench's connrate client and server (connect, 16-byte
request and echo, RST close), %[6]s after a 0.5 s warm-up; RTT: `+"`sockperf ping-pong --tcp -m 64`"+`;
client and server pinned to CPU %[7]s; %[8]d repetitions, medians.

**EndpointSlice change.** With every phase's Services defined, each node's `+"`change-<node>`"+` Service
(one endpoint: its backend pod, a server listening) has its endpoint not ready (ready and serving
false: kube-proxy and braid refuse connections). A probe in the node's client pod (in the pod's
cgroup on braid's node) connects to the ClusterIP every millisecond and must be refused first; the
bench then updates the slice to ready and the figure is from just before the Update call to the
probe's first accepted connection (both clocks are this machine's). The endpoint then goes back to
not ready, the probe waits (bounded, 20 s) for refusals again, and the next change runs; nodes
alternate, %[9]d changes each. This kernel (6.18) treats the ICMP port unreachable of kube-proxy
iptables' REJECT as a soft error for a SYN (connect fails only when the retransmitted SYN meets it
again, 1 s later), so the probe's attempts give up after 20 ms: its resolution is about 20 ms on the
kube-proxy nodes, 1 ms on braid's (sock-lb refuses in connect). Every node has a route to the
ClusterIP range on eth0, standing for a node's default route (without one, a rejected Service's SYN
never reaches the FORWARD chain that rejects it). This is what a client sees, so it includes the proxy's batching
(kube-proxy's 1 s min-sync-period; braid's 20 ms coalescing of informer events).

**Proxy CPU and memory**: user+system time of the agent / kube-proxy process since it started
(/proc/<pid>/stat) and its VmRSS and VmHWM, read once every Service of the phase is enforced.

Not measured here: NodePort through a real kube-proxy (bench/services still compares braid's dsr
with hand-written iptables NodePort rules), 1,000 Node objects.
`, serviceCIDR, apiIP, apiPort, clusterCIDR, countsText(cfg.counts), cfg.duration, cfg.cpu, cfg.reps, cfg.changes)
}

func countsText(c []int) string {
	s := make([]string, len(c))
	for i, v := range c {
		s[i] = thousands(v)
	}
	return strings.Join(s, " / ")
}
