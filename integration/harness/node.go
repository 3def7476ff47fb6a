package harness

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/maps"
	"github.com/vishvananda/netlink"
)

// HostVethPrefix starts the name of every host-side veth braid makes.
const HostVethPrefix = "brd"

// Node is a simulated node: a network namespace on the underlay with its
// own state directory and bpffs, initialized by `braid node init`.
type Node struct {
	*NS
	Name     string // n1, n2, …
	IP       netip.Addr
	PodCIDR  netip.Prefix
	Dir      string // the node's files: conflists, libcni cache, log
	StateDir string
	BPFRoot  string // a bpffs of the node's own
	LogFile  string // every braid plugin of the node logs here
	topo     *Topology
}

// Braid runs bin/braid with args and the node's --state-dir and --bpf-root
// inside the node's netns, and returns its stdout.
func (n *Node) Braid(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := n.Run(requireBinary(t, "braid"),
		append(args, "--state-dir", n.StateDir, "--bpf-root", n.BPFRoot)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// BraidJSON runs `braid <args> -o json` and decodes its output into v.
func (n *Node) BraidJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out := n.Braid(t, append(args, "-o", "json")...)
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("braid %s: %v in %s", strings.Join(args, " "), err, out)
	}
}

// NodeStatus is the part of `braid status -o json` the suites check.
type NodeStatus struct {
	Initialized     bool     `json:"initialized"`
	BPFFSMounted    bool     `json:"bpffsMounted"`
	Endpoints       int      `json:"endpoints"`
	Allocations     int      `json:"allocations"`
	EndpointMapFill int      `json:"endpointMapFill"`
	Problems        []string `json:"problems"`
}

// BraidStatus is `braid status -o json`.
func (n *Node) BraidStatus(t testing.TB) NodeStatus {
	t.Helper()
	var s NodeStatus
	n.BraidJSON(t, &s, "status")
	return s
}

// RequireClean fails t if the node holds anything a pod leaves behind: an
// endpoint or allocation in the store, an endpoint map entry, a pinned link
// of any plugin, or a braid host veth.
func (n *Node) RequireClean(t testing.TB) {
	t.Helper()
	s := n.BraidStatus(t)
	if s.Endpoints != 0 || s.Allocations != 0 || s.EndpointMapFill != 0 || len(s.Problems) != 0 {
		t.Errorf("node %s is not clean: braid status: %+v", n.Name, s)
	}
	var eps, entries []json.RawMessage
	n.BraidJSON(t, &eps, "endpoint", "list")
	n.BraidJSON(t, &entries, "bpf", "endpoint", "list")
	if len(eps) != 0 || len(entries) != 0 {
		t.Errorf("node %s is not clean: %d endpoints in the store, %d in the endpoint map", n.Name, len(eps), len(entries))
	}
	if pins := n.LinkPins(t); len(pins) != 0 {
		t.Errorf("node %s is not clean: pinned links left: %v", n.Name, pins)
	}
	if veths := n.HostVeths(t); len(veths) != 0 {
		t.Errorf("node %s is not clean: host veths left: %v", n.Name, veths)
	}
}

// LinkPins lists every plugin's pinned links, as "<plugin>/links/<name>".
func (n *Node) LinkPins(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(n.BPFRoot, "*", "links", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		paths[i], _ = filepath.Rel(n.BPFRoot, p)
	}
	return paths
}

// HostVeths lists the braid host veths (HostVethPrefix) in the node's netns.
func (n *Node) HostVeths(t testing.TB) []string {
	t.Helper()
	var names []string
	err := n.Do(func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if l.Type() == "veth" && strings.HasPrefix(l.Attrs().Name, HostVethPrefix) {
				names = append(names, l.Attrs().Name)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// Counters reads plugin's pinned per-CPU counters map
// (<bpfRoot>/<plugin>/counters, see bpf/include/counters.h) and returns the
// total of each index over all CPUs.
func (n *Node) Counters(t testing.TB, plugin string) []uint64 {
	t.Helper()
	c, err := maps.PinnedCounters(filepath.Join(n.BPFRoot, plugin, maps.CountersPin))
	if err != nil {
		t.Fatalf("%s counters: %v", plugin, err)
	}
	return c
}

// logTail puts the end of the node's plugin log into t's output.
func (n *Node) logTail(t testing.TB) {
	b, err := os.ReadFile(n.LogFile)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	t.Logf("last lines of %s:\n%s", n.LogFile, strings.Join(lines[max(0, len(lines)-30):], "\n"))
}
