package harness

// Leak checks for nodes that keep some pods, or node-wide state (the
// routing plugins' devices and their pinned links), which RequireClean
// would count as leftovers.

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// Leaks is what a node holds for pods beyond the ones it should keep.
type Leaks struct {
	Endpoints   []string // store endpoints (container IDs)
	Allocations int      // store allocations beyond the kept pods'
	MapEntries  []netip.Addr
	Pins        []string // per-pod link pins, "<plugin>/links/<name>"
	Veths       []string // braid host veths
	Routes      []string // routes to single pod addresses
	Neighbours  []string // neighbour entries for pod addresses
	Problems    []string // from braid status
}

// Count is how many things leaked.
func (l Leaks) Count() int {
	return len(l.Endpoints) + l.Allocations + len(l.MapEntries) + len(l.Pins) + len(l.Veths) +
		len(l.Routes) + len(l.Neighbours) + len(l.Problems)
}

// Empty reports whether nothing leaked.
func (l Leaks) Empty() bool {
	return len(l.Endpoints) == 0 && l.Allocations == 0 && len(l.MapEntries) == 0 && len(l.Pins) == 0 &&
		len(l.Veths) == 0 && len(l.Routes) == 0 && len(l.Neighbours) == 0 && len(l.Problems) == 0
}

func (l Leaks) String() string {
	var parts []string
	add := func(what string, v any, n int) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %v", what, v))
		}
	}
	add("endpoints", l.Endpoints, len(l.Endpoints))
	add("allocations", l.Allocations, l.Allocations)
	add("endpoint map entries", l.MapEntries, len(l.MapEntries))
	add("pins", l.Pins, len(l.Pins))
	add("host veths", l.Veths, len(l.Veths))
	add("routes", l.Routes, len(l.Routes))
	add("neighbours", l.Neighbours, len(l.Neighbours))
	add("problems", l.Problems, len(l.Problems))
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, "; ")
}

// FindLeaks lists what the node holds for pods other than keep: store
// endpoints and allocations, endpoint map entries, per-pod link pins of
// every plugin (node-wide "dev-" pins belong to the node), braid host
// veths, and routes and neighbour entries for single addresses of the pod
// CIDR. Everything is read from outside, the way an operator would.
func (n *Node) FindLeaks(t testing.TB, keep ...*Pod) Leaks {
	t.Helper()
	var l Leaks
	keptIDs := map[string]bool{}
	keptIPs := map[netip.Addr]bool{}
	keptVeths := map[string]bool{}
	var keptAttach []string
	for _, p := range keep {
		keptIDs[p.ContainerID] = true
		keptIPs[p.IP] = true
		host, _ := p.HostIf()
		keptVeths[host] = true
		keptAttach = append(keptAttach, strings.TrimPrefix(host, HostVethPrefix))
	}

	s := n.BraidStatus(t)
	l.Problems = s.Problems
	var eps []struct {
		ContainerID string `json:"containerID"`
	}
	n.BraidJSON(t, &eps, "endpoint", "list")
	for _, ep := range eps {
		if !keptIDs[ep.ContainerID] {
			l.Endpoints = append(l.Endpoints, ep.ContainerID)
		}
	}
	l.Allocations = max(0, s.Allocations-len(keep))
	var entries []struct {
		IP netip.Addr `json:"ip"`
	}
	n.BraidJSON(t, &entries, "bpf", "endpoint", "list")
	for _, e := range entries {
		if !keptIPs[e.IP] {
			l.MapEntries = append(l.MapEntries, e.IP)
		}
	}
	for _, pin := range n.LinkPins(t) {
		base := path.Base(pin)
		if strings.HasPrefix(base, "dev-") || slices.ContainsFunc(keptAttach, func(id string) bool {
			return id != "" && strings.Contains(base, id)
		}) {
			continue
		}
		l.Pins = append(l.Pins, pin)
	}
	for _, v := range n.HostVeths(t) {
		if !keptVeths[v] {
			l.Veths = append(l.Veths, v)
		}
	}
	err := n.Do(func() error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			ones, _ := r.Dst.Mask.Size()
			a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
			if ok && ones == 32 && n.PodCIDR.Contains(a) && !keptIPs[a] {
				l.Routes = append(l.Routes, r.Dst.String())
			}
		}
		neighs, err := netlink.NeighList(0, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, nb := range neighs {
			a, ok := netip.AddrFromSlice(nb.IP.To4())
			if ok && n.PodCIDR.Contains(a) && !keptIPs[a] && nb.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0 {
				l.Neighbours = append(l.Neighbours, fmt.Sprintf("%s lladdr %s", a, nb.HardwareAddr))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("routes of %s: %v", n.Name, err)
	}
	return l
}

// RequireNoLeaks fails t if FindLeaks finds anything.
func (n *Node) RequireNoLeaks(t testing.TB, keep ...*Pod) {
	t.Helper()
	if l := n.FindLeaks(t, keep...); !l.Empty() {
		t.Errorf("node %s leaks: %s", n.Name, l)
	}
}
