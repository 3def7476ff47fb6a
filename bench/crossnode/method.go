package main

import (
	"fmt"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// method is the report's description of what was measured and how.
func method(cfg config) string {
	return fmt.Sprintf(`### Method

Each datapath has its own two "nodes": network namespaces whose `+"`eth0`"+` (MTU %[8]d) is a veth
to one shared underlay bridge in a namespace of its own; node *i* has 198.18.0.*i*/24 and
gives its pods addresses from 198.19.*i*.0/24. One pod on the first node (the client) talks to
one pod on the second (the server). Nothing leaves 198.18.0.0/15; no namespace has a route out.
Every namespace gets its sysctls set explicitly: `+"`rp_filter`"+` 0, IPv6 off,
`+"`bridge-nf-call-iptables`"+` 0 (bridged traffic skips iptables, so the kernel paths take no
netfilter detour), and in the nodes `+"`ip_forward`"+` 1.

* **braid vxlan** (nodes 1, 2): `+"`chain-configs/vxlan.conflist`"+` (veth-ebpf + vxlan-tunnel) with
  only `+"`stateDir`"+`, `+"`bpfRoot`"+`, `+"`logFile`"+` and the network name set, on nodes prepared by
  `+"`braid node init`"+` (which mounts the node's own bpffs under /run/braid-bench-crossnode) and
  told of each other by `+"`braid node add`"+` before the first pod; pods added by `+"`cnitool`"+`
  run in the node's netns with `+"`nsenter`"+`, as a runtime does.
* **flannel-style vxlan** (nodes 3, 4): what flannel's vxlan backend programs, made with
  iproute2: the reference `+"`bridge`"+` plugin with `+"`host-local`"+` (bridge `+"`cni0`"+`, default
  gateway, pod MTU %[9]d) through `+"`cnitool`"+`, a VXLAN device `+"`flannel.1`"+` (VNI 1, port 8472,
  `+"`nolearning`"+`, MTU %[9]d, the pod CIDR's network address as /32), and for the other node a static
  FDB entry (its VTEP MAC → its node IP), a permanent neighbour entry (its VTEP address → MAC) and
  a route to its pod CIDR via its VTEP address, `+"`onlink`"+`.
* **braid native** (nodes 5, 6): `+"`chain-configs/native.conflist`"+` (veth-ebpf + native-route),
  set up as braid vxlan.
* **host-gw-style** (nodes 7, 8): flannel's host-gw backend: the same `+"`bridge`"+` + `+"`host-local`"+`
  pods at MTU %[8]d, and a plain route to the other node's pod CIDR via its node IP.

Measurements, client pod to server pod:

* **TCP RTT**: `+"`sockperf ping-pong --tcp -m 64 --full-rtt -t %[1]s`"+` against `+"`sockperf server --tcp`"+`,
  both pinned to CPU %[2]s (`+"`taskset`"+`), so the whole round trip, both nodes' softirq work
  included, runs on one core and the figure is the datapath's path length, not cross-CPU wake-up
  cost. sockperf drops its own warm-up. p99 is shown but not judged: one disturbed run moves it.
* **connects/s**: the bench binary itself (`+"`crossnode connrate-client`"+` / `+"`connrate-server`"+`),
  both pinned to CPU %[2]s: blocking socket, connect, close with SO_LINGER 0 (a RST, so no
  TIME_WAIT builds up), for %[3]s after a 0.5 s warm-up; the server accepts and closes.
* **throughput**: `+"`iperf3 -c -t %[1]s`"+`, one TCP stream, client on CPU %[4]s, server on CPU %[5]s.
* Each of these runs %[6]d times per datapath. Within a repetition the datapaths take turns and
  the order rotates between repetitions; the tables show the median of the runs, and the targets
  are judged on the medians: braid at least as fast as its kernel counterpart on RTT p50,
  connects/s and throughput, and native strictly faster than vxlan on each. "Best run" is the
  lowest p50 or highest throughput of any run: on a shared VM interference only ever slows a run
  down, so the best run is the cleanest estimate of what the path itself costs; it is shown, not
  judged.
* The datapath check sums braid's counters (`+"`<bpfRoot>/vxlan-tunnel/counters`"+`,
  `+"`<bpfRoot>/native-route/counters`"+`, indexes as in each plugin's `+"`counters.go`"+`) over both
  nodes, read before and after all the measurements (%[7]s).
* The machine is shared: other test suites may have been running. The load averages above
  show how busy it was.
`, kit.Seconds(cfg.duration), cfg.cpu, cfg.duration, cfg.tputCPUs[0], cfg.tputCPUs[1], cfg.reps,
		"the reachability pings before them are not counted", underlayMTU, underlayMTU-vxlanOverhead)
}
