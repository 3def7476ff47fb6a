package vethebpf

import (
	"fmt"
	"slices"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/vishvananda/netlink"
)

// networkName names a conflist's network (its CNI "name").
func networkName(name string) harness.Edit {
	return func(list map[string]any) { list["name"] = name }
}

// TestGCScopedToNetwork runs two braid networks on one node and a CNI 1.1
// GC of the first with an empty valid list: the first network's pods go,
// the second's stay whole (store, veth, CHECK, traffic).
func TestGCScopedToNetwork(t *testing.T) {
	n := harness.New(t).AddNode(t)
	a := n.Conflist(t, conflist, harness.CNIVersion("1.1.0"), networkName("net-a"))
	b := n.Conflist(t, conflist, harness.CNIVersion("1.1.0"), networkName("net-b"))
	gone, other := a.AddPod(t, "gone"), b.AddPod(t, "other")
	if err := gone.ForgetCache(); err != nil { // only braid's GC can find it now
		t.Fatal(err)
	}

	if err := a.GC(); err != nil {
		t.Fatalf("GC of net-a: %v", err)
	}

	otherIf, _ := other.HostIf()
	var eps []endpoint
	n.BraidJSON(t, &eps, "endpoint", "list")
	if len(eps) != 1 || eps[0].ContainerID != other.ContainerID {
		t.Errorf("endpoints after net-a's GC: %+v, want only net-b's %s", eps, other.ContainerID)
	}
	if veths := n.HostVeths(t); !slices.Equal(veths, []string{otherIf}) {
		t.Errorf("host veths after net-a's GC: %v, want only net-b's %s", veths, otherIf)
	}
	if err := other.Check(); err != nil {
		t.Errorf("CHECK of net-b's pod after net-a's GC: %v", err)
	}
	if err := other.Ping(n.IP); err != nil {
		t.Errorf("net-b's pod after net-a's GC: %v", err)
	}
	if err := b.GC(); err != nil {
		t.Fatalf("GC of net-b: %v", err)
	}
	n.RequireClean(t)
}

// TestSecondInterface attaches a pod's net1 from a second braid network,
// as Multus does: eth0 keeps the default route and the gateway route,
// net1 gets its own address and gateway route, CHECK of each passes, and
// DEL of net1 leaves eth0 whole.
func TestSecondInterface(t *testing.T) {
	n := harness.New(t).AddNode(t)
	a := n.Conflist(t, conflist, networkName("net-a"))
	b := n.Conflist(t, conflist, networkName("net-b"))
	p := a.AddPod(t, "p")
	p1 := &harness.Pod{NS: p.NS, Name: "p-net1", ContainerID: p.ContainerID, IfName: "net1", Chain: b}
	if err := p1.Add(); err != nil {
		t.Fatalf("ADD net1: %v", err)
	}
	requireOwnRoutes(t, p, true)
	for _, q := range []*harness.Pod{p, p1} {
		if err := q.Check(); err != nil {
			t.Errorf("CHECK of %s: %v", q.IfName, err)
		}
	}
	if err := n.NS.Ping(p.IP); err != nil {
		t.Errorf("node to the pod's eth0 with net1 attached: %v", err)
	}
	if err := p.Ping(n.IP); err != nil {
		t.Errorf("pod to node with net1 attached: %v", err)
	}

	if err := p1.Del(); err != nil {
		t.Fatalf("DEL net1: %v", err)
	}
	requireOwnRoutes(t, p, false)
	if err := p.Check(); err != nil {
		t.Errorf("CHECK of eth0 after net1's DEL: %v", err)
	}
	if err := p.Ping(n.IP); err != nil {
		t.Errorf("pod to node after net1's DEL: %v", err)
	}
	if err := p.Del(); err != nil {
		t.Fatal(err)
	}
	n.RequireClean(t)
}

// requireOwnRoutes wants the pod's default route and its metric-0 route to
// 169.254.1.1 on eth0, and a gateway route on net1 exactly when withNet1.
func requireOwnRoutes(t *testing.T, p *harness.Pod, withNet1 bool) {
	t.Helper()
	var got []string
	inNetns(t, p.NS, func() error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		for _, r := range routes {
			l, lerr := netlink.LinkByIndex(r.LinkIndex)
			if lerr != nil {
				return lerr
			}
			dst := "default"
			if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
				dst = r.Dst.String()
			}
			got = append(got, fmt.Sprintf("%s dev %s metric %d", dst, l.Attrs().Name, r.Priority))
		}
		return err
	})
	want := []string{"default dev eth0 metric 0", "169.254.1.1/32 dev eth0 metric 0"}
	if withNet1 {
		want = append(want, "169.254.1.1/32 dev net1 metric 100")
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("pod routes %q, want %q", got, want)
	}
}
