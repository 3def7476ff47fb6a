package routing

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
)

// NodesJoinAndLeave: a node that joins after pods exist is reachable at
// once, whether the others learn it by `braid node add` + `braid sync` or
// by their next ADD; a node removed with `braid node del` + `braid sync`
// is cut off and leaves nothing behind; added back, it is reachable again.
// afterLeave, if set, runs right after the removal with the pod of the
// node that left and a pod of the node that forgot it.
func NodesJoinAndLeave(t *testing.T, mode Mode, afterLeave func(t *testing.T, c *Cluster, gone, stays *harness.Pod)) {
	c := NewCluster(t, mode, 2)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	a, b := c.Chains[0].AddPod(t, "a"), c.Chains[1].AddPod(t, "b")
	RequirePing(t, a, b)

	n3, ch3 := c.AddNode(t)
	n3.AddPeer(t, n1)
	n3.AddPeer(t, n2)
	d := ch3.AddPod(t, "d") // its ADD sets up n3, peers included

	t.Run("joins: braid node add + sync", func(t *testing.T) {
		n1.AddPeer(t, n3)
		c.Chains[0].RequireSync(t)
		RequirePing(t, a, d)
		RequirePing(t, d, a)
		mode.Knows(t, n1, n3, true)
	})
	t.Run("joins: the next ADD", func(t *testing.T) {
		n2.AddPeer(t, n3)
		c.Chains[1].AddPod(t, "e")
		RequirePing(t, b, d) // b's attachment predates n3
		RequirePing(t, d, b)
		mode.Knows(t, n2, n3, true)
	})
	t.Run("leaves: braid node del + sync", func(t *testing.T) {
		n1.DelPeer(t, n3)
		c.Chains[0].RequireSync(t)
		RequireNoPing(t, a, d)
		if r := n1.RoutesTo(t, n3.PodCIDR); len(r) > 0 {
			t.Errorf("%s keeps routes to %s's pods: %v", n1.Name, n3.Name, r)
		}
		mode.Knows(t, n1, n3, false)
		mode.Knows(t, n1, n2, true)
		// The rest of the cluster is not affected.
		RequirePing(t, b, d)
		RequirePing(t, a, b)
		if afterLeave != nil {
			afterLeave(t, c, d, a)
		}
		// Nothing else to do: a second sync changes nothing.
		RequireInSync(t, c.Chains[0])
	})
	t.Run("back again", func(t *testing.T) {
		n1.AddPeer(t, n3)
		c.Chains[0].RequireSync(t)
		RequirePing(t, a, d)
		mode.Knows(t, n1, n3, true)
	})
}

// CheckAndRepair: CHECK passes on a healthy pod; each of the mode's Breaks
// makes it fail naming the damage; `braid sync` repairs it.
func CheckAndRepair(t *testing.T, mode Mode) {
	c := NewCluster(t, mode, 2)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	a, b := c.Chains[0].AddPod(t, "a"), c.Chains[1].AddPod(t, "b")
	if err := a.Check(); err != nil {
		t.Fatalf("CHECK of a healthy pod: %v", err)
	}
	for _, br := range append(mode.Breaks, podPinBreak(mode)) {
		t.Run(br.Name, func(t *testing.T) {
			br.Apply(t, n1, n2, a)
			harness.RequireCNIError(t, a.Check(), 999, mode.Plugin, br.Want(n1, n2, a))
			c.Chains[0].RequireSync(t)
			if err := a.Check(); err != nil {
				t.Fatalf("CHECK after braid sync: %v", err)
			}
			RequirePing(t, a, b)
			RequirePing(t, b, a)
		})
	}
}

// podPinBreak removes the routing plugin's link pin of the pod (which
// detaches its program from the pod's veth).
func podPinBreak(mode Mode) Break {
	return Break{
		Name: "pod program pin",
		Apply: func(t testing.TB, n, _ *harness.Node, p *harness.Pod) {
			pins := podPins(t, n, mode.Plugin)
			if len(pins) != 1 {
				t.Fatalf("%s pod pins on %s: %v, want one", mode.Plugin, n.Name, pins)
			}
			n.RemovePin(t, mode.Plugin, "links", pins[0])
		},
		Want: func(*harness.Node, *harness.Node, *harness.Pod) string { return "pod program: no link pinned at" },
	}
}

// podPins are a plugin's per-pod link pins on n (node-wide ones, "dev-…",
// left out).
func podPins(t testing.TB, n *harness.Node, plugin string) []string {
	t.Helper()
	var out []string
	for _, p := range n.LinkPins(t) {
		dir, name := filepath.Split(p)
		if dir == plugin+"/links/" && !strings.HasPrefix(name, "dev-") {
			out = append(out, name)
		}
	}
	return out
}

// DelAndGC: DEL removes the plugin's pod pin and may be repeated (also
// after the netns is gone, and for the plugin alone); GC removes the pins
// of attachments that are not valid any more, including ones whose
// sandbox died and whose runtime forgot them; STATUS is ready.
func DelAndGC(t *testing.T, mode Mode) {
	c := NewCluster(t, mode, 2, harness.CNIVersion("1.1.0"))
	n1 := c.Nodes[0]
	ch := c.Chains[0]
	keep := ch.AddPod(t, "keep")
	b := c.Chains[1].AddPod(t, "b")

	if err := ch.Status(); err != nil {
		t.Errorf("STATUS of a healthy node: %v", err)
	}
	t.Run("del twice", func(t *testing.T) {
		p := ch.AddPod(t, "del")
		for i := range 2 {
			if err := p.Del(); err != nil {
				t.Fatalf("DEL #%d: %v", i+1, err)
			}
		}
		if err := p.RemoveNetns(); err != nil {
			t.Fatal(err)
		}
		if err := p.Del(); err != nil {
			t.Errorf("DEL without the netns: %v", err)
		}
		if pins := podPins(t, n1, mode.Plugin); len(pins) != 1 {
			t.Errorf("%s pod pins after DEL: %v, want only keep's", mode.Plugin, pins)
		}
	})
	t.Run("del of the plugin alone, nothing attached", func(t *testing.T) {
		p := ch.NewPod(t, "never")
		conf := []byte(`{"cniVersion":"1.1.0","name":"braid","type":"` + mode.Plugin + `","bpfRoot":"` + n1.BPFRoot +
			`","stateDir":"` + n1.StateDir + `"}`)
		for i := range 2 {
			if err := p.ExecNoResult(mode.Plugin, "DEL", conf); err != nil {
				t.Fatalf("DEL #%d: %v", i+1, err)
			}
		}
	})
	t.Run("gc", func(t *testing.T) {
		forgotten, dead := ch.AddPod(t, "forgotten"), ch.AddPod(t, "dead")
		// The runtime lost both; dead's sandbox is gone too, which takes
		// its veth with it but leaves the link pin behind.
		for _, p := range []*harness.Pod{forgotten, dead} {
			if err := p.ForgetCache(); err != nil {
				t.Fatal(err)
			}
		}
		if err := dead.RemoveNetns(); err != nil {
			t.Fatal(err)
		}
		if pins := podPins(t, n1, mode.Plugin); len(pins) != 3 {
			t.Fatalf("%s pod pins before GC: %v, want 3", mode.Plugin, pins)
		}
		if err := ch.GC(keep); err != nil {
			t.Fatalf("GC: %v", err)
		}
		if pins := podPins(t, n1, mode.Plugin); len(pins) != 1 {
			t.Errorf("%s pod pins after GC: %v, want only keep's", mode.Plugin, pins)
		}
		if err := keep.Check(); err != nil {
			t.Errorf("CHECK of the valid pod after GC: %v", err)
		}
		RequirePing(t, keep, b)
	})
	t.Run("status of the plugin alone says what is missing", func(t *testing.T) {
		p := ch.NewPod(t, "status")
		conf := func(bpfRoot, stateDir string) []byte {
			return []byte(`{"cniVersion":"1.1.0","name":"braid","type":"` + mode.Plugin + `","bpfRoot":"` + bpfRoot +
				`","stateDir":"` + stateDir + `"}`)
		}
		unmounted := t.TempDir()
		harness.RequireCNIError(t, p.ExecNoResult(mode.Plugin, "STATUS", conf(unmounted, n1.StateDir)), 50,
			"bpffs is not mounted at "+unmounted)
		harness.RequireCNIError(t, p.ExecNoResult(mode.Plugin, "STATUS", conf(n1.BPFRoot, t.TempDir())), 50,
			"not initialized")
		if harness.IsMountPoint(unmounted) {
			t.Errorf("STATUS mounted a bpffs at %s", unmounted)
		}
	})
	if err := ch.Status(); err != nil {
		t.Errorf("STATUS at the end: %v", err)
	}
}

// Versions: the plugin answers VERSION with every CNI version it speaks,
// and a pod's ADD, CHECK and DEL work at the oldest one, 0.4.0.
func Versions(t *testing.T, mode Mode) {
	harness.RequireVersions(t, mode.Plugin, "0.4.0", "1.0.0", "1.1.0")
	c := NewCluster(t, mode, 2, harness.CNIVersion("0.4.0"))
	a, b := c.Chains[0].AddPod(t, "a"), c.Chains[1].AddPod(t, "b")
	if err := a.Check(); err != nil {
		t.Errorf("CHECK at 0.4.0: %v", err)
	}
	RequirePing(t, a, b)
	if err := a.Del(); err != nil {
		t.Errorf("DEL at 0.4.0: %v", err)
	}
}

// RequireInSync runs `braid sync` and fails t unless every plugin reports
// that it is in sync: nothing changed, no problem.
func RequireInSync(t testing.TB, ch *harness.Chain) {
	t.Helper()
	out := ch.RequireSync(t)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines[1:] { // after the header
		if !strings.HasSuffix(l, "in sync") {
			t.Errorf("braid sync on %s changed things:\n%s", ch.Node.Name, out)
			return
		}
	}
}

// KernelKnobs: on nodes left as a fresh kernel leaves them (forwarding off,
// strict reverse-path filtering), the routing plugin's first ADD sets what
// its datapath needs, and cross-node traffic works.
func KernelKnobs(t *testing.T, mode Mode, devices ...string) {
	c := NewCluster(t, mode, 2)
	strict := [][2]string{{"net/ipv4/ip_forward", "0"}, {"net/ipv4/conf/all/rp_filter", "1"},
		{"net/ipv4/conf/" + harness.NodeDevice + "/rp_filter", "1"}}
	for _, n := range c.Nodes {
		for _, kv := range strict {
			if err := n.Sysctl(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	a, b := c.Chains[0].AddPod(t, "a"), c.Chains[1].AddPod(t, "b")
	want := map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/rp_filter": "0"}
	for _, d := range devices {
		want["net/ipv4/conf/"+d+"/rp_filter"] = "0"
	}
	for _, n := range c.Nodes {
		for key, v := range want {
			if got, err := n.ReadSysctl(key); err != nil || got != v {
				t.Errorf("%s on %s after ADD: %q (%v), want %s", key, n.Name, got, err, v)
			}
		}
	}
	RequirePing(t, a, b)
	RequirePing(t, b, a)
}
