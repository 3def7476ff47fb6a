// Package faults is braid's fault-injection suite: plugins killed part-way
// through a verb, a corrupt or locked node store, a datapath that lost its
// pins and links (a "reboot"), exhausted pools and full maps, and pod churn
// under traffic. Each case ends with the node consistent (nothing leaked,
// checked from outside) and the next CNI call working.
//
// Bounded versions run in `make test`; the knobs below make them longer:
//
//	BRAID_KILL_ITERATIONS   plugin kills (default 50)
//	BRAID_KILL_SEED         seed of the kill schedule (default: time)
//	BRAID_CHURN_PODS        pods per node kept alive during churn (default 40)
//	BRAID_CHURN_DURATION    how long pods are replaced (default 20s)
//	BRAID_CHURN_WORKERS     parallel CNI callers per node (default 3)
//
// Each test logs its figures on lines starting with "FIGURE", which
// RELIABILITY.md quotes.
package faults

import (
	"testing"

	"github.com/braid-cni/braid/integration/harness"
)

// cluster is two nodes that know each other, each with the same chain.
type cluster struct {
	n1, n2 *harness.Node
	c1, c2 *harness.Chain
}

// twoNodes builds two meshed nodes with conflist (cniVersion 1.1.0, for
// GC) and syncs them.
func twoNodes(t *testing.T, conflist string, edits ...harness.Edit) *cluster {
	t.Helper()
	topo := harness.New(t)
	c := &cluster{n1: topo.AddNode(t), n2: topo.AddNode(t)}
	harness.Mesh(t, c.n1, c.n2)
	edits = append([]harness.Edit{harness.CNIVersion("1.1.0")}, edits...)
	c.c1 = c.n1.Conflist(t, conflist, edits...)
	c.c2 = c.n2.Conflist(t, conflist, edits...)
	c.c1.RequireSync(t)
	c.c2.RequireSync(t)
	return c
}

// routingPlugin is the routing plugin of a conflist and the counters that
// show its eBPF path carried a packet out of, and into, a node.
type routingPlugin struct {
	name, conflist string
	out            []string // a pod's packet sent to another node
	in             string   // another node's packet delivered to a pod
}

var routingModes = []routingPlugin{
	{"vxlan-tunnel", "vxlan.conflist", []string{"encap"}, "decap_deliver"},
	{"native-route", "native.conflist", []string{"fib_redirect", "fib_redirect_neigh"}, "netdev_deliver"},
}

// outDelta is how many packets the mode's eBPF path sent to other nodes
// since before.
func (m routingPlugin) outDelta(t *testing.T, now, before harness.CounterSet) uint64 {
	t.Helper()
	var d uint64
	for _, c := range m.out {
		d += now.Delta(t, before, c)
	}
	return d
}

// pingBoth pings a <-> b, failing t on loss.
func pingBoth(t *testing.T, a, b *harness.Pod) {
	t.Helper()
	if err := a.Ping(b.IP); err != nil {
		t.Errorf("%s -> %s: %v", a.Name, b.Name, err)
	}
	if err := b.Ping(a.IP); err != nil {
		t.Errorf("%s -> %s: %v", b.Name, a.Name, err)
	}
}
