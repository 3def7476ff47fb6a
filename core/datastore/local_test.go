package datastore

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/store"
)

// The local Cluster is the node store: this node and its peers, services
// all or none, with the store's checks and the CLI's errors.
func TestLocalCluster(t *testing.T) {
	ctx := context.Background()
	var c Cluster = NewLocal(t.TempDir())
	defer c.Close()
	if nodes, err := c.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("an empty store's nodes: %+v %v", nodes, err)
	}
	self := store.Node{Name: "n1", NodeIP: netip.MustParseAddr("198.18.0.1"), PodCIDR: netip.MustParsePrefix("198.19.1.0/24"), Device: "eth0"}
	if err := c.(*Local).update(func(tx *store.Tx) error { return tx.SetIdentity(self) }); err != nil {
		t.Fatal(err)
	}
	n2 := store.Peer{Name: "n2", NodeIP: netip.MustParseAddr("198.18.0.2"), PodCIDR: netip.MustParsePrefix("198.19.2.0/24")}
	if err := c.PutNode(ctx, n2); err != nil {
		t.Fatal(err)
	}
	// Validated and checked against this node.
	for _, p := range []store.Peer{
		{Name: "n3", NodeIP: netip.MustParseAddr("198.18.0.3"), PodCIDR: netip.MustParsePrefix("198.19.1.0/25")},
		{Name: "n3", NodeIP: netip.MustParseAddr("198.18.0.3"), PodCIDR: netip.MustParsePrefix("198.18.0.0/24")},
		{Name: "n 3", NodeIP: netip.MustParseAddr("198.18.0.3"), PodCIDR: netip.MustParsePrefix("198.19.3.0/24")},
	} {
		if err := c.PutNode(ctx, p); err == nil {
			t.Errorf("PutNode(%+v) accepted", p)
		}
	}
	nodes, err := c.Nodes(ctx)
	want := []NodeInfo{
		{Name: "n1", NodeIP: self.NodeIP, PodCIDR: self.PodCIDR, Self: true, Up: true},
		{Name: "n2", NodeIP: n2.NodeIP, PodCIDR: n2.PodCIDR, Up: true},
	}
	if err != nil || len(nodes) != 2 || nodes[0] != want[0] || nodes[1] != want[1] {
		t.Errorf("Nodes = %+v %v, want %+v", nodes, err, want)
	}
	if ok, err := c.DeleteNode(ctx, "n2"); !ok || err != nil {
		t.Errorf("DeleteNode(n2) = %v %v", ok, err)
	}
	if ok, err := c.DeleteNode(ctx, "n2"); ok || err != nil {
		t.Errorf("DeleteNode(n2) again = %v %v", ok, err)
	}

	web := store.Service{Name: "web", VIP: netip.MustParseAddr("198.18.100.1"), Port: 80, Protocol: "tcp"}
	clash := web
	clash.Name = "clash"
	other := web
	other.Name, other.Port = "other", 81
	if err := c.PutServices(ctx, web); err != nil {
		t.Fatal(err)
	}
	if err := c.PutServices(ctx, other, clash); err == nil || !strings.Contains(err.Error(), "already service web's") {
		t.Errorf("PutServices with a clash: %v", err)
	}
	backends := []store.Backend{{IP: netip.MustParseAddr("198.19.2.7"), Port: 8080}}
	if err := c.UpdateService(ctx, "web", func(s *store.Service) error { s.Backends = backends; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateService(ctx, "nope", func(*store.Service) error { return nil }); err == nil || !strings.Contains(err.Error(), `no service "nope"`) {
		t.Errorf("UpdateService(nope): %v", err)
	}
	svcs, err := c.Services(ctx)
	if err != nil || len(svcs) != 1 || svcs[0].Name != "web" || len(svcs[0].Backends) != 1 {
		t.Errorf("Services = %+v %v (other must not be stored: all or none)", svcs, err)
	}
	if ok, err := c.DeleteService(ctx, "web"); !ok || err != nil {
		t.Errorf("DeleteService(web) = %v %v", ok, err)
	}
	if svcs, err := c.Services(ctx); err != nil || svcs == nil || len(svcs) != 0 {
		t.Errorf("Services after the delete = %#v %v, want an empty list", svcs, err)
	}
}

// ReadOnly errors say why, and are ErrReadOnly.
func TestReadOnly(t *testing.T) {
	err := ReadOnly("Services are changed with %s", "kubectl")
	if err.Error() != "Services are changed with kubectl" || !errors.Is(err, ErrReadOnly) {
		t.Errorf("ReadOnly: %q, is ErrReadOnly: %v", err, errors.Is(err, ErrReadOnly))
	}
}
