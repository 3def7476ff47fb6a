package vethebpf

import (
	"slices"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
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
