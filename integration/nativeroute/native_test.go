package nativeroute

import (
	"strings"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/integration/routing"
)

// TestUnreachablePeer: a node that is not on the node device's subnet
// cannot be reached by a direct route. It is reported - by `braid sync`
// (non-zero exit naming it), STATUS (51, limited connectivity) and CHECK -
// not silently routed; the reachable peers keep working, and removing it
// clears the report.
func TestUnreachablePeer(t *testing.T) {
	c := routing.NewCluster(t, mode, 2, harness.CNIVersion("1.1.0"))
	n1 := c.Nodes[0]
	ch := c.Chains[0]
	a, b := ch.AddPod(t, "a"), c.Chains[1].AddPod(t, "b")
	if err := ch.Status(); err != nil {
		t.Fatalf("STATUS before: %v", err)
	}

	n1.Braid(t, "node", "add", "far", "--node-ip", "198.18.5.1", "--pod-cidr", "198.19.50.0/24")
	out, err := ch.Sync(t)
	if err == nil {
		t.Errorf("braid sync exited 0 with an unreachable peer:\n%s", out)
	}
	if !strings.Contains(string(out), "node far (198.18.5.1) is not on a subnet of eth0") {
		t.Errorf("braid sync does not name the unreachable node:\n%s\n%v", out, err)
	}
	harness.RequireCNIError(t, ch.Status(), 51, plugin, "node far (198.18.5.1) is not on a subnet of eth0")
	harness.RequireCNIError(t, a.Check(), 999, plugin, "node far (198.18.5.1) is not directly reachable")
	if r := n1.RoutesTo(t, netipPrefix("198.19.50.0/24")); len(r) > 0 {
		t.Errorf("a route to the unreachable node's pods: %v", r)
	}
	// An ADD on the node still works, and so does the rest of the cluster.
	fresh := ch.AddPod(t, "fresh")
	routing.RequirePing(t, a, b)
	routing.RequirePing(t, fresh, b)

	n1.Braid(t, "node", "del", "far")
	ch.RequireSync(t)
	if err := ch.Status(); err != nil {
		t.Errorf("STATUS after the node left: %v", err)
	}
	if err := a.Check(); err != nil {
		t.Errorf("CHECK after the node left: %v", err)
	}
}

// TestPathMTUSmallerThanPods: the underlay's MTU drops below the pods'.
// Pod packets that no longer fit the node device are not forwarded by the
// program: the stack answers a DF packet with ICMP "fragmentation needed"
// carrying the device's MTU, fragments one without DF, and TCP adapts; new
// pods get the new MTU.
func TestPathMTUSmallerThanPods(t *testing.T) {
	c := routing.NewCluster(t, mode, 2)
	n1 := c.Nodes[0]
	a, b := c.Chains[0].AddPod(t, "a"), c.Chains[1].AddPod(t, "b")
	routing.RequireMTU(t, 1500, a, b)

	const underlay = 1400
	c.Topo.SetUnderlayMTU(t, underlay)
	before := n1.CounterSet(t, plugin)
	ans := a.Send(t, b.NS, b.IP, harness.Probe{Size: 1500, DF: true})
	if !ans.Error.FragNeeded() || ans.Error.Info != underlay {
		t.Errorf("DF packet of 1500 bytes over a %d-byte underlay: %s, want ICMP frag needed with mtu %d", underlay, ans, underlay)
	}
	if d := n1.CounterSet(t, plugin).Delta(t, before, "fib_to_stack"); d != 1 {
		t.Errorf("fib_to_stack rose by %d, want 1", d)
	}
	if got := a.PathMTU(t, b.IP); got != underlay {
		t.Errorf("%s's path MTU to %s after the ICMP: %d, want %d", a.Name, b.IP, got, underlay)
	}
	if ans := a.Send(t, b.NS, b.IP, harness.Probe{Size: underlay, DF: true}); !ans.Echoed {
		t.Errorf("DF packet of the underlay's MTU: %s, want it delivered", ans)
	}
	if ans := a.Send(t, b.NS, b.IP, harness.Probe{Size: 1500}); !ans.Echoed {
		t.Errorf("packet of 1500 bytes without DF: %s, want it delivered (in fragments)", ans)
	}
	routing.RequireBulkTCP(t, a, b, 1<<20)

	fresh := c.Chains[0].AddPod(t, "fresh")
	routing.RequireMTU(t, underlay, fresh, c.Chains[1].AddPod(t, "fresh2"))
}
