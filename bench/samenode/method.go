package main

import (
	"fmt"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// method is the report's description of what was measured and how.
func method(cfg config) string {
	return fmt.Sprintf(`### Method

Each datapath connects two pod network namespaces on one "node":

* **plain veth pair**: the two pods joined by one veth pair, nothing in between; the limit.
* **ptp + host-local**: the reference `+"`ptp`"+` plugin run through `+"`cnitool`"+` in its own node netns;
  pod-to-pod traffic is routed by the node's stack.
* **braid veth-ebpf**: `+"`chain-configs/node-local.conflist`"+` (only `+"`stateDir`"+`, `+"`bpfRoot`"+`
  and the network name set) run through `+"`cnitool`"+` in its own node netns prepared by
  `+"`braid node init`"+`, with its own bpffs; same-node traffic is meant to go pod to pod with
  `+"`bpf_redirect_peer`"+` from the host veth's tcx ingress.

Every node netns has a veth "uplink" whose two ends both stay inside it. Addresses come from
198.18.0.0/15 only (node IPs 198.18.0.x, pods 198.19.x.0/24); no namespace has a route out.
MTU is 1500 everywhere.

* **TCP RTT**: `+"`sockperf ping-pong --tcp -m 64 --full-rtt -t %[1]s`"+` against `+"`sockperf server --tcp`"+`,
  both pinned to CPU %[2]s (`+"`taskset`"+`), so the whole round trip runs on one core and the figure is
  the datapath's path length, not cross-CPU wake-up cost. sockperf drops its own warm-up.
* **connects/s**: the bench binary itself (`+"`bench connrate-client`"+` / `+"`connrate-server`"+`), both pinned
  to CPU %[2]s: blocking socket, connect, close with SO_LINGER 0 (a RST, so no TIME_WAIT builds up),
  for %[3]s after a 0.5 s warm-up; the server accepts and closes. Each connection carries SYN,
  SYN-ACK, ACK and RST through the datapath.
* **throughput**: `+"`iperf3 -c -t %[1]s`"+`, one TCP stream, client on CPU %[4]s, server on CPU %[5]s.
* Each of these runs %[6]d times per datapath. Within a repetition the datapaths take turns and
  the order rotates between repetitions; the tables show the median. "RTT p50, best run" is the
  lowest per-run p50: on a shared VM a whole run's RTT can shift by 10-20%% whatever the datapath,
  and interference only adds, so the best run is the cleanest estimate of path length. The
  targets are judged on the median.
* **CNI ADD+DEL**: wall time of `+"`cnitool add`"+` then `+"`cnitool del`"+` (run in the node netns with
  `+"`nsenter`"+`, so process start-up is included, as for a runtime) for %[7]d fresh pod netns per plugin
  chain, the chains taking turns, after one unmeasured warm-up each. braid allocates addresses
  itself; bridge and ptp call `+"`host-local`"+`. Then the same again with
  `+"`/sys/kernel/rcu_expedited`"+` set to 1 (restored after): every tcx attach and detach waits
  for an RCU grace period (`+"`synchronize_rcu`"+` in the kernel's tcx code, under the RTNL lock),
  two per ADD and two per DEL for veth-ebpf's two programs; the difference is what those
  waits cost on this machine.
* The counters in `+"`<bpfRoot>/veth-ebpf/counters`"+` (index 0: redirect_peer, 1: passed on) are read
  before and after every braid run.
* The machine is shared: other test suites may have been running. The load averages above
  show how busy it was.
`, kit.Seconds(cfg.duration), cfg.cpu, cfg.duration, cfg.tputCPUs[0], cfg.tputCPUs[1], cfg.reps, cfg.pods)
}
